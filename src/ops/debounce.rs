//! Debounce: Pyth's price-pusher update rule in exact integer arithmetic, per-feed targets,
//! and the window that gathers feeds into one push batch.
//!
//! The rule ([`should_update`]) is the one in Pyth's own price pusher: for a feed with source
//! price `s` and on-chain target `t`, **YES** if the target is unknown, or `s` is at least as
//! new as `t` and it has moved `price_deviation` percent, or `time_difference` seconds have
//! passed, or `conf/price` has reached `confidence_ratio` percent; **EARLY** when the feed may
//! join someone else's batch (always without an `early_update` block, else by its thresholds);
//! **NO** otherwise. The pusher compares raw mantissas as floats; here prices are aligned to a
//! common exponent and compared as integers, so a feed whose exponent changes does not look
//! like a 10ⁿ move, and no threshold is missed or hit by float rounding.
//!
//! ```
//! use sluice::ops::debounce::{should_update, Decision, Quote, Reason, Thresholds};
//! use sluice::model::Decimal;
//! let rule = Thresholds {
//!     time_difference_s: 60,
//!     price_deviation: Decimal::new(5, -1), // 0.5 %
//!     confidence_ratio: Decimal::new(100, 0),
//!     early: None,
//! };
//! let target = Quote { price: 100_000, conf: 10, expo: -3, publish_time: 1_000 };
//! let moved = Quote { price: 100_600, conf: 10, expo: -3, publish_time: 1_005 };
//! assert_eq!(should_update(&rule, &moved, Some(&target)), Decision::Yes(Reason::Deviation));
//! let still = Quote { price: 100_100, ..moved };
//! assert_eq!(should_update(&rule, &still, Some(&target)), Decision::Early);
//! assert_eq!(should_update(&rule, &still, None), Decision::Yes(Reason::Initial));
//! ```

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::{DebounceConfig, FeedConfig};
use crate::model::{Decimal, FeedId, OnChainPrice};

/// A price as the rule sees it: a mantissa, its confidence, their exponent and a publish time
/// in seconds. Both the source (Hermes) price and the on-chain target are quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// Price mantissa.
    pub price: i64,
    /// Confidence, same exponent.
    pub conf: u64,
    /// Exponent of both.
    pub expo: i32,
    /// Publish time, seconds since the epoch.
    pub publish_time: i64,
}

impl From<OnChainPrice> for Quote {
    fn from(p: OnChainPrice) -> Quote {
        Quote {
            price: p.price,
            conf: p.conf,
            expo: p.expo,
            publish_time: p.publish_time,
        }
    }
}

/// One feed's thresholds, as in the pusher's price config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Heartbeat: seconds between the target's and the source's publish times.
    pub time_difference_s: u64,
    /// Deviation from the target, in percent.
    pub price_deviation: Decimal,
    /// conf / price, in percent.
    pub confidence_ratio: Decimal,
    /// When present, EARLY only if one of its thresholds is met; absent, always EARLY.
    pub early: Option<EarlyThresholds>,
}

/// Thresholds for joining a batch early; `None` never triggers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EarlyThresholds {
    /// Seconds.
    pub time_difference_s: Option<u64>,
    /// Percent.
    pub price_deviation: Option<Decimal>,
    /// Percent.
    pub confidence_ratio: Option<Decimal>,
}

/// Why a feed is in a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The target is unknown: never pushed, or not read yet.
    Initial,
    /// The price moved at least `price_deviation`.
    Deviation,
    /// At least `time_difference` seconds passed.
    Heartbeat,
    /// conf / price reached `confidence_ratio`.
    Confidence,
    /// Joined another feed's batch.
    Early,
    /// Pushed on the operator's command (SIGUSR1): the source was newer than the target.
    Forced,
}

/// The rule's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Push, and open a window if none is open.
    Yes(Reason),
    /// Push only in someone else's batch.
    Early,
    /// Do not push.
    No,
}

/// Pyth's price-pusher rule (`shouldUpdate`) with exact, exponent-normalised arithmetic.
///
/// Where the pusher's float arithmetic has special cases, they are kept: a negative target
/// price never triggers a deviation; a zero target triggers one whenever the source differs
/// from it; a zero source price triggers the confidence rule whenever its confidence is not
/// zero. Equal publish times do not stop a YES (the contract's guard handles that).
pub fn should_update(rule: &Thresholds, source: &Quote, target: Option<&Quote>) -> Decision {
    let Some(target) = target else {
        return Decision::Yes(Reason::Initial);
    };
    if source.publish_time < target.publish_time {
        return Decision::No;
    }
    let elapsed = source.publish_time.saturating_sub(target.publish_time);
    let moved = |threshold: &Decimal| deviation_reaches(source, target, threshold);
    let uncertain = |threshold: &Decimal| confidence_reaches(source, threshold);
    let waited = |seconds: u64| elapsed >= 0 && (elapsed as u64) >= seconds;
    if moved(&rule.price_deviation) {
        return Decision::Yes(Reason::Deviation);
    }
    if waited(rule.time_difference_s) {
        return Decision::Yes(Reason::Heartbeat);
    }
    if uncertain(&rule.confidence_ratio) {
        return Decision::Yes(Reason::Confidence);
    }
    match &rule.early {
        None => Decision::Early,
        Some(early) => {
            let any = early.time_difference_s.is_some_and(waited)
                || early.price_deviation.as_ref().is_some_and(moved)
                || early.confidence_ratio.as_ref().is_some_and(uncertain);
            if any { Decision::Early } else { Decision::No }
        }
    }
}

/// `|s − t| / t × 100 ≥ threshold`, with `s` and `t` aligned to a common exponent.
fn deviation_reaches(source: &Quote, target: &Quote, threshold: &Decimal) -> bool {
    // In i64, so that exponents from anywhere in i32 (a chain read is not range-checked the
    // way Hermes is) cannot overflow the difference.
    let expo = source.expo.min(target.expo);
    let shift = |e: i32| i64::from(e) - i64::from(expo);
    let (Some(s), Some(t)) = (
        align(i128::from(source.price), shift(source.expo)),
        align(i128::from(target.price), shift(target.expo)),
    ) else {
        // Exponents so far apart that one side does not fit: a move of many orders of
        // magnitude, unless the target is not positive (then it never triggers, as in JS).
        return target.price > 0;
    };
    if t < 0 {
        return false;
    }
    let diff = (s - t).unsigned_abs();
    if t == 0 {
        // |Δ| / 0 is Infinity (YES) unless Δ is 0 too (NaN, never).
        return diff != 0;
    }
    // diff × 100 ≥ threshold × t
    at_least(diff, 2, t as u128, threshold)
}

/// `|conf / price| × 100 ≥ threshold`, on the source alone.
fn confidence_reaches(source: &Quote, threshold: &Decimal) -> bool {
    let price = source.price.unsigned_abs() as u128;
    if price == 0 {
        return source.conf != 0;
    }
    at_least(u128::from(source.conf), 2, price, threshold)
}

/// Whether `value × 10^value_exp ≥ threshold × base` for non-negative integers, exactly.
fn at_least(value: u128, value_exp: i32, base: u128, threshold: &Decimal) -> bool {
    if threshold.mantissa <= 0 {
        return true; // value ≥ 0 ≥ threshold × base
    }
    let rhs_mantissa = (threshold.mantissa as u128).checked_mul(base);
    let shift = i64::from(value_exp) - i64::from(threshold.expo);
    let pow10 = |n: i64| u32::try_from(n).ok().and_then(pow10_u128);
    match rhs_mantissa {
        // threshold × base does not fit in u128: only a value scaled past it can reach it.
        None => shift > 0 && pow10(shift).and_then(|f| value.checked_mul(f)).is_none(),
        Some(rhs) => {
            if shift >= 0 {
                match pow10(shift).and_then(|f| value.checked_mul(f)) {
                    Some(lhs) => lhs >= rhs,
                    None => true, // the left side is larger than anything u128 holds
                }
            } else {
                match pow10(-shift).and_then(|f| rhs.checked_mul(f)) {
                    Some(scaled_rhs) => value >= scaled_rhs,
                    None => false,
                }
            }
        }
    }
}

fn align(mantissa: i128, shift: i64) -> Option<i128> {
    let factor = 10i128.checked_pow(u32::try_from(shift).ok()?)?;
    mantissa.checked_mul(factor)
}

fn pow10_u128(n: u32) -> Option<u128> {
    10u128.checked_pow(n)
}

/// Thresholds per feed, from the configuration.
#[derive(Clone, Debug)]
pub struct FeedRules {
    listed: rustc_hash::FxHashMap<FeedId, Thresholds>,
    defaults: Option<Thresholds>,
}

impl FeedRules {
    /// The rules of a debounce configuration (already validated).
    pub fn from_config(config: &DebounceConfig) -> FeedRules {
        let defaults = Thresholds {
            time_difference_s: config.force_update_interval_ms / 1000,
            price_deviation: config.min_price_change_percent.value(),
            confidence_ratio: config.confidence_ratio_percent.value(),
            early: None,
        };
        let listed = config
            .feeds
            .iter()
            .filter_map(|feed| Some((feed.id.parse().ok()?, Thresholds::of_feed(feed, &defaults))))
            .collect();
        FeedRules {
            listed,
            defaults: (config.unlisted_feeds == crate::config::UnlistedFeeds::Defaults)
                .then_some(defaults),
        }
    }

    /// The thresholds of `feed`, or `None` when the feed is not pushed.
    pub fn get(&self, feed: &FeedId) -> Option<&Thresholds> {
        self.listed.get(feed).or(self.defaults.as_ref())
    }
}

impl Thresholds {
    /// The thresholds of one configured feed (the pusher's price-config entry): its own
    /// values where it sets them, `defaults` (the global knobs) elsewhere. With
    /// [`should_update`] this is the rule as a function of (feed config, source, target).
    pub fn of_feed(feed: &FeedConfig, defaults: &Thresholds) -> Thresholds {
        Thresholds {
            time_difference_s: feed.time_difference.unwrap_or(defaults.time_difference_s),
            price_deviation: feed
                .price_deviation
                .map_or(defaults.price_deviation, |p| p.value()),
            confidence_ratio: feed
                .confidence_ratio
                .map_or(defaults.confidence_ratio, |p| p.value()),
            early: feed.early_update.as_ref().map(|e| EarlyThresholds {
                time_difference_s: e.time_difference,
                price_deviation: e.price_deviation.map(|p| p.value()),
                confidence_ratio: e.confidence_ratio.map(|p| p.value()),
            }),
        }
    }
}

/// The latest source price of a feed, with the update data that proves it on chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePrice {
    /// The quote.
    pub quote: Quote,
    /// Hex of the Hermes `binary.data` element carrying it.
    pub update_data: Option<Bytes>,
}

/// A batch this feed was put in, still counting as its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pushed {
    quote: Quote,
    /// After this time a chain read can show the push did not land.
    deadline_ms: u64,
}

/// One feed's state: its latest source price and what it is compared against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedState {
    source: Option<SourcePrice>,
    chain: Option<Quote>,
    pushed: Option<Pushed>,
}

/// What happened to a source price offered to a feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// It is the feed's latest price now.
    Accepted,
    /// Older than `max_staleness` at ingest: dropped.
    Stale,
    /// Not newer than the price the feed already has: publish times never go backwards (and
    /// of two prices with one publish time the greater stays, whatever the arrival order).
    Older,
}

impl FeedState {
    /// Offers a source price seen at ingest time `now_ms`.
    pub fn offer(&mut self, price: SourcePrice, now_ms: u64, max_staleness_ms: u64) -> Offer {
        let publish_ms = price.quote.publish_time.saturating_mul(1000);
        if publish_ms < (now_ms as i64).saturating_sub(max_staleness_ms as i64) {
            return Offer::Stale;
        }
        if let Some(current) = &self.source {
            let key = |q: &Quote| (q.publish_time, q.price, q.conf);
            if key(&price.quote) <= key(&current.quote) {
                return Offer::Older;
            }
        }
        self.source = Some(price);
        Offer::Accepted
    }

    /// Takes a chain read made at `now_ms`: the stored price, or `None` when the feed is
    /// not on chain. A read after a batch's receipt deadline that does not show the batch's
    /// price means the push did not land: the batch stops counting, and the feed will be
    /// pushed again.
    pub fn observe(&mut self, observed: Option<Quote>, now_ms: u64) {
        if let Some(q) = observed
            && self.chain.is_none_or(|c| q.publish_time >= c.publish_time)
        {
            self.chain = Some(q);
        }
        if let Some(pushed) = self.pushed {
            let landed = self
                .chain
                .is_some_and(|c| c.publish_time >= pushed.quote.publish_time);
            if landed || now_ms >= pushed.deadline_ms {
                self.pushed = None;
            }
        }
    }

    /// The target: the newer (by publish time) of the last chain read and the last batch.
    pub fn target(&self) -> Option<Quote> {
        match (self.chain, self.pushed.map(|p| p.quote)) {
            (Some(c), Some(p)) => Some(if p.publish_time > c.publish_time {
                p
            } else {
                c
            }),
            (c, p) => c.or(p),
        }
    }

    /// The rule's decision for this feed now; `No` without a source price.
    pub fn decide(&self, rule: &Thresholds) -> Decision {
        match &self.source {
            Some(s) => should_update(rule, &s.quote, self.target().as_ref()),
            None => Decision::No,
        }
    }

    /// The latest source price.
    pub fn source(&self) -> Option<&SourcePrice> {
        self.source.as_ref()
    }

    /// Records that `quote` went into a batch at `at_ms`: it is the target until a chain read
    /// after `at_ms + receipt_timeout_ms` shows otherwise.
    pub fn pushed(&mut self, quote: Quote, at_ms: u64, receipt_timeout_ms: u64) {
        self.pushed = Some(Pushed {
            quote,
            deadline_ms: at_ms.saturating_add(receipt_timeout_ms),
        });
    }
}

/// The debounce windows, identical on every worker that folds the same YES times in order.
///
/// The first YES opens a window `[t, t + debounce)`; YES times inside an open window join it;
/// the window's end is when the batch is formed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowSchedule {
    debounce_ms: u64,
    /// End of the latest window opened.
    last_close: Option<u64>,
    /// Ends not yet reached.
    closes: BTreeSet<u64>,
}

impl WindowSchedule {
    /// A schedule with windows of `debounce_ms`.
    pub fn new(debounce_ms: u64) -> Self {
        WindowSchedule {
            debounce_ms,
            ..WindowSchedule::default()
        }
    }

    /// Folds in a YES at `t` (calls must come in time order). Returns the end of the window
    /// it opened, if it opened one.
    pub fn on_yes(&mut self, t: u64) -> Option<u64> {
        if self.is_open_at(t) {
            return None;
        }
        let close = t.saturating_add(self.debounce_ms);
        self.last_close = Some(close);
        self.closes.insert(close);
        Some(close)
    }

    /// True when a window is open at `t`.
    pub fn is_open_at(&self, t: u64) -> bool {
        self.last_close.is_some_and(|c| t < c)
    }

    /// True (once) when a window ends at `t`.
    pub fn take_close(&mut self, t: u64) -> bool {
        self.closes.remove(&t)
    }

    /// The earliest window end not yet reached.
    pub fn next_close(&self) -> Option<u64> {
        self.closes.first().copied()
    }
}

/// One feed going into a push batch, with the data that proves its price on chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchEntry {
    /// The feed.
    pub id: FeedId,
    /// The price pushed.
    pub price: i64,
    /// Its confidence.
    pub conf: u64,
    /// Its exponent.
    pub expo: i32,
    /// Its publish time (s).
    pub publish_time: i64,
    /// Why the feed is in the batch.
    pub reason: Reason,
    /// Hex of the update data that proves it.
    pub update_data: Option<Bytes>,
}

/// A feed as a push batch lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushFeed {
    /// The feed.
    pub id: FeedId,
    /// The price pushed.
    pub price: i64,
    /// Its confidence.
    pub conf: u64,
    /// Its exponent.
    pub expo: i32,
    /// Its publish time (s).
    pub publish_time: i64,
    /// Why the feed is in the batch.
    pub reason: Reason,
}

/// The journal event: one on-chain update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "push_batch")]
pub struct PushBatch {
    /// Sequence number of the batch in this run (1, 2, ...).
    pub batch: u64,
    /// The feeds, by id.
    pub feeds: Vec<PushFeed>,
    /// The distinct update data blobs (hex), in feed order.
    pub update_data: Vec<String>,
}

impl PushBatch {
    /// A batch of `entries` (sorted here by feed id), numbered `batch`.
    pub fn new(batch: u64, mut entries: Vec<BatchEntry>) -> PushBatch {
        entries.sort_by_key(|e| e.id);
        let mut update_data: Vec<String> = Vec::new();
        for entry in &entries {
            if let Some(hex) = entry
                .update_data
                .as_ref()
                .and_then(|b| std::str::from_utf8(b).ok())
                && update_data.last().is_none_or(|last| last != hex)
                && !update_data.iter().any(|u| u == hex)
            {
                update_data.push(hex.to_owned());
            }
        }
        PushBatch {
            batch,
            feeds: entries
                .into_iter()
                .map(|e| PushFeed {
                    id: e.id,
                    price: e.price,
                    conf: e.conf,
                    expo: e.expo,
                    publish_time: e.publish_time,
                    reason: e.reason,
                })
                .collect(),
            update_data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(early: Option<EarlyThresholds>) -> Thresholds {
        Thresholds {
            time_difference_s: 60,
            price_deviation: Decimal::new(5, -1),
            confidence_ratio: Decimal::new(1, 0),
            early,
        }
    }

    fn q(price: i64, conf: u64, expo: i32, publish_time: i64) -> Quote {
        Quote {
            price,
            conf,
            expo,
            publish_time,
        }
    }

    #[test]
    fn decisions_follow_the_pushers_rule() {
        let r = rule(None);
        let t = q(10_000, 1, -2, 100);
        assert_eq!(
            should_update(&r, &q(10_049, 1, -2, 101), Some(&t)),
            Decision::Early
        );
        assert_eq!(
            should_update(&r, &q(10_050, 1, -2, 101), Some(&t)),
            Decision::Yes(Reason::Deviation)
        );
        assert_eq!(
            should_update(&r, &q(9_950, 1, -2, 101), Some(&t)),
            Decision::Yes(Reason::Deviation)
        );
        assert_eq!(
            should_update(&r, &q(10_000, 1, -2, 160), Some(&t)),
            Decision::Yes(Reason::Heartbeat)
        );
        assert_eq!(
            should_update(&r, &q(10_000, 100, -2, 101), Some(&t)),
            Decision::Yes(Reason::Confidence)
        );
        assert_eq!(
            should_update(&r, &q(20_000, 1, -2, 99), Some(&t)),
            Decision::No,
            "older source"
        );
        // Equal publish times do not stop a YES.
        assert_eq!(
            should_update(&r, &q(20_000, 1, -2, 100), Some(&t)),
            Decision::Yes(Reason::Deviation)
        );
    }

    /// Exponents from anywhere in i32 (a chain read is not range-checked as Hermes prices
    /// are) neither overflow nor fake a move.
    #[test]
    fn extreme_exponents_decide_without_overflow() {
        let r = rule(None);
        for (s_expo, t_expo) in [
            (i32::MIN, i32::MAX),
            (i32::MAX, i32::MIN),
            (0, i32::MIN),
            (i32::MAX, i32::MAX),
        ] {
            let d = should_update(
                &r,
                &q(10_000, 1, s_expo, 101),
                Some(&q(10_000, 1, t_expo, 100)),
            );
            if s_expo == t_expo {
                assert_eq!(d, Decision::Early, "equal prices at {s_expo}");
            } else {
                assert_eq!(d, Decision::Yes(Reason::Deviation), "{s_expo} vs {t_expo}");
            }
        }
        let tiny = Thresholds {
            price_deviation: Decimal::new(1, i32::MIN),
            confidence_ratio: Decimal::new(1, i32::MAX),
            ..rule(None)
        };
        assert_eq!(
            should_update(&tiny, &q(10_001, 1, -2, 101), Some(&q(10_000, 1, -2, 100))),
            Decision::Yes(Reason::Deviation)
        );
    }

    #[test]
    fn exponents_are_aligned_before_comparing() {
        let r = rule(None);
        // The same price written with a different exponent is not a move.
        let t = q(10_000, 1, -2, 100);
        assert_eq!(
            should_update(&r, &q(1_000_000, 100, -4, 101), Some(&t)),
            Decision::Early
        );
        assert_eq!(
            should_update(&r, &q(1_005_000, 100, -4, 101), Some(&t)),
            Decision::Yes(Reason::Deviation)
        );
    }

    #[test]
    fn float_special_cases_are_kept() {
        let r = rule(None);
        assert_eq!(
            should_update(&r, &q(5, 0, 0, 1), Some(&q(-5, 0, 0, 0))),
            Decision::Early,
            "negative target"
        );
        assert_eq!(
            should_update(&r, &q(5, 0, 0, 1), Some(&q(0, 0, 0, 0))),
            Decision::Yes(Reason::Deviation)
        );
        assert_eq!(
            should_update(&r, &q(0, 0, 0, 1), Some(&q(0, 0, 0, 0))),
            Decision::Early,
            "0/0 is NaN"
        );
        assert_eq!(
            should_update(&r, &q(0, 3, 0, 1), Some(&q(0, 0, 0, 0))),
            Decision::Yes(Reason::Confidence)
        );
    }

    #[test]
    fn early_blocks_gate_piggybacking() {
        let t = q(10_000, 1, -2, 100);
        let s = q(10_020, 1, -2, 130);
        assert_eq!(
            should_update(&rule(Some(EarlyThresholds::default())), &s, Some(&t)),
            Decision::No
        );
        let by_time = EarlyThresholds {
            time_difference_s: Some(30),
            ..EarlyThresholds::default()
        };
        assert_eq!(
            should_update(&rule(Some(by_time)), &s, Some(&t)),
            Decision::Early
        );
        let by_dev = EarlyThresholds {
            price_deviation: Some(Decimal::new(3, -1)),
            ..EarlyThresholds::default()
        };
        assert_eq!(
            should_update(&rule(Some(by_dev)), &s, Some(&t)),
            Decision::No
        );
    }

    #[test]
    fn targets_are_the_newer_of_chain_and_batch() {
        let mut feed = FeedState::default();
        let price = |p, t| SourcePrice {
            quote: q(p, 1, -2, t),
            update_data: None,
        };
        assert_eq!(feed.offer(price(100, 10), 10_000, 60_000), Offer::Accepted);
        assert_eq!(feed.offer(price(101, 9), 10_000, 60_000), Offer::Older);
        assert_eq!(feed.offer(price(101, 1), 70_000, 60_000), Offer::Stale);
        assert_eq!(feed.target(), None);
        feed.pushed(q(100, 1, -2, 10), 11_000, 5_000);
        assert_eq!(feed.target().map(|t| t.publish_time), Some(10));
        let r = Thresholds {
            confidence_ratio: Decimal::new(100, 0),
            ..rule(None)
        };
        // The batch is the target: the same price is not pushed again meanwhile.
        assert_eq!(feed.decide(&r), Decision::Early);
        // A read before the deadline that does not show it yet changes nothing.
        feed.observe(Some(q(90, 1, -2, 5)), 12_000);
        assert_eq!(feed.target().map(|t| t.publish_time), Some(10));
        assert_eq!(feed.decide(&r), Decision::Early);
        // After the deadline, a read still older than the batch: it did not land, and the
        // same source price is pushed again.
        feed.observe(Some(q(90, 1, -2, 5)), 16_000);
        assert_eq!(feed.target().map(|t| t.publish_time), Some(5));
        assert_eq!(feed.decide(&r), Decision::Yes(Reason::Deviation));
        // Chain reads never go backwards.
        feed.observe(Some(q(80, 1, -2, 4)), 17_000);
        assert_eq!(feed.target().map(|t| t.price), Some(90));
        feed.observe(None, 18_000);
        assert_eq!(feed.target().map(|t| t.price), Some(90));
    }

    #[test]
    fn windows_open_on_the_first_yes_and_gather_the_rest() {
        let mut w = WindowSchedule::new(500);
        assert_eq!(w.on_yes(1_000), Some(1_500));
        assert_eq!(w.on_yes(1_200), None);
        assert!(w.is_open_at(1_499));
        assert!(!w.is_open_at(1_500));
        assert_eq!(w.on_yes(1_500), Some(2_000));
        assert!(w.take_close(1_500));
        assert!(!w.take_close(1_500));
        assert_eq!(w.next_close(), Some(2_000));
    }

    #[test]
    fn batches_list_feeds_by_id_and_distinct_update_data() {
        let entry = |b: u8, data: &'static str| BatchEntry {
            id: FeedId([b; 32]),
            price: 1,
            conf: 0,
            expo: 0,
            publish_time: 1,
            reason: Reason::Early,
            update_data: Some(Bytes::from_static(data.as_bytes())),
        };
        let batch = PushBatch::new(1, vec![entry(2, "bb"), entry(1, "aa"), entry(3, "aa")]);
        assert_eq!(
            batch.feeds.iter().map(|f| f.id.0[0]).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(batch.update_data, vec!["aa".to_owned(), "bb".to_owned()]);
    }
}
