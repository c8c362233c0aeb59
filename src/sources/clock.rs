//! The one clock every live source stamps from, and the heartbeat that advances watermarks.
//!
//! The dataflow completes a time only when every source's watermark has passed it, so a quiet
//! source would hold back a busy one. All live sources of a process therefore stamp from one
//! [`LiveClock`]: ingest times never go backwards across sources, and any moment "now" is a
//! valid watermark for every source at once. The heartbeat advances them all together, on a
//! fixed interval while things are quiet and right at the end of a tick that just received
//! data, so a price is journaled about a tick after it arrived rather than an interval after.
//!
//! Stamping, sending to the dataflow and writing the recording happen under one lock, so every
//! source's channel and the recording agree on the order of everything.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{ActivatorSlot, Recorder, now_ms};
use crate::model::{Endpoint, Envelope, Ingest, Source};

/// Recorded watermarks are thinned to at most one per source per this many ms: a replay needs
/// only the final one to give the same journal, and the rest only pace it.
const RECORDED_WATERMARK_EVERY_MS: u64 = 1_000;

/// The clock and the outlets of every live source.
pub struct LiveClock {
    state: Mutex<ClockState>,
    wake: Notify,
    tick_ms: u64,
    interval: Duration,
    recorder: Option<Arc<Recorder>>,
}

struct ClockState {
    /// The last time handed out (ms since the epoch).
    last_ms: u64,
    outlets: [Option<Outlet>; Source::ALL.len()],
    /// The end of the tick that last received data, if no beat has passed it yet.
    due_ms: Option<u64>,
}

struct Outlet {
    tx: Sender<Ingest>,
    activator: ActivatorSlot,
    recorded_ms: u64,
}

impl LiveClock {
    /// A clock for a dataflow ticking every `tick_ms`, beating at least every `interval`.
    pub fn new(tick_ms: u64, interval: Duration, recorder: Option<Arc<Recorder>>) -> Arc<Self> {
        Arc::new(LiveClock {
            state: Mutex::new(ClockState {
                last_ms: 0,
                outlets: Default::default(),
                due_ms: None,
            }),
            wake: Notify::new(),
            tick_ms: tick_ms.max(1),
            interval,
            recorder,
        })
    }

    fn lock(&self) -> MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens an outlet for `source`: the emitter its task uses, the receiver its dataflow
    /// operator reads, and the slot where that operator's activator goes once it exists.
    pub fn attach(self: &Arc<Self>, source: Source) -> (Emitter, Receiver<Ingest>, ActivatorSlot) {
        let (tx, rx) = channel();
        let activator = ActivatorSlot::default();
        self.lock().outlets[source.index()] = Some(Outlet {
            tx,
            activator: Arc::clone(&activator),
            recorded_ms: 0,
        });
        let emitter = Emitter {
            clock: Arc::clone(self),
            source,
        };
        (emitter, rx, activator)
    }

    fn stamp(state: &mut ClockState) -> u64 {
        state.last_ms = state.last_ms.max(now_ms());
        state.last_ms
    }

    fn emit(&self, source: Source, endpoint: Endpoint, context: &str, raw: Bytes) -> Option<u64> {
        let mut state = self.lock();
        let t_ms = Self::stamp(&mut state);
        let outlet = state.outlets[source.index()].as_ref()?;
        let env = Envelope {
            endpoint,
            t_ms,
            context: context.to_owned(),
            raw,
            seq: 0,
        };
        if let Some(recorder) = &self.recorder {
            recorder.envelope(&env);
        }
        send(outlet, Ingest::Envelope(env));
        let due = tick_end(t_ms, self.tick_ms);
        if state.due_ms.is_none_or(|d| d > due) {
            state.due_ms = Some(due);
            drop(state);
            self.wake.notify_one();
        }
        Some(t_ms)
    }

    /// Advances every source's watermark to now.
    pub fn beat(&self) {
        let mut state = self.lock();
        let t_ms = Self::stamp(&mut state);
        if state.due_ms.is_some_and(|d| d <= t_ms) {
            state.due_ms = None;
        }
        for (index, slot) in state.outlets.iter_mut().enumerate() {
            if let Some(outlet) = slot {
                if t_ms >= outlet.recorded_ms + RECORDED_WATERMARK_EVERY_MS
                    && let (Some(recorder), Some(source)) =
                        (&self.recorder, Source::from_index(index))
                {
                    recorder.watermark(source, t_ms);
                    outlet.recorded_ms = t_ms;
                }
                send(outlet, Ingest::Watermark(t_ms));
            }
        }
    }

    /// Beats until `stop`: every `interval`, and at the end of any tick that received data.
    pub async fn heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let mut next = tokio::time::Instant::now() + self.interval;
        loop {
            let due = self.lock().due_ms;
            let deadline = match due {
                Some(due_ms) => {
                    let wait = Duration::from_millis(due_ms.saturating_sub(now_ms()));
                    next.min(tokio::time::Instant::now() + wait)
                }
                None => next,
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => continue,
                _ = tokio::time::sleep_until(deadline) => {}
            }
            self.beat();
            if tokio::time::Instant::now() >= next {
                next = tokio::time::Instant::now() + self.interval;
            }
        }
    }

    /// Ends every source: a final watermark, recorded, and the channels close.
    pub fn close(&self) {
        let mut state = self.lock();
        let t_ms = Self::stamp(&mut state);
        for (index, slot) in state.outlets.iter_mut().enumerate() {
            if let Some(outlet) = slot.take() {
                if let (Some(recorder), Some(source)) = (&self.recorder, Source::from_index(index))
                {
                    recorder.watermark(source, t_ms);
                }
                let _ = outlet.tx.send(Ingest::Watermark(t_ms));
                let activator = outlet.activator;
                drop(outlet.tx);
                if let Some(activator) = activator.get() {
                    let _ = activator.activate();
                }
            }
        }
    }
}

fn send(outlet: &Outlet, ingest: Ingest) {
    // The receiver is gone only when the dataflow is shutting down.
    if outlet.tx.send(ingest).is_ok()
        && let Some(activator) = outlet.activator.get()
    {
        let _ = activator.activate();
    }
}

/// The first moment of the tick after the one holding `t_ms`.
fn tick_end(t_ms: u64, tick_ms: u64) -> u64 {
    (t_ms / tick_ms + 1) * tick_ms
}

/// A source's way into the dataflow (and the recording).
#[derive(Clone)]
pub struct Emitter {
    clock: Arc<LiveClock>,
    source: Source,
}

impl Emitter {
    /// The source this emitter feeds.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Hands over a payload received now; returns its ingest time, or `None` once the clock
    /// has closed (the run is shutting down and the payload is not part of it).
    pub fn envelope(&self, endpoint: Endpoint, context: &str, raw: Bytes) -> Option<u64> {
        debug_assert_eq!(endpoint.source(), self.source);
        self.clock.emit(self.source, endpoint, context, raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_never_go_backwards_and_watermarks_follow_envelopes() {
        let clock = LiveClock::new(10, Duration::from_millis(250), None);
        let (dex, dex_rx, _) = clock.attach(Source::Dexscreener);
        let (hermes, hermes_rx, _) = clock.attach(Source::Hermes);
        let a = hermes
            .envelope(Endpoint::HermesStream, "", Bytes::from_static(b"{}"))
            .unwrap();
        clock.beat();
        let b = dex
            .envelope(Endpoint::DexscreenerBoosts, "", Bytes::from_static(b"[]"))
            .unwrap();
        assert!(b >= a);
        clock.close();
        assert!(
            dex.envelope(Endpoint::DexscreenerBoosts, "", Bytes::new())
                .is_none()
        );
        let times = |rx: Receiver<Ingest>| -> Vec<(bool, u64)> {
            rx.iter()
                .map(|i| match i {
                    Ingest::Envelope(e) => (true, e.t_ms),
                    Ingest::Watermark(w) => (false, w),
                })
                .collect()
        };
        let hermes_items = times(hermes_rx);
        let dex_items = times(dex_rx);
        for items in [&hermes_items, &dex_items] {
            // Every source sees a non-decreasing sequence, ending in a watermark; the channel
            // closed (the iterator ended).
            assert!(items.windows(2).all(|w| w[0].1 <= w[1].1), "{items:?}");
            assert!(!items.last().unwrap().0);
        }
        assert_eq!(hermes_items.len(), 3);
        assert_eq!(dex_items.len(), 3);
    }

    #[test]
    fn data_makes_the_heartbeat_due_at_the_tick_end() {
        assert_eq!(tick_end(1_005, 10), 1_010);
        assert_eq!(tick_end(1_010, 10), 1_020);
        let clock = LiveClock::new(10, Duration::from_secs(60), None);
        let (hermes, _rx, _) = clock.attach(Source::Hermes);
        let t = hermes
            .envelope(Endpoint::HermesStream, "", Bytes::new())
            .unwrap();
        assert_eq!(clock.lock().due_ms, Some(tick_end(t, 10)));
    }
}
