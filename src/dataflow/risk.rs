//! Risk in timely: the one paper portfolio, on one worker, stepped once per completed time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;

use super::agenda::Agenda;
use crate::model::{Asset, Decimal};
use crate::ops::risk::{Portfolio, RiskEvent};
use crate::store::risk::PortfolioRecord;

/// The worker the portfolio lives on (the journal and batch numbering live on worker 0, so
/// with two or more workers the portfolio gets a worker of its own).
const PORTFOLIO_WORKER: u64 = 1;

/// A trending entry or exit, as the portfolio sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Move {
    /// The asset.
    pub asset: Asset,
    /// True for an entry, false for an exit.
    pub entry: bool,
}

/// What the portfolio emits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RiskOut {
    /// A journal event.
    Event(RiskEvent),
    /// The portfolio after a change, for the store.
    Record(PortfolioRecord),
}

/// Runs the portfolio over fused marks and trending moves.
pub fn risk<'scope>(
    marks: StreamVec<'scope, u64, (Asset, Decimal)>,
    moves: StreamVec<'scope, u64, Move>,
    portfolio: Portfolio,
) -> StreamVec<'scope, u64, RiskOut> {
    let to_portfolio = |_: &(Asset, Decimal)| PORTFOLIO_WORKER;
    let moves_to_portfolio = |_: &Move| PORTFOLIO_WORKER;
    marks.binary_frontier(
        moves,
        Exchange::new(to_portfolio),
        Exchange::new(moves_to_portfolio),
        "Risk",
        move |_cap, _info| {
            let mut portfolio = portfolio;
            let mut agenda = Agenda::new(1);
            let mut staged_marks: BTreeMap<u64, Vec<(Asset, Decimal)>> = BTreeMap::new();
            let mut staged_moves: BTreeMap<u64, Vec<Move>> = BTreeMap::new();
            move |(marks_in, marks_frontier), (moves_in, moves_frontier), output| {
                marks_in.for_each(|cap, data| {
                    agenda.data(&cap);
                    staged_marks.entry(*cap.time()).or_default().append(data);
                });
                moves_in.for_each(|cap, data| {
                    agenda.data(&cap);
                    staged_moves.entry(*cap.time()).or_default().append(data);
                });
                while let Some((t, caps)) = agenda.next(&[marks_frontier, moves_frontier]) {
                    // One mark per asset (fusion sends at most one per time); keep the
                    // greatest if ever two arrive, so the choice never depends on arrival order.
                    let mut marks: BTreeMap<Asset, Decimal> = BTreeMap::new();
                    for (asset, price) in staged_marks.remove(&t).unwrap_or_default() {
                        let slot = marks.entry(asset).or_insert(price);
                        *slot = (*slot).max(price);
                    }
                    let marks: Vec<(Asset, Decimal)> = marks.into_iter().collect();
                    let mut moves = staged_moves.remove(&t).unwrap_or_default();
                    moves.sort();
                    moves.dedup();
                    let exits: Vec<Asset> = moves
                        .iter()
                        .filter(|m| !m.entry)
                        .map(|m| m.asset.clone())
                        .collect();
                    let entries: Vec<Asset> = moves
                        .iter()
                        .filter(|m| m.entry)
                        .map(|m| m.asset.clone())
                        .collect();
                    let events = portfolio.step(t, &marks, &exits, &entries);
                    // The stored portfolio changes with trades and with marks of held assets.
                    let changed = !events.is_empty()
                        || marks.iter().any(|(a, _)| portfolio.position(a).is_some());
                    let mut session = output.session(&caps[0]);
                    for event in events {
                        session.give(RiskOut::Event(event));
                    }
                    if changed {
                        session.give(RiskOut::Record(portfolio.to_record()));
                    }
                }
            }
        },
    )
}
