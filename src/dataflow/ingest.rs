//! The ingest boundary: one timely source operator per source, holding that source's watermark.
//!
//! A [`Feed`] hands the operator envelopes and watermarks, from a live task over a channel or
//! from a recording. The operator emits each envelope at its quantized ingest time and keeps
//! one capability, downgraded to the (quantized) watermark: timely then computes the frontier
//! of the whole graph as the minimum over all sources' watermarks, with no extra code.
//!
//! Ending is part of the input. When a feed closes, the operator holds its capability at the
//! final watermark until everything before it is done (the completion probe), and only then
//! lets go. Every operator therefore sees the frontier pass the final watermark before it
//! becomes empty, so timers that fire "when the frontier passes t" fire identically in every
//! run, whatever the batching.

use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};
use timely::scheduling::{Activator, SyncActivator};

use super::route::tick_of;
use crate::model::{Envelope, Ingest, Source};

/// What a feed says after a pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedState {
    /// Nothing more right now; the feed activates the operator when there is.
    Waiting,
    /// More is ready: pull again soon.
    Ready,
    /// Nothing until others catch up: pull again after a short pause.
    Later,
    /// Nothing more, ever.
    Closed,
}

/// Where a source operator's envelopes come from.
pub trait Feed: 'static {
    /// Appends up to `budget` items to `out`, envelopes with their `seq` filled in.
    fn pull(&mut self, budget: usize, out: &mut Vec<Ingest>) -> FeedState;
}

/// Handles a source operator gives back to whoever feeds it.
pub struct SourceHandles {
    /// Wakes the operator from another thread (a live task).
    pub sync_activator: SyncActivator,
    /// Wakes the operator from this worker (a replay reader).
    pub activator: Activator,
}

/// Builds the source operator for `source`. With `feed == None` (a worker that does not own
/// the source) it releases its capability at once, so it never holds the frontier back.
///
/// `done` is the completion probe: at the end the operator waits for it to pass the final
/// watermark. `tick_ms` quantizes ingest times into dataflow times.
pub fn source_operator<'scope, F: Feed>(
    scope: Scope<'scope, u64>,
    origin: Source,
    feed: Option<F>,
    tick_ms: u64,
    done: ProbeHandle<u64>,
) -> (StreamVec<'scope, u64, Envelope>, SourceHandles) {
    let mut handles = None;
    let name = format!("Ingest({origin})");
    let stream =
        source::<_, CapacityContainerBuilder<Vec<Envelope>>, _, _>(scope, &name, |cap, info| {
            let address = info.address.to_vec();
            let activator = scope.worker().activator_for(info.address.clone());
            handles = Some(SourceHandles {
                sync_activator: scope.worker().sync_activator_for(address),
                activator: activator.clone(),
            });
            let mut state = SourceState {
                cap: feed.is_some().then_some(cap),
                feed,
                closing_at: None,
                watermark_ms: 0,
                max_time: 0,
                tick_ms,
                items: Vec::with_capacity(256),
            };
            move |output| {
                let Some(cap) = state.cap.as_mut() else {
                    return;
                };
                if let Some(final_time) = state.closing_at {
                    // Everything before the final watermark must be done before the frontier may
                    // become empty; see the module docs.
                    if done.less_than(&final_time) {
                        activator.activate_after(Duration::from_millis(1));
                    } else {
                        state.cap = None;
                    }
                    return;
                }
                let Some(feed) = state.feed.as_mut() else {
                    return;
                };
                let status = feed.pull(256, &mut state.items);
                let mut run: Option<(u64, Vec<Envelope>)> = None;
                for item in state.items.drain(..) {
                    match item {
                        Ingest::Envelope(env) => {
                            // A source never sends data older than its own watermark; clamp if one
                            // does, so the decision is recorded rather than a panic.
                            let t = tick_of(env.t_ms, state.tick_ms).max(*cap.time());
                            state.max_time = state.max_time.max(t);
                            match &mut run {
                                Some((time, batch)) if *time == t => batch.push(env),
                                _ => {
                                    if let Some((time, mut batch)) = run.take() {
                                        output
                                            .session(&cap.delayed(&time))
                                            .give_container(&mut batch);
                                    }
                                    run = Some((t, vec![env]));
                                }
                            }
                        }
                        Ingest::Watermark(w) => state.watermark_ms = state.watermark_ms.max(w),
                    }
                }
                if let Some((time, mut batch)) = run.take() {
                    output
                        .session(&cap.delayed(&time))
                        .give_container(&mut batch);
                }
                let watermark = tick_of(state.watermark_ms, state.tick_ms);
                if watermark > *cap.time() {
                    cap.downgrade(&watermark);
                }
                match status {
                    FeedState::Waiting => {}
                    FeedState::Ready => activator.activate(),
                    FeedState::Later => activator.activate_after(Duration::from_micros(200)),
                    FeedState::Closed => {
                        let final_time =
                            (*cap.time()).max(state.max_time.saturating_add(state.tick_ms));
                        cap.downgrade(&final_time);
                        state.closing_at = Some(final_time);
                        state.feed = None;
                        activator.activate();
                    }
                }
            }
        });
    // The constructor above runs synchronously inside `source`.
    let handles =
        handles.unwrap_or_else(|| unreachable!("timely runs source constructors eagerly"));
    (stream, handles)
}

struct SourceState<F> {
    cap: Option<Capability<u64>>,
    feed: Option<F>,
    closing_at: Option<u64>,
    watermark_ms: u64,
    max_time: u64,
    tick_ms: u64,
    items: Vec<Ingest>,
}
