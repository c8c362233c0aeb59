//! A Hermes stream at a fixed update rate, for the live benchmark: every feed publishes once
//! per second, spread over evenly spaced small events.

use bytes::Bytes;

use super::hermes::Hermes;
use super::rng::Rng;
use crate::model::{Endpoint, Envelope};

/// `secs` seconds of Hermes stream events from `start_ms`: `feeds` feeds, each with one new
/// publish time per second, carried by `events_per_sec` events a second (the feeds split
/// evenly among them). The rate is `feeds` updates per second of recording.
///
/// ```
/// let events = sluice::synth::load::hermes_stream(100, 20, 2, 1_795_248_000_000, 1);
/// assert_eq!(events.len(), 40);
/// assert!(events.windows(2).all(|w| w[0].t_ms <= w[1].t_ms));
/// ```
pub fn hermes_stream(
    feeds: usize,
    events_per_sec: u32,
    secs: u32,
    start_ms: u64,
    seed: u64,
) -> Vec<Envelope> {
    let feeds = feeds.max(1);
    let events = (events_per_sec.max(1) as usize).min(feeds);
    let mut hermes = Hermes::new(feeds, start_ms, Rng::new(seed, 0x10ad));
    let mut out = Vec::with_capacity(events * secs as usize);
    let mut buf = Vec::new();
    let mut selected = Vec::new();
    for second in 0..u64::from(secs) {
        let base = start_ms + second * 1000;
        // Late in the second, so every feed's publish time is this second's (Hermes publishes
        // a few hundred ms before it streams): one new publish time per feed per second.
        hermes.advance((base / 1000) * 1000 + 999);
        for event in 0..events {
            let t_ms = base + (event as u64 * 1000) / events as u64;
            selected.clear();
            selected.extend((event * feeds / events)..((event + 1) * feeds / events));
            buf.clear();
            hermes.write_update(&mut buf, t_ms, &selected, None);
            out.push(Envelope {
                endpoint: Endpoint::HermesStream,
                t_ms,
                context: String::new(),
                raw: Bytes::copy_from_slice(&buf),
                seq: 0,
            });
        }
    }
    out
}
