//! The Hermes SSE stream as the venue plays it: recorded events at their due times in axum's
//! exact framing (`data:` with no space, a blank line after each event), `:` keep-alives after
//! silence, the recorded `event:error` as the stream's last word, and the SSE faults.

use std::io;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use tokio::time::{Instant, sleep_until};

use super::faults::{Die, EndpointFaults};
use super::filter::{self, Filtered, HermesRequest};
use super::server::{Shared, malformed};
use super::stats::Count;
use crate::model::Endpoint;

/// What Hermes says before closing a stream at its maximum duration.
pub const STREAM_TIMEOUT_MESSAGE: &str = "Connection timeout reached (24h)";

const ENDPOINT: Endpoint = Endpoint::HermesStream;

/// One open stream.
struct Stream {
    shared: Arc<Shared>,
    request: HermesRequest,
    /// The next recorded event to send (index into the timeline's stream).
    next: usize,
    /// Recording time when the stream opened: recorded errors due then belong to the
    /// connection before (a client reconnecting at once must not get them again).
    opened_ms: u64,
    /// Wall time when the stream opened: `drop_every` counts from here.
    opened: Instant,
    /// When something was last written (for the keep-alive).
    last_write: Instant,
    drop_at: Option<Instant>,
    end_at: Option<Instant>,
    stall_at: Option<Instant>,
    finished: bool,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.shared.stats.count(ENDPOINT, Count::SseClosed);
    }
}

/// The body of a new stream for `request`, with the connection faults (`drop_every`,
/// `max_stream`, `stall_after`) in force when it opens. Event faults (`malformed_rate`) follow
/// the faults in force when each event is sent, and a `drop_every` or `stall_after` set later
/// reaches an open stream at its next write (so an operator can cut or stall a running stream
/// by changing the faults).
pub(crate) fn stream(shared: Arc<Shared>, request: HermesRequest, faults: &EndpointFaults) -> Body {
    let now = Instant::now();
    let opened_ms = shared.clock.now_ms();
    let next = shared
        .timeline
        .stream
        .partition_point(|e| e.t_ms < opened_ms);
    shared.stats.count(ENDPOINT, Count::SseOpened);
    let state = Stream {
        request,
        next,
        opened_ms,
        opened: now,
        last_write: now,
        drop_at: faults.drop_every.and_then(|d| now.checked_add(d)),
        end_at: faults.max_stream.and_then(|d| now.checked_add(d)),
        stall_at: faults.stall_after.and_then(|d| now.checked_add(d)),
        finished: false,
        shared,
    };
    let chunks = futures::stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((chunk, state))
    });
    Body::from_stream(chunks)
}

/// One SSE event: optional `event:` line, one `data:` line per line of `data`, blank line.
pub(crate) fn frame(event: Option<&str>, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 16);
    if let Some(event) = event {
        out.extend_from_slice(b"event:");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(b"data:");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Stream {
    /// The next bytes to write; `None` ends the body cleanly, `Err` cuts the connection.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, io::Error>> {
        if self.finished {
            return None;
        }
        let shared = Arc::clone(&self.shared);
        loop {
            if self.drop_at.is_none() || self.stall_at.is_none() {
                let faults = shared.faults_for(ENDPOINT);
                if self.drop_at.is_none() {
                    self.drop_at = faults.drop_every.and_then(|d| self.opened.checked_add(d));
                }
                if self.stall_at.is_none() {
                    self.stall_at = faults.stall_after.and_then(|d| self.opened.checked_add(d));
                }
            }
            let entry = shared.timeline.stream.get(self.next);
            let due = entry.map(|e| shared.clock.wall_at(e.t_ms));
            // `None` (never) only for an absurd keep-alive that overflows the clock.
            let keepalive_at = self.last_write.checked_add(shared.keepalive);
            tokio::select! {
                // Ties go to the earlier arm: shutdown, then connection faults, then events
                // (so a backlog after a stall is sent before any keep-alive).
                biased;
                () = shared.shutdown.cancelled() => {
                    self.finished = true;
                    return None;
                }
                () = sleep_until_some(self.drop_at) => {
                    self.finished = true;
                    shared.stats.count(ENDPOINT, Count::SseDropped);
                    // An error makes hyper close the connection without the terminating
                    // chunk: the client sees the stream break, as on a network drop.
                    return Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "venue fault: drop_every",
                    )));
                }
                () = sleep_until_some(self.stall_at) => {
                    // Silent from here on, the connection held open: only a cut (drop_every)
                    // or the venue's shutdown ends it; the client must give up on its own.
                    shared.stats.count(ENDPOINT, Count::SseStalled);
                    let drop_at = self.drop_at;
                    tokio::select! {
                        () = shared.shutdown.cancelled() => {
                            self.finished = true;
                            return None;
                        }
                        () = sleep_until_some(drop_at) => {
                            self.finished = true;
                            shared.stats.count(ENDPOINT, Count::SseDropped);
                            return Some(Err(io::Error::new(
                                io::ErrorKind::ConnectionAborted,
                                "venue fault: drop_every",
                            )));
                        }
                    }
                }
                () = sleep_until_some(self.end_at) => {
                    self.finished = true;
                    shared.stats.count(ENDPOINT, Count::ErrorEvent);
                    shared.stats.count(ENDPOINT, Count::SseEnded);
                    return Some(Ok(frame(Some("error"), STREAM_TIMEOUT_MESSAGE.as_bytes())));
                }
                () = sleep_until_some(due) => {
                    self.next += 1;
                    let Some(entry) = entry else { continue };
                    if entry.event == "error" {
                        if entry.t_ms <= self.opened_ms {
                            continue;
                        }
                        // Hermes' last word before it closes the stream.
                        self.finished = true;
                        shared.stats.count(ENDPOINT, Count::ErrorEvent);
                        shared.stats.count(ENDPOINT, Count::SseEnded);
                        return Some(Ok(frame(Some("error"), &entry.raw)));
                    }
                    let data = match filter::hermes_update(&entry.raw, &self.request) {
                        Filtered::Nothing => continue,
                        Filtered::Recorded => entry.raw.clone(),
                        Filtered::Rendered(cut) => Bytes::from(cut),
                    };
                    let faults = shared.faults_for(ENDPOINT);
                    let data = if shared.dice.roll(ENDPOINT, Die::Malformed, faults.malformed_rate) {
                        shared.stats.count(ENDPOINT, Count::Malformed);
                        malformed(&shared, ENDPOINT, &data)
                    } else {
                        data
                    };
                    let event = (!entry.event.is_empty()).then_some(entry.event.as_str());
                    self.last_write = Instant::now();
                    shared.stats.count(ENDPOINT, Count::Event);
                    return Some(Ok(frame(event, &data)));
                }
                () = sleep_until_some(keepalive_at) => {
                    self.last_write = Instant::now();
                    shared.stats.count(ENDPOINT, Count::KeepAlive);
                    return Some(Ok(Bytes::from_static(b":\n\n")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_no_space_after_the_colon() {
        assert_eq!(&frame(None, b"{\"a\":1}")[..], b"data:{\"a\":1}\n\n");
        assert_eq!(
            &frame(Some("error"), STREAM_TIMEOUT_MESSAGE.as_bytes())[..],
            b"event:error\ndata:Connection timeout reached (24h)\n\n"
        );
        assert_eq!(&frame(None, b"a\r\nb")[..], b"data:a\ndata:b\n\n");
    }
}
