//! The recording as the venue serves it: each served endpoint's envelopes in time order, indexed
//! for "the latest at or before t", and the clock that maps wall time onto recording time.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::filter;
use crate::dataflow::run::RecordingInput;
use crate::model::{Endpoint, Envelope};
use crate::record::{Item, RecordError, RecordingReader};

/// One recorded payload: when it arrived and its bytes.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) t_ms: u64,
    pub(crate) raw: Bytes,
}

/// One recorded Hermes SSE event: its type (empty for updates) and its `data`.
#[derive(Clone, Debug)]
pub(crate) struct StreamEntry {
    pub(crate) t_ms: u64,
    pub(crate) event: String,
    pub(crate) raw: Bytes,
}

/// The served endpoints' envelopes of one recording, ready to answer requests.
///
/// DEX Screener, Birdeye and Hermes envelopes are kept (mesh and chain ones are not served);
/// the time span covers every envelope of the recording.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    first_ms: Option<u64>,
    last_ms: Option<u64>,
    served: usize,
    truncated_at: Option<u64>,
    pub(crate) boosts: Vec<Entry>,
    /// `/tokens/v1` responses by the request's chain.
    pub(crate) tokens: HashMap<String, Vec<Entry>>,
    /// `multi_price` responses by `x-chain`.
    pub(crate) multi_price: HashMap<String, Vec<Entry>>,
    /// `/defi/price` responses by `<x-chain>/<address>`.
    pub(crate) price: HashMap<String, Vec<Entry>>,
    /// Every SSE event, errors included.
    pub(crate) stream: Vec<StreamEntry>,
    /// Update payloads (SSE updates and REST `/latest` bodies) for `/latest`.
    pub(crate) hermes_updates: Vec<Entry>,
    /// Every feed id seen in a Hermes payload (lower-case hex, no `0x`).
    pub(crate) hermes_ids: BTreeSet<String>,
}

impl Timeline {
    /// Reads a whole recording. A truncated tail (a crash while recording) is not an error:
    /// what precedes it is served, and [`Timeline::truncated_at`] says where it stopped.
    pub fn load(input: &RecordingInput) -> Result<Timeline, RecordError> {
        let mut reader = match input {
            RecordingInput::File(path) => RecordingReader::open(path)?,
            RecordingInput::Bytes(bytes) => RecordingReader::from_bytes(bytes.clone())?,
        };
        let mut envelopes = Vec::new();
        let mut truncated_at = None;
        loop {
            match reader.next_item() {
                Ok(Some(Item::Envelope(envelope))) => envelopes.push(envelope),
                Ok(Some(Item::Watermark { .. })) => {}
                Ok(None) => break,
                Err(RecordError::Truncated { offset }) => {
                    tracing::warn!(offset, "recording truncated; serving what precedes it");
                    truncated_at = Some(offset);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let mut timeline = Timeline::from_envelopes(envelopes);
        timeline.truncated_at = truncated_at;
        Ok(timeline)
    }

    /// Indexes envelopes (in any order; equal times keep their order).
    pub fn from_envelopes(envelopes: impl IntoIterator<Item = Envelope>) -> Timeline {
        let mut timeline = Timeline::default();
        for envelope in envelopes {
            timeline.first_ms = Some(
                timeline
                    .first_ms
                    .map_or(envelope.t_ms, |t| t.min(envelope.t_ms)),
            );
            timeline.last_ms = Some(
                timeline
                    .last_ms
                    .map_or(envelope.t_ms, |t| t.max(envelope.t_ms)),
            );
            let entry = Entry {
                t_ms: envelope.t_ms,
                raw: envelope.raw,
            };
            match envelope.endpoint {
                Endpoint::DexscreenerBoosts => timeline.boosts.push(entry),
                Endpoint::DexscreenerTokens => timeline
                    .tokens
                    .entry(envelope.context)
                    .or_default()
                    .push(entry),
                Endpoint::BirdeyeMultiPrice => {
                    let chain = if envelope.context.is_empty() {
                        "solana".to_owned()
                    } else {
                        envelope.context
                    };
                    timeline.multi_price.entry(chain).or_default().push(entry)
                }
                Endpoint::BirdeyePrice => timeline
                    .price
                    .entry(envelope.context)
                    .or_default()
                    .push(entry),
                Endpoint::HermesStream => {
                    if envelope.context.is_empty() {
                        timeline.note_hermes_ids(&entry.raw);
                        timeline.hermes_updates.push(entry.clone());
                    }
                    timeline.stream.push(StreamEntry {
                        t_ms: entry.t_ms,
                        event: envelope.context,
                        raw: entry.raw,
                    });
                }
                Endpoint::HermesLatest => {
                    timeline.note_hermes_ids(&entry.raw);
                    timeline.hermes_updates.push(entry);
                }
                Endpoint::MeshPrice | Endpoint::ChainRead | Endpoint::ChainTx => continue,
            }
            timeline.served += 1;
        }
        // Stable sorts: recordings are in ingest order already, and equal times keep it.
        timeline.boosts.sort_by_key(|e| e.t_ms);
        timeline.stream.sort_by_key(|e| e.t_ms);
        timeline.hermes_updates.sort_by_key(|e| e.t_ms);
        for entries in timeline
            .tokens
            .values_mut()
            .chain(timeline.multi_price.values_mut())
            .chain(timeline.price.values_mut())
        {
            entries.sort_by_key(|e| e.t_ms);
        }
        timeline
    }

    fn note_hermes_ids(&mut self, raw: &[u8]) {
        if let Some(update) = filter::HermesUpdate::parse(raw) {
            for feed in update.feeds() {
                self.hermes_ids.insert(feed.to_owned());
            }
        }
    }

    /// The time of the recording's first envelope (ms since the epoch), the venue clock's
    /// origin; `None` for an empty recording.
    pub fn first_ms(&self) -> Option<u64> {
        self.first_ms
    }

    /// The time of the recording's last envelope.
    pub fn last_ms(&self) -> Option<u64> {
        self.last_ms
    }

    /// How many envelopes the venue serves (DEX Screener, Birdeye and Hermes ones).
    pub fn served_envelopes(&self) -> usize {
        self.served
    }

    /// Where the recording was cut short, if it was.
    pub fn truncated_at(&self) -> Option<u64> {
        self.truncated_at
    }

    /// The Hermes feed ids the recording carries (lower-case hex without `0x`).
    pub fn hermes_feed_ids(&self) -> impl Iterator<Item = &str> {
        self.hermes_ids.iter().map(String::as_str)
    }

    /// The DEX Screener chains with recorded `/tokens/v1` responses.
    pub fn token_chains(&self) -> impl Iterator<Item = &str> {
        self.tokens.keys().map(String::as_str)
    }
}

/// The latest entry at or before `t_ms`.
pub(crate) fn latest(entries: &[Entry], t_ms: u64) -> Option<&Entry> {
    let after = entries.partition_point(|e| e.t_ms <= t_ms);
    after.checked_sub(1).and_then(|i| entries.get(i))
}

/// Maps wall time onto recording time: recording time = origin + (wall time since start) ×
/// speed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    started: Instant,
    origin_ms: u64,
    speed: f64,
}

/// The longest wall time the venue ever waits for one thing (keeps `Instant` arithmetic far
/// from overflow when a due time is absurdly far away).
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Clock {
    /// A clock at `origin_ms` now, advancing `speed` recording ms per wall ms (`speed` > 0).
    pub(crate) fn start(origin_ms: u64, speed: f64) -> Clock {
        Clock {
            started: Instant::now(),
            origin_ms,
            speed,
        }
    }

    /// Recording time now.
    pub(crate) fn now_ms(&self) -> u64 {
        let elapsed_ms = self.started.elapsed().as_secs_f64() * 1000.0 * self.speed;
        // `as` saturates, and elapsed time is never negative.
        self.origin_ms.saturating_add(elapsed_ms as u64)
    }

    /// The wall instant at which recording time reaches `t_ms` (the start, for earlier times).
    pub(crate) fn wall_at(&self, t_ms: u64) -> Instant {
        let recording = Duration::from_millis(t_ms.saturating_sub(self.origin_ms));
        let wall = self.wall_span(recording);
        self.started
            .checked_add(wall)
            .unwrap_or(self.started + Duration::from_secs(86_400))
    }

    /// A span of recording time as wall time at this speed.
    pub(crate) fn wall_span(self, recording: Duration) -> Duration {
        Duration::try_from_secs_f64(recording.as_secs_f64() / self.speed)
            .map_or(FAR, |d| d.min(FAR))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(endpoint: Endpoint, t_ms: u64, context: &str, raw: &str) -> Envelope {
        Envelope {
            endpoint,
            t_ms,
            context: context.to_owned(),
            raw: Bytes::from(raw.to_owned()),
            seq: 0,
        }
    }

    #[test]
    fn latest_is_at_or_before() {
        let timeline = Timeline::from_envelopes([
            envelope(Endpoint::DexscreenerBoosts, 2000, "", "[2]"),
            envelope(Endpoint::DexscreenerBoosts, 1000, "", "[1]"),
            envelope(Endpoint::MeshPrice, 500, "", "{}"),
        ]);
        assert_eq!(timeline.first_ms(), Some(500));
        assert_eq!(timeline.last_ms(), Some(2000));
        assert_eq!(timeline.served_envelopes(), 2);
        assert!(latest(&timeline.boosts, 999).is_none());
        assert_eq!(latest(&timeline.boosts, 1000).map(|e| e.t_ms), Some(1000));
        assert_eq!(latest(&timeline.boosts, 1999).map(|e| e.t_ms), Some(1000));
        assert_eq!(latest(&timeline.boosts, 9999).map(|e| e.t_ms), Some(2000));
    }

    #[test]
    fn clock_scales_by_speed() {
        let clock = Clock::start(1_000, 10.0);
        assert_eq!(
            clock.wall_span(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
        assert_eq!(clock.wall_at(500), clock.started);
        assert_eq!(
            clock.wall_at(2_000) - clock.started,
            Duration::from_millis(100)
        );
        assert!(clock.now_ms() >= 1_000);
    }
}
