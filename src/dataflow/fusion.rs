//! Fusion in timely: per-asset state on the worker its asset routes to, staleness timers, and
//! marks for the assets the portfolio cares about.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::agenda::Agenda;
use super::route::route;
use crate::model::{Asset, Decimal, PricePoint};
use crate::ops::fusion::{AssetFusion, FusionParams, PriceDiscrepancy};

/// Start or stop sending marks for an asset (a token entered or left the trending list).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Interest {
    /// The asset.
    pub asset: Asset,
    /// True to start, false to stop.
    pub on: bool,
}

/// What fusion decides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FusionOut {
    /// Two fresh sources of an asset disagree.
    Discrepancy(PriceDiscrepancy),
    /// The fused price of an asset someone is interested in.
    Mark(Asset, Decimal),
}

/// Fusion's two outputs.
pub struct Fusion<'scope> {
    /// Discrepancies and marks (few).
    pub out: StreamVec<'scope, u64, FusionOut>,
    /// Every price fusion took as the latest of its (asset, source), for the store (many).
    /// They are on the worker that owns their asset, so they need no further exchange.
    pub latest: StreamVec<'scope, u64, PricePoint>,
}

/// An asset's fusion state, and the last time it was marked for evaluation.
#[derive(Default)]
struct Slot {
    state: AssetFusion,
    dirty_at: Option<u64>,
}

/// Runs fusion over all prices; `interest` says which assets' fused prices to send on.
pub fn fusion<'scope>(
    prices: StreamVec<'scope, u64, PricePoint>,
    interest: StreamVec<'scope, u64, Interest>,
    params: Arc<FusionParams>,
    tick_ms: u64,
) -> Fusion<'scope> {
    let tick_ms = tick_ms.max(1);
    let mut builder = OperatorBuilder::new("Fusion".to_owned(), prices.scope());
    let mut prices_in = builder.new_input(prices, Exchange::new(|p: &PricePoint| route(&p.asset)));
    let mut interest_in =
        builder.new_input(interest, Exchange::new(|i: &Interest| route(&i.asset)));
    let (mut out_port, out) = builder.new_output::<Vec<FusionOut>>();
    let (mut latest_port, latest) = builder.new_output::<Vec<PricePoint>>();

    builder.build(move |initial| {
        // Every emission derives from the capability of the time being processed.
        drop(initial);
        let mut agenda = Agenda::new(2);
        let mut staged_prices: BTreeMap<u64, Vec<PricePoint>> = BTreeMap::new();
        let mut staged_interest: BTreeMap<u64, Vec<Interest>> = BTreeMap::new();
        let mut assets: FxHashMap<Asset, Slot> = FxHashMap::default();
        let mut interested: BTreeSet<Asset> = BTreeSet::new();
        // One pending staleness timer per asset, at most: time → assets due then.
        let mut expiries: BTreeMap<u64, Vec<Asset>> = BTreeMap::new();
        let mut timer_of: FxHashMap<Asset, u64> = FxHashMap::default();
        let (mut decided, mut taken) = (Vec::new(), Vec::new());
        move |frontiers| {
            prices_in.for_each(|cap, data| {
                agenda.data(&cap);
                staged_prices.entry(*cap.time()).or_default().append(data);
            });
            interest_in.for_each(|cap, data| {
                agenda.data(&cap);
                staged_interest.entry(*cap.time()).or_default().append(data);
            });
            let mut out_port = out_port.activate();
            let mut latest_port = latest_port.activate();
            while let Some((t, caps)) = agenda.next(&[&frontiers[0], &frontiers[1]]) {
                // Evaluation order does not matter: each asset is separate, and whoever reads
                // the output (journal, portfolio) orders it.
                let mut dirty: FxHashSet<Asset> = FxHashSet::default();
                for asset in expiries.remove(&t).unwrap_or_default() {
                    // An entry replaced by an earlier timer since is outdated: skip it.
                    if timer_of.get(&asset) == Some(&t) {
                        timer_of.remove(&asset);
                        dirty.insert(asset);
                    }
                }
                let mut newly_interested: BTreeSet<Asset> = BTreeSet::new();
                let mut changes = staged_interest.remove(&t).unwrap_or_default();
                changes.sort();
                for change in changes {
                    if change.on {
                        if interested.insert(change.asset.clone()) {
                            newly_interested.insert(change.asset);
                        }
                    } else {
                        interested.remove(&change.asset);
                        newly_interested.remove(&change.asset);
                    }
                }
                for point in staged_prices.remove(&t).unwrap_or_default() {
                    // One lookup per price: the slot itself remembers being dirty at `t`.
                    let slot = match assets.get_mut(&point.asset) {
                        Some(slot) => slot,
                        None => assets.entry(point.asset.clone()).or_default(),
                    };
                    if slot.state.offer(&point) {
                        if slot.dirty_at != Some(t) {
                            slot.dirty_at = Some(t);
                            dirty.insert(point.asset.clone());
                        }
                        taken.push(point);
                    }
                }
                for asset in dirty {
                    let Some(Slot { state, .. }) = assets.get_mut(&asset) else {
                        continue;
                    };
                    let step = state.evaluate(&asset, t, &params);
                    if let Some(event) = step.discrepancy {
                        decided.push(FusionOut::Discrepancy(event));
                    }
                    if let Some(fused) = step.fused
                        && interested.contains(&asset)
                        && !newly_interested.contains(&asset)
                    {
                        decided.push(FusionOut::Mark(asset.clone(), fused.price));
                    }
                    match step.next_expiry {
                        Some(expiry) => {
                            // Timers sit on ticks, so they add no timestamps of their own.
                            let due = expiry.max(t + 1).div_ceil(tick_ms) * tick_ms;
                            // One timer per asset, at its earliest expiry: a new price that
                            // goes stale sooner than the pending timer needs an earlier one.
                            if timer_of.get(&asset).is_none_or(|pending| due < *pending) {
                                timer_of.insert(asset.clone(), due);
                                expiries.entry(due).or_default().push(asset);
                                agenda.timer(due, &caps);
                            }
                        }
                        None if state.is_empty() => {
                            timer_of.remove(&asset);
                            assets.remove(&asset);
                        }
                        None => {}
                    }
                }
                // A new interest gets the current mark at once, so an entry has a price.
                for asset in newly_interested {
                    if let Some(fused) = assets.get(&asset).and_then(|slot| slot.state.fused()) {
                        decided.push(FusionOut::Mark(asset, fused.price));
                    }
                }
                out_port.give(&caps[0], &mut decided);
                latest_port.give(&caps[1], &mut taken);
                decided.clear();
                taken.clear();
            }
        }
    });

    Fusion { out, latest }
}
