//! Trending: boost-rank snapshots into entries, exits, rank moves, velocity and high momentum.
//!
//! DEX Screener's `/token-boosts/top/v1`, polled every few seconds, is a ranked list; each poll is
//! a [`BoostSnapshot`]. As a differential collection of `(token, rank)` that retracts the previous
//! snapshot and inserts the new one ([`SnapshotDiff`]), the consolidated changes of one token at
//! one time are a [`RankChange`]: only an insert is an `entry`, only a retraction an `exit`, both a
//! `rank_up` (climbed: the new rank is numerically smaller) or a `rank_down`. A token whose rank
//! did not change has no change at all, so it produces nothing.
//!
//! [`TokenTrend`] is one token's state. Fed its changes in time order it emits
//! [`TrendingEvent`]s, measures its velocity in ranks per minute over the velocity window, and
//! fires `high_momentum` when that velocity crosses a threshold, with hysteresis. Everything here
//! is pure: no timely, no I/O, no clock. Times are the dataflow times the wrapper hands in.
//!
//! ```
//! use sluice::model::{BoostEntry, BoostSnapshot, Decimal, TokenRef};
//! use sluice::ops::trending::{RankChange, SnapshotDiff, TokenTrend, TrendingEvent, TrendingParams};
//!
//! let params = TrendingParams {
//!     min_trending_rank: 100,
//!     velocity_window_ms: 300_000,
//!     high_momentum: Decimal::new(2, 0),
//!     rearm: Decimal::new(1, 0),
//!     max_history: 100,
//! };
//! let wif = TokenRef::parse("solana", "EKpQGSJtjMFqKZ9KQanSqYXRcF8fBopzLHYxdM65zcjm").unwrap();
//! let snapshot = |rank| BoostSnapshot {
//!     entries: vec![BoostEntry { token: wif.clone(), rank, total_amount: Decimal::ZERO }],
//! };
//! let mut diff = SnapshotDiff::new();
//! let mut trend = TokenTrend::default();
//!
//! // The first snapshot inserts the token at rank 12: an entry.
//! let updates = diff.next(&snapshot(12), &params);
//! assert_eq!(updates, vec![((wif.clone(), 12), 1)]);
//! let events = trend.apply(&wif, 60_000, RankChange { old: None, new: Some(12) }, &params);
//! assert!(matches!(events[..], [TrendingEvent::Entry { rank: 12, .. }]));
//!
//! // A minute later it is at rank 2: ten ranks in one minute of a five-minute window is
//! // 2 ranks per minute, which crosses the threshold.
//! let events = trend.apply(&wif, 120_000, RankChange { old: Some(12), new: Some(2) }, &params);
//! assert!(matches!(events[..], [
//!     TrendingEvent::RankUp { old_rank: 12, new_rank: 2, .. },
//!     TrendingEvent::HighMomentum { velocity, .. },
//! ] if velocity == Decimal::new(2_000, -3)));
//! ```

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::config::TrendingConfig;
use crate::model::{BoostSnapshot, Decimal, TokenRef};

/// The exponent of every velocity this module computes: velocities are milli-ranks per minute.
pub const VELOCITY_EXPO: i32 = -3;

/// Milliseconds in a minute: velocities are per minute, times are in ms.
const MS_PER_MINUTE: i128 = 60_000;

/// `10^-VELOCITY_EXPO`: the velocity's integer unit is a thousandth of a rank per minute.
const MILLI_PER_UNIT: i128 = 1_000;

/// The settings the trending state machine runs with, in the units it computes in.
///
/// ```
/// use sluice::model::Decimal;
/// use sluice::ops::trending::TrendingParams;
///
/// let config = sluice::config::Config::load(None, &[]).unwrap();
/// let params = TrendingParams::from(&config.trending);
/// assert_eq!(params.min_trending_rank, 100);
/// assert_eq!(params.velocity_window_ms, 300_000);
/// assert_eq!(params.high_momentum.cmp_value(&Decimal::new(2, 0)), std::cmp::Ordering::Equal);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrendingParams {
    /// Ranks deeper (numerically larger) than this are not tracked: falling past it is an exit.
    pub min_trending_rank: u32,
    /// The velocity window, in ms. A zero window is taken as 1 ms rather than dividing by zero.
    pub velocity_window_ms: u64,
    /// `high_momentum` fires when the velocity reaches this (ranks per minute)...
    pub high_momentum: Decimal,
    /// ...and may fire again only after the velocity was seen below this (ranks per minute).
    pub rearm: Decimal,
    /// Positions and events kept per token.
    pub max_history: usize,
}

impl From<&TrendingConfig> for TrendingParams {
    fn from(config: &TrendingConfig) -> Self {
        TrendingParams {
            min_trending_rank: config.min_trending_rank,
            velocity_window_ms: config.velocity_window_secs.saturating_mul(1_000),
            high_momentum: config.high_momentum_ranks_per_min.value(),
            rearm: config.high_momentum_rearm_ranks_per_min.value(),
            max_history: config.max_history_size,
        }
    }
}

impl TrendingParams {
    /// The window in ms, never zero (it divides).
    fn window_ms(&self) -> u64 {
        self.velocity_window_ms.max(1)
    }
}

/// Turns consecutive snapshots into differential updates of the `(token, rank)` collection.
///
/// It remembers the rows of the previous snapshot, so it must see every snapshot, in time order,
/// in one place. A failed or stale poll is not a snapshot: never pass one, or every token would
/// exit.
///
/// ```
/// use sluice::model::{BoostEntry, BoostSnapshot, Decimal, TokenRef};
/// use sluice::ops::trending::{SnapshotDiff, TrendingParams};
///
/// let params = TrendingParams {
///     min_trending_rank: 2,
///     velocity_window_ms: 300_000,
///     high_momentum: Decimal::new(2, 0),
///     rearm: Decimal::new(1, 0),
///     max_history: 100,
/// };
/// let a = TokenRef::parse("solana", "So11111111111111111111111111111111111111112").unwrap();
/// let b = TokenRef::parse("base", "0x4ed4e862860bed51a9570b96d89af5e1b0efefed").unwrap();
/// let entry = |token: &TokenRef, rank| BoostEntry { token: token.clone(), rank, total_amount: Decimal::ZERO };
///
/// let mut diff = SnapshotDiff::new();
/// // Rank 3 is past `min_trending_rank`: not tracked.
/// let first = BoostSnapshot { entries: vec![entry(&a, 1), entry(&b, 3)] };
/// assert_eq!(diff.next(&first, &params), vec![((a.clone(), 1), 1)]);
/// // The previous rows are retracted, the new ones inserted (in token order: chain, then
/// // address); consolidating is the caller's job.
/// let second = BoostSnapshot { entries: vec![entry(&b, 1), entry(&a, 2)] };
/// assert_eq!(
///     diff.next(&second, &params),
///     vec![((a.clone(), 1), -1), ((b.clone(), 1), 1), ((a.clone(), 2), 1)],
/// );
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotDiff {
    /// The tracked rows of the previous snapshot, one per token, in token order.
    previous: Vec<(TokenRef, u32)>,
}

impl SnapshotDiff {
    /// No previous snapshot: the first one is all entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `(row, diff)` updates that turn the previous snapshot into `snapshot`: −1 for each
    /// previous row, +1 for each new row, counting only rows with rank ≤ `min_trending_rank`.
    ///
    /// The updates are not consolidated (a token that kept its rank appears with −1 and +1); the
    /// caller consolidates them, with differential dataflow. A token listed more than once keeps
    /// its best (smallest) rank, so that every token has at most one row and its consolidated
    /// change is at most one retraction and one insertion.
    pub fn next(
        &mut self,
        snapshot: &BoostSnapshot,
        params: &TrendingParams,
    ) -> Vec<((TokenRef, u32), isize)> {
        let mut best_rank: BTreeMap<&TokenRef, u32> = BTreeMap::new();
        for entry in snapshot
            .entries
            .iter()
            .filter(|e| e.rank <= params.min_trending_rank)
        {
            best_rank
                .entry(&entry.token)
                .and_modify(|rank| *rank = (*rank).min(entry.rank))
                .or_insert(entry.rank);
        }
        let rows: Vec<(TokenRef, u32)> = best_rank
            .into_iter()
            .map(|(token, rank)| (token.clone(), rank))
            .collect();
        let mut updates = Vec::with_capacity(self.previous.len() + rows.len());
        updates.extend(self.previous.drain(..).map(|row| (row, -1)));
        updates.extend(rows.iter().cloned().map(|row| (row, 1)));
        self.previous = rows;
        updates
    }

    /// The tracked rows of the last snapshot, one per token, in token order.
    pub fn rows(&self) -> &[(TokenRef, u32)] {
        &self.previous
    }
}

/// A token's consolidated change at one time: at most one old and one new rank.
///
/// ```
/// use sluice::ops::trending::RankChange;
///
/// // A retraction of rank 7 and an insertion of rank 3: the token climbed from 7 to 3.
/// let change = RankChange::from_updates([(7, -1), (3, 1)]).unwrap();
/// assert_eq!(change, Some(RankChange { old: Some(7), new: Some(3) }));
/// // Unchanged rows cancel: no change at all.
/// assert_eq!(RankChange::from_updates([(5, -1), (5, 1)]).unwrap(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RankChange {
    /// The rank retracted (the token's rank before), if any.
    pub old: Option<u32>,
    /// The rank inserted (the token's rank after), if any.
    pub new: Option<u32>,
}

/// Updates of one token at one time that no pair of snapshots can produce (for instance two
/// insertions): a bug upstream, reported rather than guessed at.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a rank change: consolidated (rank, diff) updates {0:?}")]
pub struct NotARankChange(pub Vec<(u32, isize)>);

impl RankChange {
    /// Consolidates one token's `(rank, diff)` updates at one time (they may arrive
    /// unconsolidated or already consolidated) into its change; `None` when they cancel.
    pub fn from_updates(
        updates: impl IntoIterator<Item = (u32, isize)>,
    ) -> Result<Option<RankChange>, NotARankChange> {
        let mut net: BTreeMap<u32, isize> = BTreeMap::new();
        for (rank, diff) in updates {
            let sum = net.entry(rank).or_default();
            *sum = sum.saturating_add(diff);
        }
        net.retain(|_, diff| *diff != 0);
        let mut change = RankChange {
            old: None,
            new: None,
        };
        for (&rank, &diff) in &net {
            let slot = match diff {
                -1 => &mut change.old,
                1 => &mut change.new,
                _ => return Err(NotARankChange(net.into_iter().collect())),
            };
            if slot.replace(rank).is_some() {
                return Err(NotARankChange(net.into_iter().collect()));
            }
        }
        Ok((change.old.is_some() || change.new.is_some()).then_some(change))
    }
}

/// A trending journal event.
///
/// Serialized with its kind first, then chain and token, so that journal lines sorted by their
/// bytes are in (kind, key) order:
///
/// ```
/// use sluice::model::Decimal;
/// use sluice::ops::trending::TrendingEvent;
///
/// let event = TrendingEvent::HighMomentum {
///     chain: "solana".into(),
///     token: "So11111111111111111111111111111111111111112".into(),
///     velocity: Decimal::new(2_500, -3),
/// };
/// let line = serde_json::to_string(&event).unwrap();
/// assert_eq!(
///     line,
///     r#"{"kind":"high_momentum","chain":"solana","token":"So11111111111111111111111111111111111111112","velocity":"2.500"}"#
/// );
/// assert_eq!(serde_json::from_str::<TrendingEvent>(&line).unwrap(), event);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrendingEvent {
    /// The token appeared within the tracked ranks.
    Entry {
        /// DEX Screener chain slug.
        chain: String,
        /// The token's address.
        token: String,
        /// Its rank.
        rank: u32,
    },
    /// The token left the tracked ranks (dropped off the list or fell past the cut-off).
    Exit {
        /// DEX Screener chain slug.
        chain: String,
        /// The token's address.
        token: String,
        /// Its last tracked rank.
        final_rank: u32,
    },
    /// The token climbed: its new rank is numerically smaller.
    RankUp {
        /// DEX Screener chain slug.
        chain: String,
        /// The token's address.
        token: String,
        /// The rank before.
        old_rank: u32,
        /// The rank now.
        new_rank: u32,
    },
    /// The token fell: its new rank is numerically larger.
    RankDown {
        /// DEX Screener chain slug.
        chain: String,
        /// The token's address.
        token: String,
        /// The rank before.
        old_rank: u32,
        /// The rank now.
        new_rank: u32,
    },
    /// The token's velocity crossed the high-momentum threshold.
    HighMomentum {
        /// DEX Screener chain slug.
        chain: String,
        /// The token's address.
        token: String,
        /// The velocity that crossed it, in ranks per minute.
        #[serde(with = "milli_ranks")]
        velocity: Decimal,
    },
}

impl TrendingEvent {
    /// The token the event is about, as (chain, address).
    pub fn token(&self) -> (&str, &str) {
        match self {
            TrendingEvent::Entry { chain, token, .. }
            | TrendingEvent::Exit { chain, token, .. }
            | TrendingEvent::RankUp { chain, token, .. }
            | TrendingEvent::RankDown { chain, token, .. }
            | TrendingEvent::HighMomentum { chain, token, .. } => (chain, token),
        }
    }

    /// The event's kind, as serialized (`entry`, `exit`, `rank_up`, `rank_down`, `high_momentum`).
    pub fn kind(&self) -> &'static str {
        match self {
            TrendingEvent::Entry { .. } => "entry",
            TrendingEvent::Exit { .. } => "exit",
            TrendingEvent::RankUp { .. } => "rank_up",
            TrendingEvent::RankDown { .. } => "rank_down",
            TrendingEvent::HighMomentum { .. } => "high_momentum",
        }
    }
}

/// An event and the time it happened at, as kept in a token's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedEvent {
    /// The dataflow time of the change, in ms.
    pub t_ms: u64,
    /// The event.
    #[serde(flatten)]
    pub event: TrendingEvent,
}

/// A token's rank from a time on: one is recorded at each change that leaves it tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The dataflow time of the change, in ms.
    pub t_ms: u64,
    /// The rank from then on.
    pub rank: u32,
}

/// What a token's trend looks like at a time: the answer of `/api/trending/…`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendingMetrics {
    /// Whether the token is within the tracked ranks now.
    pub is_trending: bool,
    /// Its rank, while trending.
    pub current_rank: Option<u32>,
    /// Its velocity in ranks per minute (positive = climbing); zero when not trending.
    #[serde(with = "milli_ranks")]
    pub velocity: Decimal,
    /// Its last events (at most `max_history`), oldest first.
    pub recent_events: Vec<TimedEvent>,
}

/// One token's trending state: its current rank, what its velocity needs, whether high momentum
/// may fire, and its bounded history of positions and events.
///
/// A *stint* is the time from an entry to the next exit. The velocity at `t` over a window `W` is
/// `(baseline − current rank) × 60000 / W_ms` ranks per minute, where the baseline is the rank in
/// effect at `max(t − W, start of the stint)`; it is computed exactly in integers and truncated
/// toward zero to thousandths ([`VELOCITY_EXPO`]).
///
/// ```
/// use sluice::model::{Decimal, TokenRef};
/// use sluice::ops::trending::{RankChange, TokenTrend, TrendingParams};
///
/// let params = TrendingParams {
///     min_trending_rank: 100,
///     velocity_window_ms: 60_000,
///     high_momentum: Decimal::new(5, 0),
///     rearm: Decimal::new(1, 0),
///     max_history: 10,
/// };
/// let token = TokenRef::parse("base", "0x4ed4e862860bed51a9570b96d89af5e1b0efefed").unwrap();
/// let mut trend = TokenTrend::default();
/// trend.apply(&token, 0, RankChange { old: None, new: Some(9) }, &params);
/// trend.apply(&token, 30_000, RankChange { old: Some(9), new: Some(7) }, &params);
/// // Over the one-minute window the baseline is the entry rank, 9: two ranks a minute.
/// assert_eq!(trend.velocity_at(30_000, &params), Decimal::new(2_000, -3));
/// // 90 s later the window starts after the climb to 7: no movement within it.
/// assert_eq!(trend.velocity_at(90_000, &params), Decimal::new(0, -3));
/// let metrics = trend.metrics(90_000, &params);
/// assert_eq!((metrics.is_trending, metrics.current_rank), (true, Some(7)));
/// assert_eq!(metrics.recent_events.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenTrend {
    /// The rank now, while trending.
    current_rank: Option<u32>,
    /// Whether `high_momentum` may fire (hysteresis).
    armed: bool,
    /// The time of the last change applied.
    last_change_ms: Option<u64>,
    /// When the last stint ended, while not trending.
    exited_ms: Option<u64>,
    /// The positions of the current stint the velocity can still need: the one in effect at the
    /// start of the last window, and every later one. Kept apart from the bounded history
    /// because the velocity must stay exact however often the rank changes within a window.
    window: VecDeque<Position>,
    /// The last `max_history` positions, across stints.
    positions: VecDeque<Position>,
    /// The last `max_history` events.
    events: VecDeque<TimedEvent>,
}

impl TokenTrend {
    /// Applies the token's consolidated change at `t_ms` and returns its events, in a fixed
    /// order: the rank event first, then `high_momentum` if it fired.
    ///
    /// Hysteresis is evaluated at changes only (there are no timers): first the velocity at
    /// `t_ms` with the old rank (the window has slid since the last change) re-arms if it is
    /// below `rearm`; then, with the new rank, an armed token whose velocity reaches
    /// `high_momentum` fires and disarms. An entry starts a stint armed, with velocity 0.
    ///
    /// Changes are expected in time order; one earlier than the last change is taken as
    /// happening at the last change, which keeps the history sorted. A change that is not one
    /// (`old == new`, or neither) does nothing.
    pub fn apply(
        &mut self,
        token: &TokenRef,
        t_ms: u64,
        change: RankChange,
        params: &TrendingParams,
    ) -> Vec<TrendingEvent> {
        // A token back after more than a velocity window out starts afresh, history and all:
        // its state then depends on its own changes only, so dropping such states from memory
        // (whenever and on whichever worker that happens) is invisible.
        if self.exited_ms.is_some() && self.is_evictable(t_ms, params) {
            *self = TokenTrend::default();
        }
        let t_ms = self.last_change_ms.map_or(t_ms, |last| t_ms.max(last));
        let Some(rank_event) = rank_event(token, change) else {
            return Vec::new();
        };

        if let Some(old_rank) = change.old {
            self.reconcile(t_ms, old_rank);
            let velocity = self.velocity_with(t_ms, old_rank, params);
            if velocity.cmp_value(&params.rearm).is_lt() {
                self.armed = true;
            }
        }
        match change.new {
            None => {
                self.current_rank = None;
                self.window.clear();
                self.exited_ms = Some(t_ms);
            }
            Some(new_rank) => {
                if change.old.is_none() {
                    self.start_stint();
                }
                let position = Position {
                    t_ms,
                    rank: new_rank,
                };
                self.current_rank = Some(new_rank);
                self.window.push_back(position);
                push_bounded(&mut self.positions, position, params.max_history);
            }
        }
        self.last_change_ms = Some(t_ms);

        let mut events = vec![rank_event];
        if let Some(new_rank) = change.new {
            let velocity = self.velocity_with(t_ms, new_rank, params);
            if self.armed && velocity.cmp_value(&params.high_momentum).is_ge() {
                self.armed = false;
                events.push(TrendingEvent::HighMomentum {
                    chain: token.chain.to_string(),
                    token: token.address.to_string(),
                    velocity,
                });
            }
        }
        self.prune_window(t_ms, params);
        for event in &events {
            let timed = TimedEvent {
                t_ms,
                event: event.clone(),
            };
            push_bounded(&mut self.events, timed, params.max_history);
        }
        events
    }

    /// The token's velocity at `t_ms`, in ranks per minute (positive = climbing), with exponent
    /// [`VELOCITY_EXPO`]; zero when it is not trending.
    ///
    /// Meant for times at or after the last change; an earlier time is taken as that change's.
    pub fn velocity_at(&self, t_ms: u64, params: &TrendingParams) -> Decimal {
        match self.current_rank {
            Some(rank) => {
                let t_ms = self.last_change_ms.map_or(t_ms, |last| t_ms.max(last));
                self.velocity_with(t_ms, rank, params)
            }
            None => Decimal::new(0, VELOCITY_EXPO),
        }
    }

    /// The token's metrics at `t_ms`.
    pub fn metrics(&self, t_ms: u64, params: &TrendingParams) -> TrendingMetrics {
        TrendingMetrics {
            is_trending: self.current_rank.is_some(),
            current_rank: self.current_rank,
            velocity: self.velocity_at(t_ms, params),
            recent_events: self.events.iter().cloned().collect(),
        }
    }

    /// Whether the state may be dropped from memory at `t_ms`: the token is not trending and
    /// exited more than a velocity window ago (or never trended). Dropping it changes nothing:
    /// [`TokenTrend::apply`] resets such a token at its next change anyway.
    pub fn is_evictable(&self, t_ms: u64, params: &TrendingParams) -> bool {
        self.current_rank.is_none()
            && self
                .exited_ms
                .is_none_or(|exited| t_ms.saturating_sub(exited) > params.window_ms())
    }

    /// The rank now, while trending.
    pub fn current_rank(&self) -> Option<u32> {
        self.current_rank
    }

    /// Whether the token is within the tracked ranks.
    pub fn is_trending(&self) -> bool {
        self.current_rank.is_some()
    }

    /// Whether `high_momentum` may fire at the next climb.
    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// The time of the last change applied, if any.
    pub fn last_change_ms(&self) -> Option<u64> {
        self.last_change_ms
    }

    /// The last `max_history` positions, oldest first, across stints.
    pub fn positions(&self) -> &VecDeque<Position> {
        &self.positions
    }

    /// The last `max_history` events, oldest first.
    pub fn events(&self) -> &VecDeque<TimedEvent> {
        &self.events
    }

    /// A fresh stint: armed, with nothing in the window yet.
    fn start_stint(&mut self) {
        self.window.clear();
        self.armed = true;
        self.exited_ms = None;
    }

    /// Makes the state agree with a change's old rank before applying it. A snapshot diff never
    /// disagrees with the state it was fed alongside; this covers a state that was lost (say,
    /// evicted while the token was still listed) so that the velocity still has a baseline.
    fn reconcile(&mut self, t_ms: u64, old_rank: u32) {
        if self.current_rank == Some(old_rank) && !self.window.is_empty() {
            return;
        }
        if self.current_rank.is_none() || self.window.is_empty() {
            self.start_stint();
        }
        self.current_rank = Some(old_rank);
        self.window.push_back(Position {
            t_ms,
            rank: old_rank,
        });
    }

    /// The velocity at `t_ms` if the rank now is `current_rank`.
    fn velocity_with(&self, t_ms: u64, current_rank: u32, params: &TrendingParams) -> Decimal {
        let window_ms = params.window_ms();
        let Some(first) = self.window.front() else {
            return Decimal::new(0, VELOCITY_EXPO);
        };
        let baseline = match t_ms.checked_sub(window_ms) {
            // The window starts within the stint: the rank in effect then, the last position at
            // or before it.
            Some(window_start) if window_start >= first.t_ms => {
                let after = self.window.partition_point(|p| p.t_ms <= window_start);
                after
                    .checked_sub(1)
                    .and_then(|i| self.window.get(i))
                    .unwrap_or(first)
                    .rank
            }
            // The window starts before the stint: the rank the stint started at.
            _ => first.rank,
        };
        let climbed = i128::from(baseline) - i128::from(current_rank);
        // Exact integer arithmetic, truncating toward zero. Ranks are u32 and the window at
        // least 1 ms, so the result is below 2^58 and fits the i64 mantissa.
        let milli = climbed * MS_PER_MINUTE * MILLI_PER_UNIT / i128::from(window_ms);
        let mantissa = i64::try_from(milli).unwrap_or(if milli < 0 { i64::MIN } else { i64::MAX });
        Decimal::new(mantissa, VELOCITY_EXPO)
    }

    /// Drops the window positions no later velocity can need. Times only move forward, so every
    /// later window starts at or after `t_ms − W`: the position in effect then is the oldest one
    /// still needed.
    fn prune_window(&mut self, t_ms: u64, params: &TrendingParams) {
        let Some(window_start) = t_ms.checked_sub(params.window_ms()) else {
            return;
        };
        while self
            .window
            .get(1)
            .is_some_and(|next| next.t_ms <= window_start)
        {
            self.window.pop_front();
        }
    }
}

/// The event a change is: entry, exit, rank up or rank down; `None` when it is no change.
fn rank_event(token: &TokenRef, change: RankChange) -> Option<TrendingEvent> {
    let chain = token.chain.to_string();
    let address = token.address.to_string();
    match (change.old, change.new) {
        (None, Some(rank)) => Some(TrendingEvent::Entry {
            chain,
            token: address,
            rank,
        }),
        (Some(final_rank), None) => Some(TrendingEvent::Exit {
            chain,
            token: address,
            final_rank,
        }),
        // Rank 1 is the top: a numerically smaller rank is a climb.
        (Some(old_rank), Some(new_rank)) if new_rank < old_rank => Some(TrendingEvent::RankUp {
            chain,
            token: address,
            old_rank,
            new_rank,
        }),
        (Some(old_rank), Some(new_rank)) if new_rank > old_rank => Some(TrendingEvent::RankDown {
            chain,
            token: address,
            old_rank,
            new_rank,
        }),
        _ => None,
    }
}

/// Appends to a bounded history, dropping the oldest entries beyond `max`.
fn push_bounded<T>(history: &mut VecDeque<T>, item: T, max: usize) {
    history.push_back(item);
    while history.len() > max {
        history.pop_front();
    }
}

/// Serde for velocities: written as a decimal string by [`crate::model::decimal::as_string`],
/// read back at [`VELOCITY_EXPO`].
mod milli_ranks {
    use serde::{Deserializer, Serializer};

    use super::VELOCITY_EXPO;
    use crate::model::Decimal;
    use crate::model::decimal::as_string;

    pub fn serialize<S: Serializer>(velocity: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        as_string::serialize(velocity, s)
    }

    /// `as_string` folds trailing zeros (`"2.000"` reads back as `2`); a velocity goes back to
    /// thousandths so that a stored record reads back equal to what was written. A value with
    /// finer digits (not one of ours) is kept as read.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let value = as_string::deserialize(d)?;
        Ok(value
            .scaled_to(VELOCITY_EXPO)
            .and_then(|mantissa| i64::try_from(mantissa).ok())
            .map_or(value, |mantissa| Decimal::new(mantissa, VELOCITY_EXPO)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BoostEntry;

    const W: u64 = 300_000;

    fn change(old: Option<u32>, new: Option<u32>) -> RankChange {
        RankChange { old, new }
    }

    fn params() -> TrendingParams {
        TrendingParams {
            min_trending_rank: 10,
            velocity_window_ms: W,
            high_momentum: Decimal::new(2, 0),
            rearm: Decimal::new(1, 0),
            max_history: 100,
        }
    }

    fn sol(n: u8) -> TokenRef {
        TokenRef::parse("solana", &bs58::encode([n; 32]).into_string()).unwrap()
    }

    fn snapshot(rows: &[(&TokenRef, u32)]) -> BoostSnapshot {
        BoostSnapshot {
            entries: rows
                .iter()
                .map(|(token, rank)| BoostEntry {
                    token: (*token).clone(),
                    rank: *rank,
                    total_amount: Decimal::new(500, 0),
                })
                .collect(),
        }
    }

    /// Feeds snapshots through `SnapshotDiff`, consolidation and one `TokenTrend` per token.
    struct Harness {
        params: TrendingParams,
        diff: SnapshotDiff,
        trends: BTreeMap<TokenRef, TokenTrend>,
    }

    impl Harness {
        fn new(params: TrendingParams) -> Self {
            Harness {
                params,
                diff: SnapshotDiff::new(),
                trends: BTreeMap::new(),
            }
        }

        fn poll(&mut self, t_ms: u64, rows: &[(&TokenRef, u32)]) -> Vec<TrendingEvent> {
            let updates = self.diff.next(&snapshot(rows), &self.params);
            let mut by_token: BTreeMap<TokenRef, Vec<(u32, isize)>> = BTreeMap::new();
            for ((token, rank), diff) in updates {
                by_token.entry(token).or_default().push((rank, diff));
            }
            let mut events = Vec::new();
            for (token, updates) in by_token {
                if let Some(change) = RankChange::from_updates(updates).unwrap() {
                    let trend = self.trends.entry(token.clone()).or_default();
                    events.extend(trend.apply(&token, t_ms, change, &self.params));
                }
            }
            events
        }

        fn trend(&self, token: &TokenRef) -> &TokenTrend {
            &self.trends[token]
        }
    }

    fn entry(token: &TokenRef, rank: u32) -> TrendingEvent {
        TrendingEvent::Entry {
            chain: token.chain.to_string(),
            token: token.address.to_string(),
            rank,
        }
    }

    fn exit(token: &TokenRef, final_rank: u32) -> TrendingEvent {
        TrendingEvent::Exit {
            chain: token.chain.to_string(),
            token: token.address.to_string(),
            final_rank,
        }
    }

    fn up(token: &TokenRef, old_rank: u32, new_rank: u32) -> TrendingEvent {
        TrendingEvent::RankUp {
            chain: token.chain.to_string(),
            token: token.address.to_string(),
            old_rank,
            new_rank,
        }
    }

    fn down(token: &TokenRef, old_rank: u32, new_rank: u32) -> TrendingEvent {
        TrendingEvent::RankDown {
            chain: token.chain.to_string(),
            token: token.address.to_string(),
            old_rank,
            new_rank,
        }
    }

    fn momentum(token: &TokenRef, milli: i64) -> TrendingEvent {
        TrendingEvent::HighMomentum {
            chain: token.chain.to_string(),
            token: token.address.to_string(),
            velocity: Decimal::new(milli, VELOCITY_EXPO),
        }
    }

    /// Thresholds no test movement reaches, for tests about rank events only.
    fn quiet() -> TrendingParams {
        TrendingParams {
            high_momentum: Decimal::new(1_000, 0),
            ..params()
        }
    }

    #[test]
    fn entry_exit_up_and_down() {
        let (a, b, c) = (sol(1), sol(2), sol(3));
        let mut h = Harness::new(quiet());
        let mut first = h.poll(1_000, &[(&a, 1), (&b, 2)]);
        first.sort_by_key(|e| e.token().1.to_owned());
        let mut expected = vec![entry(&a, 1), entry(&b, 2)];
        expected.sort_by_key(|e| e.token().1.to_owned());
        assert_eq!(first, expected);

        let mut moved = h.poll(2_000, &[(&b, 1), (&a, 2), (&c, 3)]);
        moved.sort_by_key(|e| e.token().1.to_owned());
        let mut expected = vec![down(&a, 1, 2), up(&b, 2, 1), entry(&c, 3)];
        expected.sort_by_key(|e| e.token().1.to_owned());
        assert_eq!(moved, expected);

        assert_eq!(h.poll(3_000, &[(&b, 1), (&c, 3)]), vec![exit(&a, 2)]);
        assert!(!h.trend(&a).is_trending());
        assert_eq!(h.trend(&b).current_rank(), Some(1));
    }

    #[test]
    fn unchanged_snapshots_and_unchanged_tokens_produce_nothing() {
        let (a, b, c) = (sol(1), sol(2), sol(3));
        let mut h = Harness::new(quiet());
        h.poll(1_000, &[(&a, 1), (&b, 2), (&c, 3)]);
        assert_eq!(h.poll(2_000, &[(&a, 1), (&b, 2), (&c, 3)]), vec![]);
        // Only b and c swap; a keeps rank 1 and says nothing.
        let events = h.poll(3_000, &[(&a, 1), (&c, 2), (&b, 3)]);
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.token() != (&*a.chain, &*a.address)));
        // An unchanged snapshot consolidates to nothing at all.
        let updates = h
            .diff
            .next(&snapshot(&[(&a, 1), (&c, 2), (&b, 3)]), &h.params);
        let mut net: BTreeMap<(TokenRef, u32), isize> = BTreeMap::new();
        for (row, diff) in updates {
            *net.entry(row).or_default() += diff;
        }
        assert!(net.values().all(|d| *d == 0));
    }

    #[test]
    fn ranks_with_gaps_are_taken_as_given() {
        let (a, b) = (sol(1), sol(2));
        let mut h = Harness::new(quiet());
        // Ranks 1 and 2 were invalid items the parser removed.
        h.poll(1_000, &[(&a, 3), (&b, 7)]);
        assert_eq!(h.trend(&a).current_rank(), Some(3));
        // The gap closes: both climb although their order did not change.
        let mut events = h.poll(2_000, &[(&a, 1), (&b, 2)]);
        events.sort_by_key(|e| e.token().1.to_owned());
        let mut expected = vec![up(&a, 3, 1), up(&b, 7, 2)];
        expected.sort_by_key(|e| e.token().1.to_owned());
        assert_eq!(events, expected);
    }

    #[test]
    fn the_cut_off_makes_entries_and_exits() {
        let a = sol(1);
        let mut h = Harness::new(quiet());
        assert_eq!(
            h.poll(1_000, &[(&a, 11)]),
            vec![],
            "rank 11 is past min_trending_rank 10"
        );
        assert_eq!(
            h.poll(2_000, &[(&a, 10)]),
            vec![entry(&a, 10)],
            "climbing into the tracked ranks"
        );
        assert_eq!(h.poll(3_000, &[(&a, 4)]), vec![up(&a, 10, 4)]);
        assert_eq!(
            h.poll(4_000, &[(&a, 25)]),
            vec![exit(&a, 4)],
            "falling past the cut-off"
        );
        assert_eq!(
            h.poll(5_000, &[(&a, 30)]),
            vec![],
            "moves past the cut-off are not seen"
        );
    }

    #[test]
    fn a_token_listed_twice_keeps_its_best_rank() {
        let a = sol(1);
        let mut h = Harness::new(quiet());
        assert_eq!(h.poll(1_000, &[(&a, 2), (&a, 5)]), vec![entry(&a, 2)]);
    }

    #[test]
    fn re_entry_starts_a_fresh_stint() {
        let a = sol(1);
        let mut h = Harness::new(params());
        h.poll(0, &[(&a, 10)]);
        h.poll(60_000, &[(&a, 9)]);
        assert_eq!(h.poll(120_000, &[]), vec![exit(&a, 9)]);
        assert_eq!(
            h.trend(&a).velocity_at(120_000, &h.params),
            Decimal::new(0, VELOCITY_EXPO)
        );
        // Back at rank 3: an entry, velocity 0 (the old stint's rank 10 is no baseline).
        assert_eq!(h.poll(180_000, &[(&a, 3)]), vec![entry(&a, 3)]);
        assert_eq!(
            h.trend(&a).velocity_at(180_000, &h.params),
            Decimal::new(0, VELOCITY_EXPO)
        );
        // Its history spans both stints.
        let ranks: Vec<u32> = h.trend(&a).positions().iter().map(|p| p.rank).collect();
        assert_eq!(ranks, vec![10, 9, 3]);
    }

    #[test]
    fn velocity_examples_are_exact() {
        let a = sol(1);
        let p = quiet();
        let mut trend = TokenTrend::default();
        trend.apply(&a, 1_000_000, change(None, Some(10)), &p);
        // Within the first window the baseline is the stint's first rank.
        trend.apply(&a, 1_060_000, change(Some(10), Some(7)), &p);
        // (10 − 7) × 60000 / 300000 = 0.6 ranks per minute.
        assert_eq!(trend.velocity_at(1_060_000, &p), Decimal::new(600, -3));
        trend.apply(&a, 1_200_000, change(Some(7), Some(6)), &p);
        assert_eq!(trend.velocity_at(1_200_000, &p), Decimal::new(800, -3));
        // At 1_310_000 the window starts at 1_010_000, when the rank was still 10.
        assert_eq!(trend.velocity_at(1_310_000, &p), Decimal::new(800, -3));
        // At 1_360_000 it starts exactly at the climb to 7: that rank is in effect then.
        assert_eq!(trend.velocity_at(1_360_000, &p), Decimal::new(200, -3));
        // Long after, nothing moved within the window.
        assert_eq!(trend.velocity_at(1_600_000, &p), Decimal::new(0, -3));
        // Falling is negative: 6 → 9 right after sitting still is −3 × 0.2 = −0.6.
        trend.apply(&a, 1_600_000, change(Some(6), Some(9)), &p);
        assert_eq!(trend.velocity_at(1_600_000, &p), Decimal::new(-600, -3));
        // Thirds truncate toward zero: one rank over a 7-minute window is 0.142857…
        let seven = TrendingParams {
            velocity_window_ms: 420_000,
            ..p
        };
        let mut trend = TokenTrend::default();
        trend.apply(&a, 0, change(None, Some(5)), &seven);
        trend.apply(&a, 1_000, change(Some(5), Some(4)), &seven);
        assert_eq!(trend.velocity_at(1_000, &seven), Decimal::new(142, -3));
        trend.apply(&a, 2_000, change(Some(4), Some(6)), &seven);
        assert_eq!(trend.velocity_at(2_000, &seven), Decimal::new(-142, -3));
        // A time before the last change is answered as of that change.
        assert_eq!(trend.velocity_at(0, &seven), Decimal::new(-142, -3));
    }

    #[test]
    fn high_momentum_fires_once_on_crossing_and_rearms_below_the_rearm_level() {
        let a = sol(1);
        // Window 60 s: velocity = ranks climbed within the last minute.
        let p = TrendingParams {
            velocity_window_ms: 60_000,
            min_trending_rank: 100,
            ..params()
        };
        let mut trend = TokenTrend::default();
        let mut at =
            |t: u64, old: Option<u32>, new: Option<u32>| trend.apply(&a, t, change(old, new), &p);
        assert_eq!(at(0, None, Some(50)), vec![entry(&a, 50)]);
        // One rank in 10 s: velocity 1, below 2.
        assert_eq!(at(10_000, Some(50), Some(49)), vec![up(&a, 50, 49)]);
        // Baseline 50, now 47: velocity 3 crosses 2.
        assert_eq!(
            at(20_000, Some(49), Some(47)),
            vec![up(&a, 49, 47), momentum(&a, 3_000)]
        );
        // Still climbing fast: no second event while disarmed.
        assert_eq!(at(30_000, Some(47), Some(40)), vec![up(&a, 47, 40)]);
        // At 75 s the window starts at 15 s (rank 49): velocity 49 − 40 = 9 with the old rank,
        // not below 1, so it stays disarmed; climbing on does not fire.
        assert_eq!(at(75_000, Some(40), Some(39)), vec![up(&a, 40, 39)]);
        // At 100 s the window starts at 40 s (rank 40): with the old rank 39 the velocity is 1,
        // not below 1: still disarmed.
        assert_eq!(at(100_000, Some(39), Some(36)), vec![up(&a, 39, 36)]);
        // At 150 s the window starts at 90 s (rank 39): with the old rank 36 the velocity is 3,
        // so it stays disarmed. The fall to 45 is only measured at the next change.
        assert_eq!(at(150_000, Some(36), Some(45)), vec![down(&a, 36, 45)]);
        // At 160 s the window starts at 100 s (rank 36): old rank 45 gives −9 < 1: re-armed;
        // then 45 → 30 gives 36 − 30 = 6 ≥ 2: fires again.
        assert_eq!(
            at(160_000, Some(45), Some(30)),
            vec![up(&a, 45, 30), momentum(&a, 6_000)]
        );
    }

    #[test]
    fn sitting_still_longer_than_the_window_rearms() {
        let a = sol(1);
        let p = TrendingParams {
            velocity_window_ms: 60_000,
            min_trending_rank: 100,
            ..params()
        };
        let mut trend = TokenTrend::default();
        trend.apply(&a, 0, change(None, Some(20)), &p);
        let fired = trend.apply(&a, 30_000, change(Some(20), Some(10)), &p);
        assert_eq!(fired, vec![up(&a, 20, 10), momentum(&a, 10_000)]);
        assert!(!trend.is_armed());
        // No change for more than a window, then a climb of 3 ranks in one step: the velocity
        // with the old rank is 0 (re-arm), with the new one 3 (fire).
        let again = trend.apply(&a, 200_000, change(Some(10), Some(7)), &p);
        assert_eq!(again, vec![up(&a, 10, 7), momentum(&a, 3_000)]);
    }

    #[test]
    fn reaching_the_threshold_exactly_fires_and_the_rearm_level_exactly_does_not_rearm() {
        let a = sol(1);
        let p = TrendingParams {
            velocity_window_ms: 60_000,
            min_trending_rank: 100,
            ..params()
        };
        let mut trend = TokenTrend::default();
        trend.apply(&a, 0, change(None, Some(20)), &p);
        // Exactly 2 ranks per minute: fires.
        let fired = trend.apply(&a, 30_000, change(Some(20), Some(18)), &p);
        assert_eq!(fired, vec![up(&a, 20, 18), momentum(&a, 2_000)]);
        // Climbing on while disarmed: with the old rank 18 the velocity is 2 (window from 0 s).
        let disarmed = trend.apply(&a, 60_000, change(Some(18), Some(17)), &p);
        assert_eq!(disarmed, vec![up(&a, 18, 17)]);
        // At 100 s the window starts at 40 s (rank 18): the old rank 17 gives exactly 1, which
        // is not below the re-arm level, so the climb to 15 (velocity 3) does not fire.
        let quiet = trend.apply(&a, 100_000, change(Some(17), Some(15)), &p);
        assert_eq!(quiet, vec![up(&a, 17, 15)]);
    }

    #[test]
    fn entry_starts_armed_at_velocity_zero() {
        let a = sol(1);
        let p = params();
        let mut trend = TokenTrend::default();
        assert!(!trend.is_armed());
        trend.apply(&a, 5_000, change(None, Some(1)), &p);
        assert!(trend.is_armed());
        assert_eq!(trend.velocity_at(5_000, &p), Decimal::new(0, VELOCITY_EXPO));
    }

    #[test]
    fn history_is_bounded() {
        let a = sol(1);
        let p = TrendingParams {
            max_history: 3,
            min_trending_rank: 100,
            ..params()
        };
        let mut trend = TokenTrend::default();
        trend.apply(&a, 0, change(None, Some(50)), &p);
        let mut rank = 50;
        for step in 1..=20u64 {
            let new = if step % 2 == 0 { rank - 2 } else { rank + 1 };
            trend.apply(&a, step * 5_000, change(Some(rank), Some(new)), &p);
            rank = new;
        }
        assert_eq!(trend.positions().len(), 3);
        assert_eq!(trend.events().len(), 3);
        assert_eq!(trend.positions().back().map(|p| p.rank), Some(rank));
        assert_eq!(trend.events().back().map(|e| e.t_ms), Some(100_000));
        // The velocity stays exact although the history no longer holds the entry: 100 s into
        // the stint the window (300 s) still starts at the entry rank 50; rank is now 40.
        assert_eq!(rank, 40);
        assert_eq!(trend.velocity_at(100_000, &p), Decimal::new(2_000, -3));
        let metrics = trend.metrics(100_000, &p);
        assert_eq!(metrics.recent_events.len(), 3);
    }

    #[test]
    fn eviction_waits_a_window_after_the_exit() {
        let a = sol(1);
        let p = params();
        let mut trend = TokenTrend::default();
        assert!(trend.is_evictable(0, &p), "nothing to keep");
        trend.apply(&a, 1_000, change(None, Some(3)), &p);
        assert!(!trend.is_evictable(10_000_000, &p), "still trending");
        trend.apply(&a, 2_000, change(Some(3), None), &p);
        assert!(!trend.is_evictable(2_000 + W, &p));
        assert!(trend.is_evictable(2_001 + W, &p));
    }

    #[test]
    fn non_changes_do_nothing() {
        let a = sol(1);
        let p = params();
        let mut trend = TokenTrend::default();
        assert_eq!(trend.apply(&a, 0, change(None, None), &p), vec![]);
        assert_eq!(trend.apply(&a, 0, change(Some(2), Some(2)), &p), vec![]);
        assert_eq!(trend, TokenTrend::default());
    }

    #[test]
    fn a_lost_state_still_gets_a_baseline() {
        // A move for a token whose state is gone (say, a restart): the old rank becomes the
        // start of a fresh stint, so the move's velocity is measured from it.
        let a = sol(1);
        let p = TrendingParams {
            velocity_window_ms: 60_000,
            ..params()
        };
        let mut trend = TokenTrend::default();
        let events = trend.apply(&a, 10_000, change(Some(9), Some(6)), &p);
        assert_eq!(events, vec![up(&a, 9, 6), momentum(&a, 3_000)]);
    }

    #[test]
    fn rank_changes_group_consolidated_updates() {
        assert_eq!(
            RankChange::from_updates([(3, 1)]),
            Ok(Some(change(None, Some(3))))
        );
        assert_eq!(
            RankChange::from_updates([(3, -1)]),
            Ok(Some(change(Some(3), None)))
        );
        assert_eq!(RankChange::from_updates([]), Ok(None));
        assert!(RankChange::from_updates([(3, 1), (4, 1)]).is_err());
        assert!(RankChange::from_updates([(3, 2)]).is_err());
    }

    #[test]
    fn events_serialize_kind_then_key() {
        let a = sol(1);
        let line = serde_json::to_string(&up(&a, 5, 2)).unwrap();
        assert_eq!(
            line,
            format!(
                r#"{{"kind":"rank_up","chain":"solana","token":"{}","old_rank":5,"new_rank":2}}"#,
                a.address
            )
        );
        let line = serde_json::to_string(&exit(&a, 7)).unwrap();
        assert!(line.starts_with(r#"{"kind":"exit","chain":"solana","token":"#));
        let timed = TimedEvent {
            t_ms: 42,
            event: momentum(&a, 12_340),
        };
        let text = serde_json::to_string(&timed).unwrap();
        assert!(text.ends_with(r#""velocity":"12.340"}"#), "{text}");
        assert_eq!(serde_json::from_str::<TimedEvent>(&text).unwrap(), timed);
    }

    #[test]
    fn state_round_trips_through_json() {
        let a = sol(1);
        let p = params();
        let mut trend = TokenTrend::default();
        trend.apply(&a, 0, change(None, Some(9)), &p);
        trend.apply(&a, 10_000, change(Some(9), Some(1)), &p);
        let text = serde_json::to_string(&trend).unwrap();
        let back: TokenTrend = serde_json::from_str(&text).unwrap();
        assert_eq!(back, trend);
        let metrics = trend.metrics(20_000, &p);
        let back: TrendingMetrics =
            serde_json::from_str(&serde_json::to_string(&metrics).unwrap()).unwrap();
        assert_eq!(back, metrics);
    }
}
