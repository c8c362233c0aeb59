//! Live sources: tasks that poll or stream the real APIs and hand the dataflow envelopes.
//!
//! Every source holds an [`Emitter`] from the one [`LiveClock`]: it stamps each payload with
//! the ingest time (never going backwards), writes it to the recording if one is being made,
//! and sends it to the source's timely operator. The clock's heartbeat advances every source's
//! watermark, so timers downstream fire in silence; the recording carries those watermarks
//! too, which is what makes a replay of a live run give exactly the journal the live run wrote.

pub mod birdeye;
pub mod chain;
pub mod clock;
pub mod dexscreener;
pub mod fresh;
pub mod health;
pub mod hermes;
pub mod recorder;
pub mod tracked;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use timely::scheduling::SyncActivator;
use tokio_util::sync::CancellationToken;

pub use clock::{Emitter, LiveClock};
pub use health::{SourceHealth, SourceRegistry};
pub use recorder::Recorder;
pub use tracked::TrackedTokens;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where a source's operator can be woken from another thread, once the dataflow exists.
pub type ActivatorSlot = Arc<OnceLock<SyncActivator>>;

/// Runs `poll` now and then every `interval` until `stop`; a poll that overruns delays the
/// next rather than bunching them up. A poll in flight when `stop` comes is abandoned.
pub async fn every<F, Fut>(interval: Duration, stop: CancellationToken, mut poll: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = poll() => {}
        }
    }
}
