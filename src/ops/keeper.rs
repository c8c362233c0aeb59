//! Keeper: which push batches become transactions, when a stuck transaction is replaced and at
//! what fees, as a pure state machine (no I/O, no clock: the caller supplies times and fees).
//!
//! The rules, after Pyth's price pusher and where its users got hurt:
//!
//! - **Never a double push.** A feed goes into a transaction only with a publish time newer
//!   than everything known for it: the last confirmed push, the last chain read, the
//!   transaction in flight and the batches queued behind it. A batch with nothing new is
//!   skipped (`already_pushed`).
//! - **One transaction in flight.** Batches arriving meanwhile are queued and merged (newest
//!   publish time per feed) into the next transaction once the one in flight is settled.
//! - **Replacement at the same nonce.** A transaction not mined within the receipt timeout is
//!   replaced with fees ×1.1 (rounded up, so nodes that want +10 % accept it), at least the
//!   fresh price, at most ×5 the fresh price and never above the gas cap. A replacement the
//!   node would refuse as underpriced (the cap reached) is not sent: the keeper waits.
//! - **Gas cap.** While the fresh fee is above the cap, nothing new is sent: the batch waits in
//!   the queue and an alert action is returned.
//! - The caller records the signed attempt (its hash is known before broadcast) before sending
//!   it, so a crash between send and receipt leaves the attempt in [`KeeperState`], and a
//!   restart reconciles instead of paying again.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::model::{ChainTarget, Decimal, FeedId};
use crate::ops::debounce::{BatchEntry, PushBatch, PushFeed, Quote, Reason};

/// What the keeper takes from the dataflow: chain reads, source prices of the pushed feeds
/// (for a forced push) and push batches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeeperInput {
    /// What the contract stores for a feed.
    Target(ChainTarget),
    /// A source (Hermes) price of a pushed feed.
    Source(SourceQuote),
    /// A push batch from the debounce.
    Batch(PushBatch),
}

impl KeeperInput {
    /// Canonical order within one time: reads by feed, sources by feed and publish time, then
    /// batches by number.
    pub fn order_key(&self) -> (u8, FeedId, i64) {
        match self {
            KeeperInput::Target(t) => (0, t.feed, t.block.map_or(0, |b| b as i64)),
            KeeperInput::Source(s) => (1, s.feed, s.quote.publish_time),
            KeeperInput::Batch(b) => (2, FeedId([0; 32]), b.batch as i64),
        }
    }
}

/// A source price of a feed the keeper pushes, with the update data proving it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceQuote {
    /// The feed.
    pub feed: FeedId,
    /// Its price.
    pub quote: Quote,
    /// Hex of the update data carrying it.
    pub update_data: Option<Bytes>,
}

/// The batch number of forced pushes (the debounce numbers its batches from 1).
pub const FORCED_BATCH: u64 = 0;

/// The newest source price per feed, for a forced push.
#[derive(Clone, Debug, Default)]
pub struct LatestSources(BTreeMap<FeedId, SourceQuote>);

impl LatestSources {
    /// Keeps `source` if it is the newest of its feed; a price with update data is preferred
    /// to a newer one without (which could not be pushed from the stream's data).
    pub fn offer(&mut self, source: SourceQuote) {
        let replace = match self.0.get(&source.feed) {
            None => true,
            Some(have) => {
                let newer = source.quote.publish_time > have.quote.publish_time;
                match (have.update_data.is_some(), source.update_data.is_some()) {
                    (true, false) => false,
                    (false, true) => true,
                    _ => newer,
                }
            }
        };
        if replace {
            self.0.insert(source.feed, source);
        }
    }

    /// The forced batch: every feed whose source is newer than anything `keeper` knows for it
    /// (`None` when there is none).
    pub fn forced_batch(&self, keeper: &Keeper) -> Option<PushBatch> {
        let entries: Vec<BatchEntry> = self
            .0
            .values()
            .filter(|s| {
                keeper
                    .known(&s.feed)
                    .is_none_or(|k| s.quote.publish_time > k)
            })
            .map(|s| BatchEntry {
                id: s.feed,
                price: s.quote.price,
                conf: s.quote.conf,
                expo: s.quote.expo,
                publish_time: s.quote.publish_time,
                reason: Reason::Forced,
                update_data: s.update_data.clone(),
            })
            .collect();
        (!entries.is_empty()).then(|| PushBatch::new(FORCED_BATCH, entries))
    }
}

/// Fees of one transaction in wei per gas. Legacy transactions use `max_fee_per_gas` as the
/// gas price, and the tip equals it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fees {
    /// EIP-1559 max fee per gas (legacy: the gas price).
    pub max_fee_per_gas: u128,
    /// EIP-1559 priority fee per gas (legacy: the gas price).
    pub max_priority_fee_per_gas: u128,
}

impl Fees {
    /// `base × multiplier + tip` (EIP-1559), rounded up; `None` if it overflows.
    pub fn eip1559(base_fee: u128, tip: u128, multiplier: &Decimal) -> Option<Fees> {
        let scaled = mul_decimal_ceil(base_fee, multiplier)?;
        Some(Fees {
            max_fee_per_gas: scaled.checked_add(tip)?,
            max_priority_fee_per_gas: tip,
        })
    }

    /// A legacy gas price.
    pub fn legacy(gas_price: u128) -> Fees {
        Fees {
            max_fee_per_gas: gas_price,
            max_priority_fee_per_gas: gas_price,
        }
    }
}

/// `value × multiplier`, rounded up; `None` on overflow or a negative multiplier.
pub fn mul_decimal_ceil(value: u128, multiplier: &Decimal) -> Option<u128> {
    let mantissa = u128::try_from(multiplier.mantissa).ok()?;
    let product = value.checked_mul(mantissa)?;
    if multiplier.expo >= 0 {
        product.checked_mul(10u128.checked_pow(multiplier.expo as u32)?)
    } else {
        let divisor = 10u128.checked_pow(multiplier.expo.unsigned_abs())?;
        Some(product.div_ceil(divisor))
    }
}

/// `ceil(x × 11 / 10)`, saturating.
fn bump(x: u128) -> u128 {
    x.saturating_mul(11).div_ceil(10).max(x.saturating_add(1))
}

/// Fees for the replacement of a transaction sent with `prev`, given the `fresh` price:
/// each field ×1.1 (rounded up), at least fresh, the max fee at most `cap_multiple` × fresh and
/// `gas_cap`; the tip never above the max fee.
pub fn escalate(prev: Fees, fresh: Fees, cap_multiple: u128, gas_cap: Option<u128>) -> Fees {
    let mut ceiling = fresh.max_fee_per_gas.saturating_mul(cap_multiple);
    if let Some(cap) = gas_cap {
        ceiling = ceiling.min(cap);
    }
    let max_fee = bump(prev.max_fee_per_gas)
        .max(fresh.max_fee_per_gas)
        .min(ceiling);
    let tip = bump(prev.max_priority_fee_per_gas)
        .max(fresh.max_priority_fee_per_gas)
        .min(max_fee);
    Fees {
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
    }
}

/// True when a node requiring +10 % on both fields accepts `next` as a replacement of `prev`.
pub fn is_valid_replacement(prev: Fees, next: Fees) -> bool {
    next.max_fee_per_gas >= bump(prev.max_fee_per_gas)
        && next.max_priority_fee_per_gas >= bump(prev.max_priority_fee_per_gas)
}

/// The keeper's knobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeeperRules {
    /// A transaction not mined this long after its last attempt is replaced (ms).
    pub receipt_timeout_ms: u64,
    /// Replacement fees are at most this multiple of the fresh price.
    pub cap_multiple: u128,
    /// Nothing is sent while the fresh max fee is above this (wei per gas).
    pub gas_cap: Option<u128>,
}

impl Default for KeeperRules {
    fn default() -> Self {
        KeeperRules {
            receipt_timeout_ms: 60_000,
            cap_multiple: 5,
            gas_cap: None,
        }
    }
}

/// A feed and publish time in a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FeedTime {
    /// The feed.
    pub id: FeedId,
    /// Its publish time (s).
    pub publish_time: i64,
}

/// One signed and (about to be) broadcast version of the transaction in flight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Transaction hash, `0x` hex.
    pub hash: String,
    /// Its fees.
    pub fees: Fees,
    /// When it was sent (ms, caller's clock).
    pub sent_at_ms: u64,
    /// The signed transaction, `0x` hex, to broadcast again after a restart.
    pub raw: String,
}

/// The transaction in flight: one nonce, one or more attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The batches it carries.
    pub batches: Vec<u64>,
    /// Its nonce.
    pub nonce: u64,
    /// The feeds and publish times it pushes.
    pub feeds: Vec<FeedTime>,
    /// Every attempt, oldest first; any of them may be the one mined.
    pub attempts: Vec<Attempt>,
}

/// What one transaction should push.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxPlan {
    /// The batches merged into it.
    pub batches: Vec<u64>,
    /// The feeds, by id, each with a publish time newer than anything known for it.
    pub feeds: Vec<PushFeed>,
    /// Update data blobs (hex) of the batches, deduplicated, in order.
    pub update_data: Vec<String>,
}

impl TxPlan {
    /// The (feed, publish time) pairs.
    pub fn feed_times(&self) -> Vec<FeedTime> {
        self.feeds
            .iter()
            .map(|f| FeedTime {
                id: f.id,
                publish_time: f.publish_time,
            })
            .collect()
    }
}

/// Why a batch or plan was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Every feed's publish time was already pushed, read on chain or in flight.
    AlreadyPushed,
    /// The contract said so in simulation (`NoFreshUpdate`).
    NoFreshUpdate,
    /// No update data carries any of the feeds left to push.
    NoUpdateData,
}

/// What the caller should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Build, simulate, sign and send this plan as a new transaction (fresh nonce from the
    /// chain), then report [`Keeper::on_signed`] or [`Keeper::on_not_sent`].
    Submit(TxPlan),
    /// Replace the transaction in flight at `nonce` with these fees, then report
    /// [`Keeper::on_signed`] (or nothing if it could not be signed).
    Replace {
        /// The nonce.
        nonce: u64,
        /// The new fees.
        fees: Fees,
    },
    /// Nothing sent for these batches.
    Skip {
        /// The batches.
        batches: Vec<u64>,
        /// Why.
        reason: SkipReason,
    },
    /// The fresh fee is above the gas cap: waiting (alert).
    OverGasCap {
        /// The fresh max fee.
        fresh: u128,
        /// The cap.
        cap: u128,
    },
}

/// What the keeper must remember across restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeeperState {
    /// Highest publish time known on chain per feed (own confirmations and chain reads).
    pub pushed: BTreeMap<FeedId, i64>,
    /// The transaction in flight.
    pub in_flight: Option<InFlight>,
    /// Batches waiting for the transaction in flight, merged.
    pub queued: Option<TxPlan>,
}

/// The state machine.
#[derive(Clone, Debug)]
pub struct Keeper {
    rules: KeeperRules,
    state: KeeperState,
    /// A plan handed out by `Submit` and not reported yet.
    planning: Option<TxPlan>,
}

impl Keeper {
    /// A keeper resuming `state`.
    pub fn new(rules: KeeperRules, state: KeeperState) -> Keeper {
        Keeper {
            rules,
            state,
            planning: None,
        }
    }

    /// What to persist.
    pub fn state(&self) -> &KeeperState {
        &self.state
    }

    /// The transaction in flight.
    pub fn in_flight(&self) -> Option<&InFlight> {
        self.state.in_flight.as_ref()
    }

    /// The newest publish time known for `feed`: pushed, read, in flight, being planned or
    /// queued.
    pub fn known(&self, feed: &FeedId) -> Option<i64> {
        let in_flight = self
            .state
            .in_flight
            .iter()
            .flat_map(|t| t.feeds.iter())
            .filter(|f| f.id == *feed)
            .map(|f| f.publish_time)
            .max();
        let planned = self
            .planning
            .iter()
            .chain(self.state.queued.iter())
            .flat_map(|p| p.feeds.iter())
            .filter(|f| f.id == *feed)
            .map(|f| f.publish_time)
            .max();
        [self.state.pushed.get(feed).copied(), in_flight, planned]
            .into_iter()
            .flatten()
            .max()
    }

    /// A chain read: the stored publish time of `feed` (`None`: never pushed).
    pub fn on_target(&mut self, feed: FeedId, publish_time: Option<i64>) {
        if let Some(t) = publish_time {
            let entry = self.state.pushed.entry(feed).or_insert(t);
            *entry = (*entry).max(t);
        }
    }

    /// A push batch from the debounce, at `now_ms`, with the fresh fee price.
    pub fn on_batch(&mut self, batch: &PushBatch, now_ms: u64, fresh: Fees) -> Vec<Action> {
        let skipped = self.enqueue(batch);
        if !skipped.is_empty() {
            return skipped;
        }
        self.on_tick(now_ms, Some(fresh))
    }

    /// A push batch queued without planning anything now (no fee price could be read): the
    /// first [`Keeper::on_tick`] with a fee price submits it. A batch with nothing new is
    /// skipped at once.
    pub fn enqueue(&mut self, batch: &PushBatch) -> Vec<Action> {
        let feeds: Vec<PushFeed> = batch
            .feeds
            .iter()
            .filter(|f| self.known(&f.id).is_none_or(|k| f.publish_time > k))
            .cloned()
            .collect();
        if feeds.is_empty() {
            return vec![Action::Skip {
                batches: vec![batch.batch],
                reason: SkipReason::AlreadyPushed,
            }];
        }
        let plan = TxPlan {
            batches: vec![batch.batch],
            feeds,
            update_data: batch.update_data.clone(),
        };
        self.state.queued = Some(match self.state.queued.take() {
            None => plan,
            Some(queued) => merge(queued, plan),
        });
        Vec::new()
    }

    /// Time passes: replace a stuck transaction, or submit the queue when nothing is in
    /// flight. `fresh` is the current fee price (`None` when it could not be read).
    pub fn on_tick(&mut self, now_ms: u64, fresh: Option<Fees>) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(fresh) = fresh else {
            return actions;
        };
        if let Some(cap) = self.rules.gas_cap
            && fresh.max_fee_per_gas > cap
        {
            if self.state.in_flight.is_some() || self.state.queued.is_some() {
                actions.push(Action::OverGasCap {
                    fresh: fresh.max_fee_per_gas,
                    cap,
                });
            }
            return actions;
        }
        if let Some(in_flight) = &self.state.in_flight {
            if let Some(last) = in_flight.attempts.last()
                && now_ms.saturating_sub(last.sent_at_ms) >= self.rules.receipt_timeout_ms
            {
                let fees = escalate(
                    last.fees,
                    fresh,
                    self.rules.cap_multiple,
                    self.rules.gas_cap,
                );
                if is_valid_replacement(last.fees, fees) {
                    actions.push(Action::Replace {
                        nonce: in_flight.nonce,
                        fees,
                    });
                }
            }
            return actions;
        }
        if self.planning.is_some() {
            return actions;
        }
        if let Some(plan) = self.state.queued.take() {
            // Feeds may have been pushed or read on chain since they were queued.
            let plan = self.without_known(plan);
            match plan {
                Ok(plan) => {
                    self.planning = Some(plan.clone());
                    actions.push(Action::Submit(plan));
                }
                Err(batches) => actions.push(Action::Skip {
                    batches,
                    reason: SkipReason::AlreadyPushed,
                }),
            }
        }
        actions
    }

    fn without_known(&self, mut plan: TxPlan) -> Result<TxPlan, Vec<u64>> {
        plan.feeds.retain(|f| {
            let pushed = self.state.pushed.get(&f.id).copied();
            pushed.is_none_or(|k| f.publish_time > k)
        });
        if plan.feeds.is_empty() {
            Err(plan.batches)
        } else {
            Ok(plan)
        }
    }

    /// The plan handed out by `Submit`, or an attempt for the `Replace` in flight, was signed
    /// as `attempt` at `nonce`: persist the state, then broadcast.
    pub fn on_signed(&mut self, nonce: u64, attempt: Attempt) {
        if let Some(plan) = self.planning.take() {
            self.state.in_flight = Some(InFlight {
                batches: plan.batches.clone(),
                nonce,
                feeds: plan.feed_times(),
                attempts: vec![attempt],
            });
        } else if let Some(in_flight) = &mut self.state.in_flight
            && in_flight.nonce == nonce
        {
            in_flight.attempts.push(attempt);
        }
    }

    /// Narrows the plan handed out by `Submit` to the feeds in `keep` (those its update data
    /// covers): the others are not pushed, so they must not count as pushed.
    pub fn restrict_planning(&mut self, keep: &[FeedTime]) {
        if let Some(plan) = &mut self.planning {
            plan.feeds.retain(|f| {
                keep.contains(&FeedTime {
                    id: f.id,
                    publish_time: f.publish_time,
                })
            });
        }
    }

    /// The plan handed out by `Submit` was not sent. With `retry`, it goes back to the queue
    /// (a transient failure); otherwise it is dropped (the caller journals why).
    pub fn on_not_sent(&mut self, retry: bool) {
        if let Some(plan) = self.planning.take()
            && retry
        {
            self.state.queued = Some(match self.state.queued.take() {
                None => plan,
                Some(queued) => merge(plan, queued),
            });
        }
    }

    /// The node refused the attempt `hash` (never broadcast): forget it. When it was the only
    /// attempt, the transaction is no longer in flight, and its plan is dropped.
    pub fn on_rejected(&mut self, hash: &str) -> Option<InFlight> {
        let in_flight = self.state.in_flight.as_mut()?;
        in_flight.attempts.retain(|a| a.hash != hash);
        if in_flight.attempts.is_empty() {
            return self.state.in_flight.take();
        }
        None
    }

    /// A receipt for attempt `hash`: the transaction is settled. On success its feeds are
    /// pushed. Returns the settled transaction.
    pub fn on_receipt(&mut self, hash: &str, success: bool) -> Option<InFlight> {
        let in_flight = self.state.in_flight.as_ref()?;
        if !in_flight.attempts.iter().any(|a| a.hash == hash) {
            return None;
        }
        let settled = self.state.in_flight.take()?;
        if success {
            for f in &settled.feeds {
                self.on_target(f.id, Some(f.publish_time));
            }
        }
        Some(settled)
    }

    /// The chain's confirmed nonce passed the one in flight and none of its attempts has a
    /// receipt: another transaction took the nonce. Forget it (chain reads tell what landed).
    pub fn on_nonce_consumed(&mut self, confirmed_nonce: u64) -> Option<InFlight> {
        if self
            .state
            .in_flight
            .as_ref()
            .is_some_and(|t| confirmed_nonce > t.nonce)
        {
            return self.state.in_flight.take();
        }
        None
    }
}

/// `newer` merged into `older`: per feed the newest publish time, update data of both.
fn merge(older: TxPlan, newer: TxPlan) -> TxPlan {
    let mut feeds: BTreeMap<FeedId, PushFeed> = BTreeMap::new();
    for f in older.feeds.into_iter().chain(newer.feeds) {
        match feeds.get(&f.id) {
            Some(have) if have.publish_time >= f.publish_time => {}
            _ => {
                feeds.insert(f.id, f);
            }
        }
    }
    let mut batches = older.batches;
    batches.extend(newer.batches);
    batches.sort_unstable();
    batches.dedup();
    let mut update_data = older.update_data;
    for blob in newer.update_data {
        if !update_data.contains(&blob) {
            update_data.push(blob);
        }
    }
    TxPlan {
        batches,
        feeds: feeds.into_values().collect(),
        update_data,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    const GWEI: u128 = 1_000_000_000;

    fn id(n: u8) -> FeedId {
        FeedId([n; 32])
    }

    fn feed(n: u8, publish_time: i64) -> PushFeed {
        PushFeed {
            id: id(n),
            price: 100 + publish_time,
            conf: 1,
            expo: -2,
            publish_time,
            reason: Reason::Deviation,
        }
    }

    fn batch(n: u64, feeds: Vec<PushFeed>) -> PushBatch {
        PushBatch {
            batch: n,
            update_data: feeds
                .iter()
                .map(|f| format!("{:02x}{}", f.id.0[0], f.publish_time))
                .collect(),
            feeds,
        }
    }

    fn fees(max: u128, tip: u128) -> Fees {
        Fees {
            max_fee_per_gas: max,
            max_priority_fee_per_gas: tip,
        }
    }

    fn attempt(hash: &str, fees: Fees, at: u64) -> Attempt {
        Attempt {
            hash: hash.into(),
            fees,
            sent_at_ms: at,
            raw: String::new(),
        }
    }

    fn rules() -> KeeperRules {
        KeeperRules {
            receipt_timeout_ms: 1_000,
            cap_multiple: 5,
            gas_cap: Some(100 * GWEI),
        }
    }

    fn submitted(actions: &[Action]) -> Option<&TxPlan> {
        actions.iter().find_map(|a| match a {
            Action::Submit(p) => Some(p),
            _ => None,
        })
    }

    #[test]
    fn fee_arithmetic_is_exact() {
        let m = Decimal::parse("1.2").unwrap();
        assert_eq!(Fees::eip1559(GWEI, 2, &m), Some(fees(1_200_000_002, 2)));
        assert_eq!(
            mul_decimal_ceil(7, &Decimal::parse("1.1").unwrap()),
            Some(8)
        );
        assert_eq!(mul_decimal_ceil(7, &Decimal::new(2, 1)), Some(140));
        assert_eq!(mul_decimal_ceil(7, &Decimal::new(-1, 0)), None);
        assert_eq!(Fees::eip1559(u128::MAX, 0, &m), None);
    }

    #[test]
    fn escalation_bumps_by_a_tenth_and_caps_at_five_times_fresh() {
        let fresh = fees(10 * GWEI, GWEI);
        let next = escalate(fresh, fresh, 5, None);
        assert_eq!(next, fees(11 * GWEI, 1_100_000_000));
        assert!(is_valid_replacement(fresh, next));
        // Geometric growth stops at 5 × fresh; a replacement no node accepts is not sent.
        let mut f = fresh;
        for _ in 0..40 {
            let n = escalate(f, fresh, 5, None);
            if !is_valid_replacement(f, n) {
                break;
            }
            f = n;
        }
        assert!(f.max_fee_per_gas <= 50 * GWEI && f.max_fee_per_gas > 45 * GWEI);
        assert!(!is_valid_replacement(f, escalate(f, fresh, 5, None)));
        // A fresh price above the escalated one wins; the tip never exceeds the max fee.
        let spike = fees(30 * GWEI, 40 * GWEI);
        let n = escalate(fresh, spike, 5, None);
        assert_eq!(n.max_fee_per_gas, 30 * GWEI);
        assert_eq!(n.max_priority_fee_per_gas, 30 * GWEI);
        // The gas cap bounds it too.
        assert_eq!(
            escalate(fresh, fresh, 5, Some(10 * GWEI)).max_fee_per_gas,
            10 * GWEI
        );
        // Tiny fees still move by at least one wei.
        assert_eq!(escalate(fees(1, 0), fees(1, 0), 5, None), fees(2, 1));
    }

    #[test]
    fn a_batch_becomes_a_transaction_and_stale_feeds_are_dropped() {
        let mut k = Keeper::new(rules(), KeeperState::default());
        k.on_target(id(2), Some(50));
        let fresh = fees(GWEI, 1);
        let actions = k.on_batch(&batch(1, vec![feed(1, 10), feed(2, 50)]), 0, fresh);
        let plan = submitted(&actions).unwrap().clone();
        assert_eq!(
            plan.feed_times(),
            [FeedTime {
                id: id(1),
                publish_time: 10
            }]
        );
        k.on_signed(7, attempt("0xa", fresh, 0));
        // The same publish time again, in flight: skipped.
        let again = k.on_batch(&batch(2, vec![feed(1, 10)]), 10, fresh);
        assert_eq!(
            again,
            [Action::Skip {
                batches: vec![2],
                reason: SkipReason::AlreadyPushed
            }]
        );
        // A newer one waits behind the transaction in flight, merged with the next.
        assert!(
            k.on_batch(&batch(3, vec![feed(1, 11)]), 20, fresh)
                .is_empty()
        );
        assert!(
            k.on_batch(&batch(4, vec![feed(1, 12), feed(3, 5)]), 30, fresh)
                .is_empty()
        );
        let settled = k.on_receipt("0xa", true).unwrap();
        assert_eq!(settled.nonce, 7);
        assert_eq!(k.known(&id(1)), Some(12));
        let actions = k.on_tick(40, Some(fresh));
        let plan = submitted(&actions).unwrap();
        assert_eq!(plan.batches, [3, 4]);
        assert_eq!(
            plan.feed_times(),
            [
                FeedTime {
                    id: id(1),
                    publish_time: 12
                },
                FeedTime {
                    id: id(3),
                    publish_time: 5
                }
            ]
        );
        assert_eq!(plan.update_data, ["0111", "0112", "035"]);
    }

    #[test]
    fn a_stuck_transaction_is_replaced_at_the_same_nonce() {
        let mut k = Keeper::new(rules(), KeeperState::default());
        let fresh = fees(10 * GWEI, GWEI);
        assert!(submitted(&k.on_batch(&batch(1, vec![feed(1, 10)]), 0, fresh)).is_some());
        k.on_signed(3, attempt("0xa", fresh, 0));
        assert!(k.on_tick(999, Some(fresh)).is_empty());
        let actions = k.on_tick(1_000, Some(fresh));
        let [Action::Replace { nonce: 3, fees: f }] = actions[..] else {
            panic!("{actions:?}")
        };
        assert_eq!(f, fees(11 * GWEI, 1_100_000_000));
        k.on_signed(3, attempt("0xb", f, 1_000));
        assert!(k.on_tick(1_500, Some(fresh)).is_empty());
        // Either attempt's receipt settles it.
        assert!(k.on_receipt("0xa", true).is_some());
        assert!(k.in_flight().is_none());
        assert_eq!(k.known(&id(1)), Some(10));
    }

    #[test]
    fn over_the_gas_cap_nothing_is_sent_until_it_drops() {
        let mut k = Keeper::new(rules(), KeeperState::default());
        let spike = fees(101 * GWEI, GWEI);
        let actions = k.on_batch(&batch(1, vec![feed(1, 10)]), 0, spike);
        assert_eq!(
            actions,
            [Action::OverGasCap {
                fresh: 101 * GWEI,
                cap: 100 * GWEI
            }]
        );
        assert!(submitted(&k.on_tick(10, Some(fees(GWEI, 1)))).is_some());
    }

    #[test]
    fn failures_requeue_or_drop_and_other_senders_free_the_nonce() {
        let mut k = Keeper::new(rules(), KeeperState::default());
        let fresh = fees(GWEI, 1);
        assert!(submitted(&k.on_batch(&batch(1, vec![feed(1, 10)]), 0, fresh)).is_some());
        k.on_not_sent(true);
        assert!(submitted(&k.on_tick(1, Some(fresh))).is_some());
        k.on_not_sent(false);
        assert!(k.on_tick(2, Some(fresh)).is_empty());
        assert_eq!(k.known(&id(1)), None);
        // Rejected by the node: forgotten, not pushed.
        assert!(submitted(&k.on_batch(&batch(2, vec![feed(1, 10)]), 3, fresh)).is_some());
        k.on_signed(0, attempt("0xa", fresh, 3));
        assert!(k.on_rejected("0xa").is_some());
        assert_eq!(k.known(&id(1)), None);
        // Another sender took the nonce.
        assert!(submitted(&k.on_batch(&batch(3, vec![feed(1, 11)]), 4, fresh)).is_some());
        k.on_signed(5, attempt("0xb", fresh, 4));
        assert!(k.on_nonce_consumed(5).is_none());
        assert!(k.on_nonce_consumed(6).is_some());
        // The state survives a restart as JSON.
        let json = serde_json::to_string(k.state()).unwrap();
        let back: KeeperState = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, k.state());
    }

    #[test]
    fn a_forced_push_takes_every_feed_whose_source_is_newer() {
        let mut k = Keeper::new(rules(), KeeperState::default());
        k.on_target(id(1), Some(10));
        k.on_target(id(2), Some(10));
        let mut latest = LatestSources::default();
        let quote = |f: u8, t: i64| SourceQuote {
            feed: id(f),
            quote: Quote {
                price: 5,
                conf: 1,
                expo: -2,
                publish_time: t,
            },
            update_data: Some(Bytes::from(format!("{f:02x}{t}"))),
        };
        latest.offer(quote(1, 11));
        latest.offer(quote(1, 9)); // older: ignored
        latest.offer(SourceQuote {
            update_data: None,
            ..quote(1, 12)
        }); // newer, but nothing to push it with
        latest.offer(quote(2, 10)); // not newer than the target
        latest.offer(quote(3, 1)); // never pushed
        let batch = latest.forced_batch(&k).unwrap();
        assert_eq!(batch.batch, FORCED_BATCH);
        let times: Vec<(FeedId, i64, Reason)> = batch
            .feeds
            .iter()
            .map(|f| (f.id, f.publish_time, f.reason))
            .collect();
        assert_eq!(
            times,
            [(id(1), 11, Reason::Forced), (id(3), 1, Reason::Forced)]
        );
        assert_eq!(batch.update_data, ["0111", "031"]);
        // Once in flight, nothing is newer.
        let fresh = fees(GWEI, 1);
        assert!(submitted(&k.on_batch(&batch, 0, fresh)).is_some());
        k.on_signed(0, attempt("0xa", fresh, 0));
        assert!(latest.forced_batch(&k).is_none());
    }

    #[test]
    fn a_batch_queued_without_a_fee_price_goes_with_the_next_priced_tick() {
        let mut k = Keeper::new(rules(), KeeperState::default());
        k.on_target(id(2), Some(50));
        assert!(k.enqueue(&batch(1, vec![feed(1, 10)])).is_empty());
        assert_eq!(k.known(&id(1)), Some(10), "queued counts as known");
        // Nothing new: skipped at once, as with a fee price.
        assert_eq!(
            k.enqueue(&batch(2, vec![feed(2, 50)])),
            [Action::Skip {
                batches: vec![2],
                reason: SkipReason::AlreadyPushed
            }]
        );
        assert!(k.enqueue(&batch(3, vec![feed(1, 11)])).is_empty());
        // Still no fee price: nothing planned.
        assert!(k.on_tick(10, None).is_empty());
        let actions = k.on_tick(20, Some(fees(GWEI, 1)));
        let plan = submitted(&actions).unwrap();
        assert_eq!(plan.batches, [1, 3]);
        assert_eq!(
            plan.feed_times(),
            [FeedTime {
                id: id(1),
                publish_time: 11
            }]
        );
    }

    #[derive(Clone, Debug)]
    enum Event {
        Batch(Vec<(u8, i64)>),
        Target(u8, i64),
        Tick(u64, u128),
        Receipt(bool),
        NotSent(bool),
        Rejected,
        Sign,
        Restart,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => prop::collection::vec((0u8..4, 0i64..30), 1..4).prop_map(Event::Batch),
            1 => (0u8..4, 0i64..30).prop_map(|(f, t)| Event::Target(f, t)),
            3 => (0u64..2_000, 1u128..200).prop_map(|(d, g)| Event::Tick(d, g)),
            2 => any::<bool>().prop_map(Event::Receipt),
            1 => any::<bool>().prop_map(Event::NotSent),
            1 => Just(Event::Rejected),
            3 => Just(Event::Sign),
            1 => Just(Event::Restart),
        ]
    }

    proptest! {
        /// Against an oracle of everything pushed or in flight: no plan ever carries a
        /// (feed, publish time) not newer than what is known, no second transaction is
        /// planned while one is in flight, replacements keep the nonce and raise the fees.
        #[test]
        fn never_a_double_push(events in prop::collection::vec(event(), 1..80)) {
            let mut k = Keeper::new(rules(), KeeperState::default());
            let mut now = 0u64;
            let mut next_nonce = 0u64;
            let mut hashes = 0u32;
            let mut n_batch = 0u64;
            // Oracle: newest publish time per feed that is on chain or in flight.
            let mut landed: HashMap<FeedId, i64> = HashMap::new();
            let mut flying: Option<(u64, Vec<FeedTime>, Fees)> = None;
            let mut planning: Option<Vec<FeedTime>> = None;
            for e in events {
                let mut actions = Vec::new();
                let fresh = fees(10 * GWEI, GWEI);
                match e {
                    Event::Batch(fs) => {
                        n_batch += 1;
                        let b = batch(n_batch, fs.iter().map(|(f, t)| feed(*f, *t)).collect());
                        actions = k.on_batch(&b, now, fresh);
                    }
                    Event::Target(f, t) => {
                        let e = landed.entry(id(f)).or_insert(t);
                        *e = (*e).max(t);
                        k.on_target(id(f), Some(t));
                    }
                    Event::Tick(d, g) => {
                        now += d;
                        actions = k.on_tick(now, Some(fees(g * GWEI, GWEI)));
                    }
                    Event::Receipt(ok) => {
                        if let Some(t) = k.in_flight().cloned() {
                            let h = t.attempts[0].hash.clone();
                            prop_assert!(k.on_receipt(&h, ok).is_some());
                            if ok {
                                for f in t.feeds {
                                    let e = landed.entry(f.id).or_insert(f.publish_time);
                                    *e = (*e).max(f.publish_time);
                                }
                            }
                            flying = None;
                        }
                    }
                    Event::NotSent(retry) => {
                        if planning.take().is_some() {
                            k.on_not_sent(retry);
                        }
                    }
                    Event::Rejected => {
                        if let Some(t) = k.in_flight().cloned() {
                            for a in &t.attempts {
                                k.on_rejected(&a.hash);
                            }
                            prop_assert!(k.in_flight().is_none());
                            flying = None;
                        }
                    }
                    Event::Sign => {
                        if let Some(fts) = planning.take() {
                            hashes += 1;
                            k.on_signed(next_nonce, attempt(&format!("0x{hashes}"), fresh, now));
                            flying = Some((next_nonce, fts, fresh));
                            next_nonce += 1;
                        }
                    }
                    Event::Restart => {
                        // A restart loses the plan being built, keeps the persisted state.
                        let state: KeeperState =
                            serde_json::from_str(&serde_json::to_string(k.state()).unwrap()).unwrap();
                        k = Keeper::new(rules(), state);
                        planning = None;
                    }
                }
                for a in actions {
                    match a {
                        Action::Submit(plan) => {
                            prop_assert!(flying.is_none() && planning.is_none());
                            let fts = plan.feed_times();
                            prop_assert!(!fts.is_empty());
                            for f in &fts {
                                let known = landed.get(&f.id).copied();
                                prop_assert!(known.is_none_or(|k| f.publish_time > k),
                                    "{f:?} planned, landed {known:?}");
                            }
                            planning = Some(fts);
                        }
                        Action::Replace { nonce, fees: f } => {
                            let Some((n, _, prev)) = &flying else {
                                return Err(TestCaseError::fail("replace without flight"));
                            };
                            prop_assert_eq!(nonce, *n);
                            prop_assert!(is_valid_replacement(*prev, f));
                            prop_assert!(f.max_fee_per_gas <= 100 * GWEI);
                            hashes += 1;
                            k.on_signed(nonce, attempt(&format!("0x{hashes}"), f, now));
                            if let Some(fl) = &mut flying {
                                fl.2 = f;
                            }
                        }
                        Action::Skip { .. } | Action::OverGasCap { .. } => {}
                    }
                }
                // Everything in flight is newer than what had landed before it was planned.
                if let Some(t) = k.in_flight() {
                    prop_assert!(flying.as_ref().is_some_and(|f| f.0 == t.nonce));
                }
            }
        }
    }
}
