//! Rate limits with priority: requests wait in a priority queue in front of each governor
//! bucket, and one dispatcher per bucket grants permits highest class first (FIFO within a
//! class); a provider-wide pause after a 429 holds every bucket of the provider.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use tokio::sync::{Notify, oneshot, watch};

/// How urgent a request is. Under pressure, a higher class is granted its permit first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Must not wait behind anything (e.g. the price data of an oracle push).
    Critical,
    /// Fresh prices for tracked assets.
    High,
    /// Regular polls.
    Medium,
    /// Nice to have (enrichment, wider price coverage).
    Low,
    /// Whatever can wait indefinitely (warm-up, backfill).
    Background,
}

impl Priority {
    /// Every class, most urgent first.
    pub const ALL: [Priority; 5] = [
        Priority::Critical,
        Priority::High,
        Priority::Medium,
        Priority::Low,
        Priority::Background,
    ];

    /// Its name in status pages.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
            Priority::Background => "background",
        }
    }

    /// Larger is more urgent.
    fn rank(self) -> u8 {
        match self {
            Priority::Critical => 4,
            Priority::High => 3,
            Priority::Medium => 2,
            Priority::Low => 1,
            Priority::Background => 0,
        }
    }
}

/// A rate limit: at most `requests` in any window of length `per`.
///
/// It is enforced as one request every `per / requests`, with no initial burst: governor's
/// default burst (the whole period's count) followed by the steady rate would let almost twice
/// the limit through in the first window, which DEX Screener counts and Hermes punishes with a
/// 60 s ban. Configure it at or below the upstream's published limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub requests: u32,
    /// The window.
    pub per: Duration,
}

impl RateLimit {
    /// `requests` per `per`.
    pub fn new(requests: u32, per: Duration) -> Self {
        RateLimit { requests, per }
    }

    /// `requests` per second.
    pub fn per_second(requests: u32) -> Self {
        Self::new(requests, Duration::from_secs(1))
    }

    /// `requests` per minute.
    pub fn per_minute(requests: u32) -> Self {
        Self::new(requests, Duration::from_secs(60))
    }

    /// The governor quota: one cell every `per / requests`, burst one. `None` when the limit
    /// is zero or finer than governor's resolution.
    fn quota(self) -> Option<Quota> {
        if self.requests == 0 {
            return None;
        }
        let interval = self.per / self.requests;
        Quota::with_period(interval).map(|q| q.allow_burst(NonZeroU32::MIN))
    }
}

/// The provider-wide pause after a 429: no bucket of the provider grants a permit before it
/// ends.
pub(crate) struct Pause {
    until: watch::Sender<Option<Instant>>,
}

impl Pause {
    pub(crate) fn new() -> Self {
        Pause {
            until: watch::Sender::new(None),
        }
    }

    /// Pauses until `until`, unless already paused longer.
    pub(crate) fn extend_to(&self, until: Instant) {
        self.until.send_if_modified(|current| match current {
            Some(existing) if *existing >= until => false,
            _ => {
                *current = Some(until);
                true
            }
        });
    }

    /// How much of the pause is left at `now`.
    pub(crate) fn remaining(&self, now: Instant) -> Option<Duration> {
        let until = (*self.until.borrow())?;
        (until > now).then(|| until - now)
    }

    fn subscribe(&self) -> watch::Receiver<Option<Instant>> {
        self.until.subscribe()
    }
}

/// Why no permit was granted.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The provider is paused for longer than the caller is willing to wait.
    Paused(Duration),
    /// No tokio runtime to run the dispatcher on.
    NoRuntime,
    /// The bucket was shut down (its `Api` dropped) while waiting.
    Closed,
}

/// One governor bucket and the queue in front of it.
pub(crate) struct Bucket {
    limit: RateLimit,
    limiter: DefaultDirectRateLimiter,
    queue: Mutex<WaitQueue>,
    /// Wakes the dispatcher when a request joins an empty queue, or at shutdown.
    wake: Notify,
    dispatcher_running: AtomicBool,
    closed: AtomicBool,
}

#[derive(Default)]
struct WaitQueue {
    next_seq: u64,
    waiting: BinaryHeap<Waiter>,
}

struct Waiter {
    rank: u8,
    seq: u64,
    grant: oneshot::Sender<()>,
}

impl Waiter {
    /// Higher class first, then earlier arrival.
    fn order_key(&self) -> (u8, Reverse<u64>) {
        (self.rank, Reverse(self.seq))
    }
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.order_key() == other.order_key()
    }
}

impl Eq for Waiter {}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

impl Bucket {
    /// A bucket enforcing `limit`; `None` when the limit cannot be expressed.
    pub(crate) fn new(limit: RateLimit) -> Option<Bucket> {
        Some(Bucket {
            limit,
            limiter: RateLimiter::direct(limit.quota()?),
            queue: Mutex::new(WaitQueue::default()),
            wake: Notify::new(),
            dispatcher_running: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    /// The configured limit.
    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Requests waiting for a permit.
    pub(crate) fn queued(&self) -> usize {
        self.lock_queue().waiting.len()
    }

    /// Stops the dispatcher and drops every waiter (they see [`Refused::Closed`]).
    pub(crate) fn close(&self) {
        self.closed.store(true, AtomicOrdering::SeqCst);
        self.wake.notify_one();
    }

    /// Waits for a permit at `priority`; returns how long it waited. With `max_pause`, gives
    /// up as soon as the provider is paused for longer than that (a poll is better answered
    /// from the stale cache than held for a minute).
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        pause: &Arc<Pause>,
        priority: Priority,
        max_pause: Option<Duration>,
    ) -> Result<Duration, Refused> {
        let started = Instant::now();
        // Subscribed before the first check, so a pause that starts in between is seen.
        let mut pause_changes = pause.subscribe();
        let too_long = |now: Instant| {
            let limit = max_pause?;
            pause.remaining(now).filter(|left| *left > limit)
        };
        if let Some(left) = too_long(started) {
            return Err(Refused::Paused(left));
        }
        let (grant, mut granted) = oneshot::channel();
        {
            let mut queue = self.lock_queue();
            let seq = queue.next_seq;
            queue.next_seq += 1;
            queue.waiting.push(Waiter {
                rank: priority.rank(),
                seq,
                grant,
            });
        }
        self.ensure_dispatcher(pause)?;
        self.wake.notify_one();

        let mut watching_pause = max_pause.is_some();
        loop {
            tokio::select! {
                result = &mut granted => {
                    return match result {
                        Ok(()) => Ok(started.elapsed()),
                        Err(_) => Err(Refused::Closed),
                    };
                }
                changed = pause_changes.changed(), if watching_pause => {
                    if changed.is_err() {
                        watching_pause = false;
                    } else if let Some(left) = too_long(Instant::now()) {
                        // Dropping `granted` takes this request out of the queue: the
                        // dispatcher skips closed waiters.
                        return Err(Refused::Paused(left));
                    }
                }
            }
        }
    }

    /// Starts this bucket's dispatcher on the current runtime unless one is running.
    fn ensure_dispatcher(self: &Arc<Self>, pause: &Arc<Pause>) -> Result<(), Refused> {
        if self.dispatcher_running.swap(true, AtomicOrdering::SeqCst) {
            return Ok(());
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(dispatch(Arc::clone(self), Arc::clone(pause)));
                Ok(())
            }
            Err(_) => {
                self.dispatcher_running.store(false, AtomicOrdering::SeqCst);
                Err(Refused::NoRuntime)
            }
        }
    }

    fn lock_queue(&self) -> MutexGuard<'_, WaitQueue> {
        // The queue holds no invariant a panic elsewhere could break halfway.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops waiters whose caller gave up; true when nobody is left.
    fn prune_and_is_empty(&self) -> bool {
        let mut queue = self.lock_queue();
        queue.waiting.retain(|w| !w.grant.is_closed());
        queue.waiting.is_empty()
    }

    /// Hands a permit to the most urgent waiter still there.
    fn grant_next(&self) {
        let mut queue = self.lock_queue();
        while let Some(waiter) = queue.waiting.pop() {
            if waiter.grant.send(()).is_ok() {
                return;
            }
        }
    }
}

/// Marks the dispatcher stopped however its task ends (shutdown, runtime dropped), so the
/// next request starts a new one.
struct RunningFlag(Arc<Bucket>);

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.0
            .dispatcher_running
            .store(false, AtomicOrdering::SeqCst);
    }
}

/// The dispatcher: while anyone waits, wait out the pause, then the limiter, then grant the
/// permit to whoever is most urgent *now* — a critical request that arrived during the wait
/// goes before background ones that were there earlier.
async fn dispatch(bucket: Arc<Bucket>, pause: Arc<Pause>) {
    let flag = RunningFlag(bucket);
    let bucket = &flag.0;
    loop {
        if bucket.closed.load(AtomicOrdering::SeqCst) {
            bucket.lock_queue().waiting.clear();
            return;
        }
        if bucket.prune_and_is_empty() {
            bucket.wake.notified().await;
            continue;
        }
        if let Some(left) = pause.remaining(Instant::now()) {
            tokio::time::sleep(left).await;
            continue;
        }
        bucket.limiter.until_ready().await;
        if pause.remaining(Instant::now()).is_some() {
            // A 429 arrived while waiting for the cell: that cell is forfeited, which only
            // errs on the side of sending less.
            continue;
        }
        bucket.grant_next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_order_by_class_then_arrival() {
        let mut heap = BinaryHeap::new();
        let mut receivers = Vec::new();
        for (seq, priority) in [
            Priority::Background,
            Priority::Critical,
            Priority::Low,
            Priority::Critical,
            Priority::High,
        ]
        .into_iter()
        .enumerate()
        {
            let (grant, rx) = oneshot::channel();
            receivers.push(rx);
            heap.push(Waiter {
                rank: priority.rank(),
                seq: seq as u64,
                grant,
            });
        }
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|w| w.seq)).collect();
        assert_eq!(order, vec![1, 3, 4, 2, 0]);
    }

    #[test]
    fn quotas_have_no_burst() {
        let bucket = Bucket::new(RateLimit::per_second(10)).unwrap();
        assert!(bucket.limiter.check().is_ok());
        assert!(
            bucket.limiter.check().is_err(),
            "a second request at once would be a burst"
        );
        assert!(Bucket::new(RateLimit::per_second(0)).is_none());
    }

    #[test]
    fn a_pause_only_grows() {
        let pause = Pause::new();
        let now = Instant::now();
        pause.extend_to(now + Duration::from_secs(5));
        pause.extend_to(now + Duration::from_secs(1));
        assert_eq!(pause.remaining(now), Some(Duration::from_secs(5)));
        assert_eq!(pause.remaining(now + Duration::from_secs(6)), None);
    }
}
