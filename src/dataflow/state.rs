//! State writes: keep the latest record per key, and hand coalesced batches to the store.
//!
//! The store is a cache of latest values, so a write only matters until the next one for the
//! same key. [`coalesce`] keeps the latest record per key over every completed time and emits
//! them on a wall-clock interval (and at the end): a replay that completes thousands of times
//! in a second writes each key about once. The wall clock only decides *when* a cache write
//! happens, never *what* the computations decide, so determinism is untouched.

use rustc_hash::FxHashMap;
use std::time::{Duration, Instant};

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::{Capability, Operator};

use crate::sinks::store::StoreSender;
use crate::store::{StateRecord, StateWrite};

/// Keeps the latest `R` per key (by time, then [`StateRecord::supersedes`]) and emits their
/// writes for completed times every `flush_every`, and everything once the input ends.
pub fn coalesce<'scope, R: StateRecord>(
    records: StreamVec<'scope, u64, R>,
    flush_every: Duration,
) -> StreamVec<'scope, u64, StateWrite> {
    coalesce_with(records, Exchange::new(|r: &R| r.route()), flush_every)
}

/// As [`coalesce`], for records already on the worker that owns their key (an operator keyed
/// the same way produced them): no exchange.
pub fn coalesce_local<'scope, R: StateRecord>(
    records: StreamVec<'scope, u64, R>,
    flush_every: Duration,
) -> StreamVec<'scope, u64, StateWrite> {
    coalesce_with(records, Pipeline, flush_every)
}

fn coalesce_with<'scope, R, P>(
    records: StreamVec<'scope, u64, R>,
    pact: P,
    flush_every: Duration,
) -> StreamVec<'scope, u64, StateWrite>
where
    R: StateRecord,
    P: ParallelizationContract<u64, Vec<R>>,
{
    let scope = records.scope();
    records.unary_frontier(pact, "Coalesce", move |_cap, info| {
        let activator = scope.worker().activator_for(info.address.clone());
        let mut latest: FxHashMap<R::Key, (u64, R)> = FxHashMap::default();
        // Held at the earliest pending time, so emitting later stays legal.
        let mut held: Option<Capability<u64>> = None;
        let mut last_emit = Instant::now();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                let time = *cap.time();
                if held.as_ref().is_none_or(|h| time < *h.time()) {
                    held = Some(cap.retain(0));
                }
                for record in data.drain(..) {
                    let key = record.state_key();
                    match latest.get_mut(&key) {
                        Some((t, current)) => {
                            if time > *t || (time == *t && record.supersedes(current)) {
                                *t = time;
                                *current = record;
                            }
                        }
                        None => {
                            latest.insert(key, (time, record));
                        }
                    }
                }
            });
            let Some(cap) = held.as_mut() else { return };
            let ended = frontier.is_empty();
            if !ended && last_emit.elapsed() < flush_every {
                activator.activate_after(flush_every.saturating_sub(last_emit.elapsed()));
                return;
            }
            // Only completed times: a later record at an incomplete time may still replace one.
            let mut writes = Vec::new();
            let mut pending_min: Option<u64> = None;
            latest.retain(|_, (t, record)| {
                if ended || !frontier.less_equal(t) {
                    writes.push(record.to_write());
                    false
                } else {
                    pending_min = Some(pending_min.map_or(*t, |m| m.min(*t)));
                    true
                }
            });
            if !writes.is_empty() {
                output.session(&*cap).give_iterator(writes.into_iter());
            }
            last_emit = Instant::now();
            match pending_min {
                Some(t) => {
                    cap.downgrade(&t);
                    activator.activate_after(flush_every);
                }
                None => held = None,
            }
        }
    })
}

/// Sends state writes to the store thread from worker 0 (the only worker with a sender).
pub fn store_sink<'scope>(writes: StreamVec<'scope, u64, StateWrite>, sender: Option<StoreSender>) {
    writes.sink(
        Exchange::new(|_: &StateWrite| 0),
        "StoreSink",
        move |(input, _frontier)| {
            input.for_each(|_cap, data| {
                if let Some(sender) = &sender {
                    sender.send(std::mem::take(data));
                } else {
                    data.clear();
                }
            });
        },
    );
}
