//! The chain tap: chain reads and push batches, in time order on worker 0, handed to the
//! keeper task outside the dataflow, which sends transactions. What it does comes back in only
//! as the chain source's recorded `chain_tx` envelopes (see `chain::task`).

use std::collections::BTreeMap;

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Concat;
use timely::dataflow::operators::Operator;
use timely::dataflow::operators::vec::Map;

use super::debounce::FeedTick;
use crate::model::ChainTarget;
use crate::ops::debounce::PushBatch;
use crate::ops::keeper::{KeeperInput, SourceQuote};

/// Where the keeper's inputs go.
pub type ChainTap = tokio::sync::mpsc::UnboundedSender<KeeperInput>;

/// Sends `targets`, `sources` and `batches` to `tap` once their time is complete, in a
/// canonical order: per time, reads (by feed), sources, then batches (by number).
pub fn chain_tap<'scope>(
    targets: StreamVec<'scope, u64, ChainTarget>,
    sources: StreamVec<'scope, u64, FeedTick>,
    batches: StreamVec<'scope, u64, PushBatch>,
    tap: Option<ChainTap>,
) {
    let inputs = targets
        .map(KeeperInput::Target)
        .concat(sources.map(|t| {
            KeeperInput::Source(SourceQuote {
                feed: t.feed,
                quote: t.quote,
                update_data: t.update_data,
            })
        }))
        .concat(batches.map(KeeperInput::Batch));
    let mut staged: BTreeMap<u64, Vec<KeeperInput>> = BTreeMap::new();
    inputs.sink(
        Exchange::new(|_: &KeeperInput| 0),
        "ChainTap",
        move |(input, frontier)| {
            input.for_each_time(|cap, data| {
                let slot = staged.entry(*cap.time()).or_default();
                for batch in data {
                    slot.append(batch);
                }
            });
            while let Some(entry) = staged.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let mut inputs = entry.remove();
                inputs.sort_by_key(KeeperInput::order_key);
                if let Some(tap) = &tap {
                    for input in inputs {
                        // The keeper task gone (shutting down): nothing left to hand over to.
                        let _ = tap.send(input);
                    }
                }
            }
        },
    );
}
