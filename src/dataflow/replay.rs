//! Replay feeds: one recording read on each worker, split into one feed per source.
//!
//! Every worker reads the whole recording but keeps only its share of the envelopes
//! (`seq % peers == index`, per source), so parsing — most of the work — spreads over workers
//! without moving raw bytes between them. Every worker sees every watermark, so each worker's
//! source operators hold the same watermarks a live run held.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use timely::dataflow::ProbeHandle;
use timely::scheduling::Activator;

use super::ingest::{Feed, FeedState};
use crate::model::{Ingest, Source};
use crate::record::{Item, RecordError, RecordingReader};

/// How a replay ended, shared by the workers of a process.
#[derive(Debug, Default)]
pub struct ReplayOutcome {
    /// The first error any worker hit (a truncated tail is reported here too).
    pub error: Option<RecordError>,
}

/// Reads one recording for one worker and hands each source its items.
pub struct ReplayDemux {
    reader: Option<RecordingReader>,
    queues: Vec<VecDeque<Ingest>>,
    activators: Vec<Option<Activator>>,
    wanted: [bool; Source::ALL.len()],
    index: u64,
    peers: u64,
    frames_per_step: usize,
    lookahead_ms: u64,
    /// The last watermark read per source: what the sources have released.
    watermarks: [Option<u64>; Source::ALL.len()],
    done: ProbeHandle<u64>,
    exhausted: bool,
    outcome: Arc<Mutex<ReplayOutcome>>,
}

impl ReplayDemux {
    /// A demux for worker `index` of `peers`, keeping only the `wanted` sources. Without a
    /// reader every feed is closed from the start.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        reader: Option<RecordingReader>,
        wanted: [bool; Source::ALL.len()],
        index: usize,
        peers: usize,
        frames_per_step: usize,
        lookahead_ms: u64,
        done: ProbeHandle<u64>,
        outcome: Arc<Mutex<ReplayOutcome>>,
    ) -> Rc<RefCell<Self>> {
        let reader_missing = reader.is_none();
        Rc::new(RefCell::new(ReplayDemux {
            reader,
            queues: Source::ALL.iter().map(|_| VecDeque::new()).collect(),
            activators: Source::ALL.iter().map(|_| None).collect(),
            wanted,
            index: index as u64,
            peers: peers.max(1) as u64,
            frames_per_step,
            lookahead_ms,
            watermarks: [None; Source::ALL.len()],
            done,
            exhausted: reader_missing,
            outcome,
        }))
    }

    /// Registers the operator to wake when `source` has items.
    pub fn set_activator(&mut self, source: Source, activator: Activator) {
        self.activators[source.index()] = Some(activator);
    }

    /// A feed for `source` drawing from this demux.
    pub fn feed(this: &Rc<RefCell<Self>>, source: Source) -> ReplayFeed {
        ReplayFeed {
            demux: Rc::clone(this),
            source,
        }
    }

    /// True when completed output lags more than `lookahead_ms` behind what the sources have
    /// already released: reading further would only pile up data in flight.
    fn ahead_of_output(&self) -> bool {
        self.done
            .less_than(&self.released().saturating_sub(self.lookahead_ms))
    }

    /// What the sources have released so far: the least of their last watermarks.
    fn released(&self) -> u64 {
        Source::ALL
            .iter()
            .filter(|s| self.wanted[s.index()])
            .map(|s| self.watermarks[s.index()].unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    /// Reads up to `frames_per_step` frames into the queues, and no more than an eighth of the
    /// lookahead of recorded time, so that reading never outruns the lookahead in one go (the
    /// workers would then take turns waiting for each other); wakes the sources that got items.
    fn fill(&mut self) {
        let mut woken = [false; Source::ALL.len()];
        let slice_end = self.released().saturating_add(self.lookahead_ms / 8);
        let (index, peers, wanted) = (self.index, self.peers, self.wanted);
        for _ in 0..self.frames_per_step {
            let Some(reader) = self.reader.as_mut() else {
                self.finish(None);
                break;
            };
            let next = reader.next_where(|endpoint, seq| {
                wanted[endpoint.source().index()] && seq % peers == index
            });
            let (source, ingest) = match next {
                Ok(Some(Item::Envelope(env))) => (env.source(), Ingest::Envelope(env)),
                Ok(Some(Item::Watermark { source, t_ms })) => {
                    let seen = &mut self.watermarks[source.index()];
                    *seen = Some(seen.map_or(t_ms, |w| w.max(t_ms)));
                    (source, Ingest::Watermark(t_ms))
                }
                Ok(None) => {
                    self.finish(None);
                    break;
                }
                Err(e) => {
                    self.finish(Some(e));
                    break;
                }
            };
            if self.wanted[source.index()] {
                self.queues[source.index()].push_back(ingest);
                woken[source.index()] = true;
            }
            if self.released() > slice_end {
                break;
            }
        }
        if self.exhausted {
            woken = [true; Source::ALL.len()];
        }
        for (source, wake) in woken.iter().enumerate() {
            if *wake && let Some(activator) = &self.activators[source] {
                activator.activate();
            }
        }
    }

    fn finish(&mut self, error: Option<RecordError>) {
        self.exhausted = true;
        if let Some(error) = error
            && let Ok(mut outcome) = self.outcome.lock()
            && outcome.error.is_none()
        {
            outcome.error = Some(error);
        }
    }
}

/// One source's view of a [`ReplayDemux`].
pub struct ReplayFeed {
    demux: Rc<RefCell<ReplayDemux>>,
    source: Source,
}

impl Feed for ReplayFeed {
    fn pull(&mut self, budget: usize, out: &mut Vec<Ingest>) -> FeedState {
        let mut demux = self.demux.borrow_mut();
        let slot = self.source.index();
        if demux.queues[slot].is_empty() && !demux.exhausted {
            if demux.ahead_of_output() {
                // Give downstream (on every worker) time to catch up, without spinning.
                return FeedState::Ready;
            }
            demux.fill();
        }
        let queue = &mut demux.queues[slot];
        let take = queue.len().min(budget);
        out.extend(queue.drain(..take));
        if !queue.is_empty() {
            FeedState::Ready
        } else if demux.exhausted {
            FeedState::Closed
        } else {
            // Another source's items may be next in the file: keep reading.
            FeedState::Ready
        }
    }
}
