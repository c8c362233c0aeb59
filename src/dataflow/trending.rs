//! Trending in timely: snapshots become a differential collection of (token, rank), whose
//! consolidated changes each token's state machine turns into events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use differential_dataflow::AsCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::operators::vec::Map;
use tracing::error;

use super::agenda::Agenda;
use super::route::route;
use crate::model::{BoostSnapshot, TokenRef};
use crate::ops::trending::{RankChange, SnapshotDiff, TokenTrend, TrendingEvent, TrendingParams};
use crate::store::trending::TrendingRecord;

/// What trending emits: journal events, and each changed token's state for the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrendingOut {
    /// A journal event.
    Event(TrendingEvent),
    /// A token's state after a change.
    Record(TrendingRecord),
}

/// A boost snapshot and its place in the DEX Screener source's ingest order (the envelope's
/// `seq`, counted the same live and in replay): two polls that land on one tick are applied
/// in the order they arrived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolledSnapshot {
    /// The envelope's position among the source's envelopes.
    pub seq: u64,
    /// The snapshot.
    pub snapshot: BoostSnapshot,
}

/// Runs trending over boost snapshots.
pub fn trending<'scope>(
    snapshots: StreamVec<'scope, u64, PolledSnapshot>,
    params: Arc<TrendingParams>,
) -> StreamVec<'scope, u64, TrendingOut> {
    let diff_params = Arc::clone(&params);
    // Snapshots form one sequence, so they meet on one worker and are diffed in time order.
    let updates = snapshots.unary_frontier(
        Exchange::new(|_: &PolledSnapshot| 0),
        "SnapshotDiff",
        move |_cap, _info| {
            let mut agenda = Agenda::new(1);
            let mut staged: BTreeMap<u64, Vec<PolledSnapshot>> = BTreeMap::new();
            let mut diff = SnapshotDiff::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    agenda.data(&cap);
                    staged.entry(*cap.time()).or_default().append(data);
                });
                while let Some((t, caps)) = agenda.next(&[frontier]) {
                    let mut snapshots = staged.remove(&t).unwrap_or_default();
                    // Two polls landing on one tick: in the order they arrived, whatever order
                    // the workers hand them over in.
                    snapshots.sort_by_key(|s| s.seq);
                    let mut session = output.session(&caps[0]);
                    for polled in snapshots {
                        for (row, d) in diff.next(&polled.snapshot, &diff_params) {
                            session.give((row, t, d));
                        }
                    }
                }
            }
        },
    );

    let changes = updates.as_collection().consolidate().inner;
    let pact = Exchange::new(|((token, _), _, _): &((TokenRef, u32), u64, isize)| route(token));
    changes.unary_frontier(pact, "Trending", move |_cap, _info| {
        let mut agenda = Agenda::new(1);
        let mut staged: BTreeMap<u64, Vec<(TokenRef, u32, isize)>> = BTreeMap::new();
        let mut tokens: HashMap<TokenRef, TokenTrend> = HashMap::new();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                for ((token, rank), t, d) in data.drain(..) {
                    agenda.data_for(t, &cap);
                    staged.entry(t).or_default().push((token, rank, d));
                }
            });
            while let Some((t, caps)) = agenda.next(&[frontier]) {
                let mut by_token: BTreeMap<TokenRef, Vec<(u32, isize)>> = BTreeMap::new();
                for (token, rank, d) in staged.remove(&t).unwrap_or_default() {
                    by_token.entry(token).or_default().push((rank, d));
                }
                let mut session = output.session(&caps[0]);
                for (token, updates) in by_token {
                    let change = match RankChange::from_updates(updates) {
                        Ok(Some(change)) => change,
                        Ok(None) => continue,
                        Err(e) => {
                            error!(token = %token, error = %e, "trending: impossible rank change; skipped");
                            continue;
                        }
                    };
                    let trend = tokens.entry(token.clone()).or_default();
                    for event in trend.apply(&token, t, change, &params) {
                        session.give(TrendingOut::Event(event));
                    }
                    session.give(TrendingOut::Record(TrendingRecord {
                        token: token.clone(),
                        trend: trend.clone(),
                        updated_ms: t,
                    }));
                }
                tokens.retain(|_, trend| !trend.is_evictable(t, &params));
            }
        }
    })
}

/// The journal events among trending's output.
pub fn events<'scope>(
    out: StreamVec<'scope, u64, TrendingOut>,
) -> StreamVec<'scope, u64, TrendingEvent> {
    out.flat_map(|o| match o {
        TrendingOut::Event(e) => Some(e),
        TrendingOut::Record(_) => None,
    })
}

/// The store records among trending's output.
pub fn records<'scope>(
    out: StreamVec<'scope, u64, TrendingOut>,
) -> StreamVec<'scope, u64, TrendingRecord> {
    out.flat_map(|o| match o {
        TrendingOut::Record(r) => Some(r),
        TrendingOut::Event(_) => None,
    })
}

/// The token an event is about.
pub fn token_of(event: &TrendingEvent) -> TokenRef {
    let (chain, address) = event.token();
    TokenRef {
        chain: Arc::from(chain),
        address: Arc::from(address),
    }
}
