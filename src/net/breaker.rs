//! A circuit breaker per endpoint: stop calling an endpoint that keeps failing, probe it again
//! after a cooldown.
//!
//! Closed → (N consecutive failures) → Open → (cooldown) → HalfOpen: one probe goes through;
//! its success closes the breaker, its failure opens it again. Time is passed in, so the state
//! machine is tested without sleeping.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sluice::net::breaker::{Breaker, BreakerState};
//! let start = Instant::now();
//! let mut b = Breaker::new(2, Duration::from_secs(30));
//! b.on_failure(start);
//! assert!(b.allow(start));
//! b.on_failure(start);
//! assert_eq!(b.state(), BreakerState::Open);
//! assert!(!b.allow(start + Duration::from_secs(29)));
//! assert!(b.allow(start + Duration::from_secs(30))); // the half-open probe
//! assert!(!b.allow(start + Duration::from_secs(30))); // only one at a time
//! b.on_success();
//! assert_eq!(b.state(), BreakerState::Closed);
//! ```

use std::time::{Duration, Instant};

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast until the cooldown ends.
    Open,
    /// One probe call is allowed; its outcome decides.
    HalfOpen,
}

impl BreakerState {
    /// The value of the `circuit_breaker_state` gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }

    /// Its name in status pages.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// One endpoint's breaker.
#[derive(Clone, Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: BreakerState,
    opened_at: Option<Instant>,
    probing: bool,
    consecutive_failures: u32,
    failures: u64,
    successes: u64,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures and probes again
    /// after `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            state: BreakerState::Closed,
            opened_at: None,
            probing: false,
            consecutive_failures: 0,
            failures: 0,
            successes: 0,
        }
    }

    /// Whether a call may go out at `now`. In half-open, only one probe at a time.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                let due = self
                    .opened_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= self.cooldown);
                if due {
                    self.state = BreakerState::HalfOpen;
                    self.probing = true;
                }
                due
            }
            BreakerState::HalfOpen => {
                if self.probing {
                    false
                } else {
                    self.probing = true;
                    true
                }
            }
        }
    }

    /// A call succeeded: the breaker closes.
    pub fn on_success(&mut self) {
        self.successes += 1;
        self.consecutive_failures = 0;
        self.state = BreakerState::Closed;
        self.opened_at = None;
        self.probing = false;
    }

    /// A call failed at `now`.
    pub fn on_failure(&mut self, now: Instant) {
        self.failures += 1;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let trips =
            self.state == BreakerState::HalfOpen || self.consecutive_failures >= self.threshold;
        if trips {
            self.state = BreakerState::Open;
            self.opened_at = Some(now);
        }
        self.probing = false;
    }

    /// The current state (an open breaker whose cooldown ended still reads Open until a call
    /// is attempted).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Failures in a row.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// All failures so far.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Successes / (successes + failures), 1 before any call.
    pub fn success_ratio(&self) -> f64 {
        let total = self.successes + self.failures;
        if total == 0 {
            1.0
        } else {
            self.successes as f64 / total as f64
        }
    }

    /// How long until an open breaker lets a probe through.
    pub fn retry_in(&self, now: Instant) -> Option<Duration> {
        match (self.state, self.opened_at) {
            (BreakerState::Open, Some(at)) => Some(
                self.cooldown
                    .saturating_sub(now.saturating_duration_since(at)),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(10));
        b.on_failure(t);
        b.on_failure(t);
        b.on_success();
        b.on_failure(t);
        b.on_failure(t);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "a success in between resets the count"
        );
        b.on_failure(t);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.consecutive_failures(), 3);
        assert_eq!(b.failures(), 5);
        assert_eq!(
            b.retry_in(t + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
    }

    #[test]
    fn a_failed_probe_reopens_for_a_full_cooldown() {
        let t = Instant::now();
        let mut b = Breaker::new(1, Duration::from_secs(10));
        b.on_failure(t);
        let probe = t + Duration::from_secs(10);
        assert!(b.allow(probe));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.on_failure(probe);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow(probe + Duration::from_secs(9)));
        assert!(b.allow(probe + Duration::from_secs(10)));
        b.on_success();
        assert!(b.allow(probe + Duration::from_secs(10)));
        assert!((b.success_ratio() - 1.0 / 3.0).abs() < 1e-9);
    }
}
