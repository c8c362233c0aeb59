//! The whole graph downstream of ingest: parsing, the computations, and the sinks.

use std::sync::Arc;
use std::time::Duration;

use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Probe};
use timely::dataflow::{ProbeHandle, StreamVec};

use super::journal::journal_sink;
use super::parse::{parse, ParseSettings};
use super::state::{coalesce, store_sink};
use super::stats::RunStats;
use crate::config::{Config, Pipeline, SinkKind};
use crate::model::journal::{InputEvent, JournalLine, SnapshotView, TargetView};
use crate::model::Envelope;
use crate::sinks::journal::JournalWriter;
use crate::sinks::store::StoreSender;

/// Settings every worker builds its graph from.
#[derive(Clone, Debug)]
pub struct Wiring {
    /// Parsing settings.
    pub parse: Arc<ParseSettings>,
    /// What the run wires.
    pub pipeline: Pipeline,
    /// Journal the normalised inputs too.
    pub journal_inputs: bool,
    /// Flush the journal after every completed time (live runs, so it can be tailed).
    pub flush_journal: bool,
    /// How often coalesced state is written.
    pub store_flush: Duration,
}

impl Wiring {
    /// Wiring from the configuration and the pipeline.
    pub fn new(config: &Config, pipeline: Pipeline) -> Result<Wiring, String> {
        let assets = config
            .asset_map()
            .map_err(|(index, problem)| format!("assets[{index}]: {problem}"))?;
        Ok(Wiring {
            parse: Arc::new(ParseSettings {
                assets,
                max_future_skew_ms: config.dataflow.max_future_skew_ms,
            }),
            pipeline,
            journal_inputs: config.journal.inputs,
            flush_journal: false,
            store_flush: Duration::from_millis(config.store.flush_interval_ms),
        })
    }
}

/// What a worker writes to: only worker 0 holds the journal writer and the store sender.
#[derive(Default)]
pub struct WorkerSinks {
    /// The journal file.
    pub journal: Option<JournalWriter>,
    /// The store thread.
    pub store: Option<StoreSender>,
}

/// Builds everything downstream of the ingest operators.
///
/// `spread` says whether envelopes still need spreading over workers (live) or already are
/// (replay). `done` is attached where every decision has been made, before the journal: the
/// completion probe the sources wait on at the end, and replay paces its reading by.
pub fn build<'scope>(
    envelopes: StreamVec<'scope, u64, Envelope>,
    spread: bool,
    wiring: &Wiring,
    sinks: WorkerSinks,
    stats: Arc<RunStats>,
    done: &ProbeHandle<u64>,
) {
    let parsed = parse(envelopes, Arc::clone(&wiring.parse), spread, Arc::clone(&stats));

    let mut lines: StreamVec<'scope, u64, JournalLine> = parsed
        .invalid
        .clone()
        .map(|x| JournalLine::of(&InputEvent::InvalidInput(&x)));
    if wiring.journal_inputs {
        let prices = parsed.prices.clone().map(|x| JournalLine::of(&InputEvent::price(&x)));
        let boosts = parsed
            .boosts
            .clone()
            .map(|x| JournalLine::of(&InputEvent::BoostSnapshot(SnapshotView::of(&x))));
        let targets = parsed
            .targets
            .clone()
            .map(|x| JournalLine::of(&InputEvent::ChainTarget(TargetView::of(&x))));
        lines = lines.concat(prices).concat(boosts).concat(targets);
    }

    if wiring.pipeline.writes(SinkKind::Store) {
        store_sink(coalesce(parsed.prices, wiring.store_flush), sinks.store);
    }

    let lines = lines.probe_with(done);
    if wiring.pipeline.writes(SinkKind::Journal) {
        journal_sink(lines, sinks.journal, wiring.flush_journal, stats);
    }
}
