//! Fusion in timely: per-asset state on the worker its asset routes to, staleness timers, and
//! marks for the assets the portfolio cares about.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;

use super::agenda::Agenda;
use super::route::route;
use crate::model::{Asset, Decimal, PriceTick};
use crate::ops::fusion::{AssetFusion, FusionParams, PriceDiscrepancy};

/// Start or stop sending marks for an asset (a token entered or left the trending list).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Interest {
    /// The asset.
    pub asset: Asset,
    /// True to start, false to stop.
    pub on: bool,
}

/// What fusion emits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FusionOut {
    /// Two fresh sources of an asset disagree.
    Discrepancy(PriceDiscrepancy),
    /// The fused price of an asset someone is interested in.
    Mark(Asset, Decimal),
}

/// Runs fusion over all prices; `interest` says which assets' fused prices to send on.
pub fn fusion<'scope>(
    prices: StreamVec<'scope, u64, PriceTick>,
    interest: StreamVec<'scope, u64, Interest>,
    params: Arc<FusionParams>,
    tick_ms: u64,
) -> StreamVec<'scope, u64, FusionOut> {
    let tick_ms = tick_ms.max(1);
    let prices_pact = Exchange::new(|p: &PriceTick| route(&p.asset));
    let interest_pact = Exchange::new(|i: &Interest| route(&i.asset));
    prices.binary_frontier(
        interest,
        prices_pact,
        interest_pact,
        "Fusion",
        move |_cap, _info| {
            let mut agenda = Agenda::new(1);
            let mut staged_prices: BTreeMap<u64, Vec<PriceTick>> = BTreeMap::new();
            let mut staged_interest: BTreeMap<u64, Vec<Interest>> = BTreeMap::new();
            let mut assets: HashMap<Asset, AssetFusion> = HashMap::new();
            let mut interested: BTreeSet<Asset> = BTreeSet::new();
            // One pending staleness timer per asset, at most: time → assets due then.
            let mut expiries: BTreeMap<u64, Vec<Asset>> = BTreeMap::new();
            let mut timer_of: HashMap<Asset, u64> = HashMap::new();
            move |(prices_in, prices_frontier), (interest_in, interest_frontier), output| {
                prices_in.for_each(|cap, data| {
                    agenda.data(&cap);
                    staged_prices.entry(*cap.time()).or_default().append(data);
                });
                interest_in.for_each(|cap, data| {
                    agenda.data(&cap);
                    staged_interest.entry(*cap.time()).or_default().append(data);
                });
                while let Some((t, caps)) = agenda.next(&[prices_frontier, interest_frontier]) {
                    let mut dirty: BTreeSet<Asset> = expiries
                        .remove(&t)
                        .unwrap_or_default()
                        .into_iter()
                        .collect();
                    for asset in &dirty {
                        timer_of.remove(asset);
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
                    for tick in staged_prices.remove(&t).unwrap_or_default() {
                        let asset = tick.asset.clone();
                        if assets.entry(asset.clone()).or_default().offer(&tick) {
                            dirty.insert(asset);
                        }
                    }
                    let mut session = output.session(&caps[0]);
                    for asset in dirty {
                        let Some(state) = assets.get_mut(&asset) else {
                            continue;
                        };
                        let step = state.evaluate(&asset, t, &params);
                        if let Some(event) = step.discrepancy {
                            session.give(FusionOut::Discrepancy(event));
                        }
                        if let Some(fused) = step.fused
                            && interested.contains(&asset)
                            && !newly_interested.contains(&asset)
                        {
                            session.give(FusionOut::Mark(asset.clone(), fused.price));
                        }
                        match step.next_expiry {
                            Some(expiry) if !timer_of.contains_key(&asset) => {
                                // Timers sit on ticks, so they add no timestamps of their own.
                                let due = expiry.max(t + 1).div_ceil(tick_ms) * tick_ms;
                                timer_of.insert(asset.clone(), due);
                                expiries.entry(due).or_default().push(asset.clone());
                                agenda.timer(due, &caps);
                            }
                            None if state.is_empty() => {
                                assets.remove(&asset);
                            }
                            _ => {}
                        }
                    }
                    // A new interest gets the current mark at once, so an entry has a price.
                    for asset in newly_interested {
                        if let Some(fused) = assets.get(&asset).and_then(AssetFusion::fused) {
                            session.give(FusionOut::Mark(asset, fused.price));
                        }
                    }
                }
            }
        },
    )
}
