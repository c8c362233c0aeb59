//! Debounce in timely: feed decisions where each feed lives, windows agreed on every worker.
//!
//! Each feed's state sits on the worker its id routes to, so deciding scales with workers.
//! The debounce window is global (the first YES anywhere opens it, its end batches every YES
//! and EARLY feed), so workers tell each other through a feedback loop of broadcast notices,
//! delayed by one tick:
//!
//! - `Yes { at }`: a worker saw a YES at `at` with no window open. Every worker folds these in
//!   time order into the same [`WindowSchedule`], so all agree on when each window ends. The
//!   window ends at least one tick after it opens, so the notice always arrives in time.
//! - `Verdict { close }`: at a window's end each worker collects its YES and EARLY feeds, and
//!   says whether any of them is a YES. One tick later every worker knows whether any feed
//!   anywhere was a YES: only then is the batch committed (a window whose YES vanished — the
//!   chain caught up meanwhile — pushes nothing rather than only EARLY feeds).
//!
//! Committed entries go to one worker, which numbers the batch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{ConnectLoop, Feedback, Operator};

use super::agenda::Agenda;
use super::route::route;
use crate::model::{FeedId, Instrument, PriceSource, PriceTick};
use crate::ops::debounce::{
    BatchEntry, Decision, FeedRules, FeedState, Offer, PushBatch, Quote, Reason, SourcePrice,
    WindowSchedule,
};

/// A Hermes price for a feed the keeper pushes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedTick {
    /// The feed.
    pub feed: FeedId,
    /// Its price.
    pub quote: Quote,
    /// Hex of the update data carrying it.
    pub update_data: Option<Bytes>,
}

impl FeedTick {
    /// The debounce's view of a Hermes price, if its feed is one the keeper pushes.
    pub fn of(tick: &PriceTick, rules: &FeedRules) -> Option<FeedTick> {
        let (PriceSource::Hermes, Instrument::Feed(feed)) = (&tick.source, &tick.instrument) else {
            return None;
        };
        rules.get(feed)?;
        Some(FeedTick {
            feed: *feed,
            quote: Quote {
                price: tick.price.mantissa,
                conf: tick.conf,
                expo: tick.price.expo,
                publish_time: tick.publish_ms.div_euclid(1000),
            },
            update_data: tick.update_data.clone(),
        })
    }
}

/// A chain read of a feed (`None`: not on chain).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedTarget {
    /// The feed.
    pub feed: FeedId,
    /// What the contract holds.
    pub price: Option<Quote>,
}

/// Timing of the debounce.
#[derive(Clone, Copy, Debug)]
pub struct DebounceTiming {
    /// Window length (ms).
    pub debounce_ms: u64,
    /// A batch counts as the target until a chain read this long after it (ms).
    pub receipt_timeout_ms: u64,
    /// Source prices older than this at ingest are dropped (ms).
    pub max_staleness_ms: u64,
    /// The dataflow tick (ms): the feedback delay.
    pub tick_ms: u64,
}

/// What workers tell each other about windows.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Notice {
    Yes { at: u64 },
    Verdict { close: u64 },
}

/// A worker's committed share of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct BatchPart {
    entries: Vec<BatchEntry>,
}

/// Turns feed prices and chain reads into push batches.
pub fn debounce<'scope>(
    ticks: StreamVec<'scope, u64, FeedTick>,
    targets: StreamVec<'scope, u64, FeedTarget>,
    rules: Arc<FeedRules>,
    timing: DebounceTiming,
) -> StreamVec<'scope, u64, PushBatch> {
    let scope = ticks.scope();
    let (loop_handle, notices) = scope.feedback::<Vec<Notice>>(timing.tick_ms.max(1));
    let mut builder = OperatorBuilder::new("Debounce".to_owned(), scope);
    let mut ticks_in = builder.new_input(ticks, Exchange::new(|t: &FeedTick| route(&t.feed)));
    let mut targets_in = builder.new_input(targets, Exchange::new(|t: &FeedTarget| route(&t.feed)));
    let mut notices_in = builder.new_input(notices, Pipeline);
    let (mut parts_out, parts) = builder.new_output::<Vec<BatchPart>>();
    let (mut notices_out, sent) = builder.new_output::<Vec<Notice>>();

    builder.build(move |initial| {
        // Every emission derives from the capability of the time being processed.
        drop(initial);
        let mut agenda = Agenda::new(2);
        let mut staged_ticks: BTreeMap<u64, Vec<FeedTick>> = BTreeMap::new();
        let mut staged_targets: BTreeMap<u64, Vec<FeedTarget>> = BTreeMap::new();
        let mut staged_notices: BTreeMap<u64, Vec<Notice>> = BTreeMap::new();
        let mut feeds: FxHashMap<FeedId, FeedState> = FxHashMap::default();
        let mut schedule = WindowSchedule::new(timing.debounce_ms);
        let mut verdicts: BTreeSet<u64> = BTreeSet::new();
        // Commit time → (window end, this worker's entries).
        let mut pending: BTreeMap<u64, (u64, Vec<BatchEntry>)> = BTreeMap::new();
        move |frontiers| {
            ticks_in.for_each(|cap, data| {
                agenda.data(&cap);
                staged_ticks.entry(*cap.time()).or_default().append(data);
            });
            targets_in.for_each(|cap, data| {
                agenda.data(&cap);
                staged_targets.entry(*cap.time()).or_default().append(data);
            });
            notices_in.for_each(|cap, data| {
                agenda.data(&cap);
                staged_notices.entry(*cap.time()).or_default().append(data);
            });
            let mut parts_out = parts_out.activate();
            let mut notices_out = notices_out.activate();
            let external_done = frontiers[0].is_empty() && frontiers[1].is_empty();
            while let Some((t, caps)) = agenda.next(&[&frontiers[0], &frontiers[1], &frontiers[2]])
            {
                // 1. What other workers said one tick ago.
                let mut heard = staged_notices.remove(&t).unwrap_or_default();
                heard.sort();
                heard.dedup();
                let mut closes_now = false;
                for notice in heard {
                    match notice {
                        Notice::Yes { at } => {
                            if let Some(close) = schedule.on_yes(at) {
                                if close > t {
                                    agenda.timer(close, &caps);
                                } else {
                                    closes_now = true;
                                }
                            }
                        }
                        Notice::Verdict { close } => {
                            verdicts.insert(close);
                        }
                    }
                }
                // 2. Commit this worker's share of a batch if any feed anywhere was a YES.
                if let Some((close, entries)) = pending.remove(&t)
                    && verdicts.contains(&close)
                {
                    for entry in &entries {
                        let quote = Quote {
                            price: entry.price,
                            conf: entry.conf,
                            expo: entry.expo,
                            publish_time: entry.publish_time,
                        };
                        if let Some(feed) = feeds.get_mut(&entry.id) {
                            feed.pushed(quote, t, timing.receipt_timeout_ms);
                        }
                    }
                    parts_out.give(&caps[0], &mut vec![BatchPart { entries }]);
                }
                verdicts.retain(|close| close.saturating_add(timing.tick_ms) > t);
                // 3. A window ends: collect YES and EARLY feeds.
                if schedule.take_close(t) || closes_now {
                    let mut ids: Vec<&FeedId> = feeds.keys().collect();
                    ids.sort();
                    let mut entries = Vec::new();
                    let mut any_yes = false;
                    for id in ids {
                        let (Some(feed), Some(rule)) = (feeds.get(id), rules.get(id)) else {
                            continue;
                        };
                        let reason = match feed.decide(rule) {
                            Decision::Yes(reason) => {
                                any_yes = true;
                                reason
                            }
                            Decision::Early => Reason::Early,
                            Decision::No => continue,
                        };
                        if let Some(source) = feed.source() {
                            entries.push(entry(*id, source, reason));
                        }
                    }
                    if !entries.is_empty() {
                        let commit = t.saturating_add(timing.tick_ms);
                        pending.insert(commit, (t, entries));
                        agenda.timer(commit, &caps);
                    }
                    if any_yes {
                        notices_out.give(&caps[1], &mut vec![Notice::Verdict { close: t }]);
                    }
                }
                // 4. New chain reads (few: in canonical order), then prices (many: a feed's state
                // after several prices at one time does not depend on their order, see
                // `FeedState::offer`, so none is imposed).
                let mut changed: Vec<FeedId> = Vec::new();
                let mut reads = staged_targets.remove(&t).unwrap_or_default();
                reads.sort_by(|a, b| {
                    (a.feed, a.price.map(|p| p.publish_time))
                        .cmp(&(b.feed, b.price.map(|p| p.publish_time)))
                });
                for read in reads {
                    if rules.get(&read.feed).is_none() {
                        continue;
                    }
                    feeds.entry(read.feed).or_default().observe(read.price, t);
                    changed.push(read.feed);
                }
                for tick in staged_ticks.remove(&t).unwrap_or_default() {
                    if rules.get(&tick.feed).is_none() {
                        continue;
                    }
                    let price = SourcePrice {
                        quote: tick.quote,
                        update_data: tick.update_data,
                    };
                    let state = feeds.entry(tick.feed).or_default();
                    if state.offer(price, t, timing.max_staleness_ms) == Offer::Accepted {
                        changed.push(tick.feed);
                    }
                }
                // 5. A YES with no window open opens one, everywhere, one tick from now.
                let yes_now = changed.iter().any(|id| {
                    matches!(
                        (feeds.get(id), rules.get(id)),
                        (Some(feed), Some(rule)) if matches!(feed.decide(rule), Decision::Yes(_))
                    )
                });
                if yes_now && !schedule.is_open_at(t) {
                    notices_out.give(&caps[1], &mut vec![Notice::Yes { at: t }]);
                }
            }
            if external_done {
                // Input has ended: windows still open never close (see `agenda`).
                staged_notices.clear();
                pending.clear();
                agenda = Agenda::new(2);
            }
        }
    });

    sent.broadcast().connect_loop(loop_handle);
    assemble(parts)
}

fn entry(id: FeedId, source: &SourcePrice, reason: Reason) -> BatchEntry {
    BatchEntry {
        id,
        price: source.quote.price,
        conf: source.quote.conf,
        expo: source.quote.expo,
        publish_time: source.quote.publish_time,
        reason,
        update_data: source.update_data.clone(),
    }
}

/// Gathers every worker's share of a batch on one worker and numbers the batches.
fn assemble<'scope>(parts: StreamVec<'scope, u64, BatchPart>) -> StreamVec<'scope, u64, PushBatch> {
    parts.unary_frontier(
        Exchange::new(|_: &BatchPart| 0),
        "AssembleBatch",
        |_cap, _info| {
            let mut agenda = Agenda::new(1);
            let mut staged: BTreeMap<u64, Vec<BatchEntry>> = BTreeMap::new();
            let mut batches = 0u64;
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    agenda.data(&cap);
                    let slot = staged.entry(*cap.time()).or_default();
                    for part in data.drain(..) {
                        slot.extend(part.entries);
                    }
                });
                while let Some((t, caps)) = agenda.next(&[frontier]) {
                    let entries = staged.remove(&t).unwrap_or_default();
                    if entries.is_empty() {
                        continue;
                    }
                    batches += 1;
                    output
                        .session(&caps[0])
                        .give(PushBatch::new(batches, entries));
                }
            }
        },
    )
}
