//! The providers' rate limits as the venue enforces them: sliding windows per limit group,
//! scaled by the venue's speed, with Hermes' 60 s penalty after an overflow.
//!
//! | group | limit | after an overflow |
//! |---|---|---|
//! | DEX Screener `/token-boosts/*` | 60 per minute | each request over the limit gets 429 |
//! | DEX Screener `/tokens/v1/*` | 300 per minute | same |
//! | Birdeye (every endpoint: the limit is per account) | `birdeye_rps` per second | same |
//! | Hermes (stream opens and `/latest`) | 30 per 10 s | every request gets 429 for 60 s |
//!
//! Windows and the penalty are recording time: at speed 10 they last a tenth as long in wall
//! time, so a client polling at the recorded pace × 10 stays within them exactly when the
//! recorded client did.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::timeline::Clock;
use crate::model::Endpoint;

/// A set of requests that share one limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LimitGroup {
    DexscreenerBoosts = 0,
    DexscreenerTokens = 1,
    Birdeye = 2,
    Hermes = 3,
}

impl LimitGroup {
    /// The group an endpoint's requests count against.
    pub(crate) fn of(endpoint: Endpoint) -> Option<LimitGroup> {
        Some(match endpoint {
            Endpoint::DexscreenerBoosts => LimitGroup::DexscreenerBoosts,
            Endpoint::DexscreenerTokens => LimitGroup::DexscreenerTokens,
            Endpoint::BirdeyeMultiPrice | Endpoint::BirdeyePrice => LimitGroup::Birdeye,
            Endpoint::HermesStream | Endpoint::HermesLatest => LimitGroup::Hermes,
            Endpoint::MeshPrice | Endpoint::ChainRead | Endpoint::ChainTx => return None,
        })
    }
}

/// Hermes' public limit: requests per window.
pub const HERMES_REQUESTS_PER_10S: usize = 30;
/// DEX Screener's limit on the boost (and profile) endpoints, per minute.
pub const DEXSCREENER_BOOSTS_PER_MINUTE: usize = 60;
/// DEX Screener's limit on the pair and token endpoints, per minute.
pub const DEXSCREENER_TOKENS_PER_MINUTE: usize = 300;
/// How long Hermes refuses every request after an overflow (recording time).
pub const HERMES_PENALTY: Duration = Duration::from_secs(60);

/// At most `limit` requests in any `window`; optionally, after an overflow, nothing for
/// `penalty`.
#[derive(Debug)]
struct SlidingWindow {
    limit: usize,
    window: Duration,
    penalty: Option<Duration>,
    /// Admitted requests within the last `window` (oldest first).
    admitted: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl SlidingWindow {
    fn new(limit: usize, window: Duration, penalty: Option<Duration>) -> SlidingWindow {
        SlidingWindow {
            limit,
            window,
            penalty,
            admitted: VecDeque::with_capacity(limit),
            blocked_until: None,
        }
    }

    fn admit(&mut self, now: Instant) -> bool {
        if let Some(until) = self.blocked_until {
            if now < until {
                return false;
            }
            self.blocked_until = None;
        }
        while self
            .admitted
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= self.window)
        {
            self.admitted.pop_front();
        }
        if self.admitted.len() < self.limit {
            self.admitted.push_back(now);
            return true;
        }
        if let Some(penalty) = self.penalty {
            // An unrepresentable end (an absurd penalty) blocks for good.
            self.blocked_until = Some(
                now.checked_add(penalty)
                    .unwrap_or(now + Duration::from_secs(86_400 * 365)),
            );
            self.admitted.clear();
        }
        false
    }
}

/// The venue's limiters (all admitting everything when limits are off).
pub(crate) struct RateLimits {
    groups: Option<Mutex<[SlidingWindow; 4]>>,
}

impl RateLimits {
    /// Limits at `clock`'s speed; `None` when disabled.
    pub(crate) fn new(enabled: bool, clock: &Clock, birdeye_rps: u32) -> RateLimits {
        let wall = |d: Duration| clock.wall_span(d);
        let groups = enabled.then(|| {
            Mutex::new([
                SlidingWindow::new(
                    DEXSCREENER_BOOSTS_PER_MINUTE,
                    wall(Duration::from_secs(60)),
                    None,
                ),
                SlidingWindow::new(
                    DEXSCREENER_TOKENS_PER_MINUTE,
                    wall(Duration::from_secs(60)),
                    None,
                ),
                SlidingWindow::new(
                    birdeye_rps.max(1) as usize,
                    wall(Duration::from_secs(1)),
                    None,
                ),
                SlidingWindow::new(
                    HERMES_REQUESTS_PER_10S,
                    wall(Duration::from_secs(10)),
                    Some(wall(HERMES_PENALTY)),
                ),
            ])
        });
        RateLimits { groups }
    }

    /// Counts a request against its group; false when it is over the limit (answer 429).
    pub(crate) fn admit(&self, endpoint: Endpoint) -> bool {
        let (Some(groups), Some(group)) = (&self.groups, LimitGroup::of(endpoint)) else {
            return true;
        };
        let mut groups = groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups
            .get_mut(group as usize)
            .is_none_or(|window| window.admit(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_admits_up_to_the_limit_then_slides() {
        let start = Instant::now();
        let mut w = SlidingWindow::new(3, Duration::from_secs(1), None);
        assert!(w.admit(start));
        assert!(w.admit(start + Duration::from_millis(100)));
        assert!(w.admit(start + Duration::from_millis(200)));
        assert!(!w.admit(start + Duration::from_millis(300)));
        assert!(w.admit(start + Duration::from_millis(1000)));
        assert!(!w.admit(start + Duration::from_millis(1050)));
        assert!(w.admit(start + Duration::from_millis(1100)));
    }

    #[test]
    fn penalty_blocks_everything_after_an_overflow() {
        let start = Instant::now();
        let mut w = SlidingWindow::new(2, Duration::from_secs(10), Some(Duration::from_secs(60)));
        assert!(w.admit(start));
        assert!(w.admit(start));
        assert!(!w.admit(start + Duration::from_secs(1)));
        // The window alone would admit again at 10 s; the penalty holds until 61 s.
        assert!(!w.admit(start + Duration::from_secs(30)));
        assert!(!w.admit(start + Duration::from_secs(60)));
        assert!(w.admit(start + Duration::from_secs(61)));
    }
}
