//! The whole graph downstream of ingest: parsing, the computations, and the sinks.

use std::sync::Arc;
use std::time::Duration;

use timely::dataflow::operators::generic::operator::empty;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Probe};
use timely::dataflow::{ProbeHandle, StreamVec};

use super::chain::{ChainTap, chain_tap};
use super::debounce::{DebounceTiming, FeedTarget, debounce};
use super::fusion::{FusionOut, Interest, fusion};
use super::journal::journal_sink;
use super::parse::{ParseSettings, parse};
use super::risk::{Move, RiskOut, risk};
use super::state::{coalesce, coalesce_local, store_sink};
use super::stats::RunStats;
use super::trending::{events, records, token_of, trending};
use crate::config::{Computation, Config, Pipeline, SinkKind};
use crate::model::journal::{InputEvent, JournalLine, SnapshotView, TargetView};
use crate::model::{Envelope, Instrument};
use crate::ops::debounce::{FeedRules, Quote};
use crate::ops::fusion::FusionParams;
use crate::ops::risk::{Portfolio, RiskParams};
use crate::ops::trending::{TrendingEvent, TrendingParams};
use crate::sinks::journal::JournalWriter;
use crate::sinks::store::StoreSender;
use crate::store::StateWrite;

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
    /// The dataflow tick (ms).
    pub tick_ms: u64,
    /// Trending settings.
    pub trending: Arc<TrendingParams>,
    /// Fusion settings.
    pub fusion: Arc<FusionParams>,
    /// Debounce thresholds per feed.
    pub feed_rules: Arc<FeedRules>,
    /// Debounce timing.
    pub debounce: DebounceTiming,
    /// The portfolio a run starts from.
    pub portfolio: Portfolio,
}

impl Wiring {
    /// Wiring from the configuration and the pipeline.
    pub fn new(config: &Config, pipeline: Pipeline) -> Result<Wiring, String> {
        let assets = config
            .asset_map()
            .map_err(|(index, problem)| format!("assets[{index}]: {problem}"))?;
        let risk = RiskParams::from_config(&config.risk).map_err(|e| format!("risk: {e}"))?;
        Ok(Wiring {
            parse: Arc::new(ParseSettings {
                assets,
                max_future_skew_ms: config.dataflow.max_future_skew_ms,
                feed_rules: Arc::new(FeedRules::from_config(&config.debounce)),
                keep_ticks: config.journal.inputs,
            }),
            pipeline,
            journal_inputs: config.journal.inputs,
            flush_journal: false,
            store_flush: Duration::from_millis(config.store.flush_interval_ms),
            tick_ms: config.dataflow.tick_ms,
            trending: Arc::new(TrendingParams::from(&config.trending)),
            fusion: Arc::new(FusionParams::from(&config.fusion)),
            feed_rules: Arc::new(FeedRules::from_config(&config.debounce)),
            debounce: DebounceTiming {
                debounce_ms: config.debounce.debounce_ms,
                receipt_timeout_ms: config.debounce.receipt_timeout_ms,
                max_staleness_ms: config.debounce.max_staleness_secs.saturating_mul(1000),
                tick_ms: config.dataflow.tick_ms,
            },
            portfolio: Portfolio::new(risk),
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
    /// The keeper task (the `chain` sink).
    pub chain: Option<ChainTap>,
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
    let parsed = parse(
        envelopes,
        Arc::clone(&wiring.parse),
        spread,
        Arc::clone(&stats),
    );
    let scope = parsed.prices.scope();
    let runs = |c: Computation| wiring.pipeline.runs(c);

    let mut lines: StreamVec<'scope, u64, JournalLine> = parsed
        .invalid
        .clone()
        .map(|x| JournalLine::of(&InputEvent::InvalidInput(&x)));
    // What the keeper did: outcomes observed on chain, journaled whatever `journal.inputs` says.
    lines = lines.concat(parsed.chain_txs.map(|x| JournalLine(x.json)));
    let mut state: StreamVec<'scope, u64, StateWrite> = empty(scope);

    if wiring.journal_inputs {
        let prices = parsed
            .prices
            .clone()
            .map(|x| JournalLine::of(&InputEvent::price(&x)));
        let boosts = parsed
            .boosts
            .clone()
            .map(|x| JournalLine::of(&InputEvent::BoostSnapshot(SnapshotView::of(&x.snapshot))));
        let targets = parsed
            .targets
            .clone()
            .map(|x| JournalLine::of(&InputEvent::ChainTarget(TargetView::of(&x))));
        lines = lines.concat(prices).concat(boosts).concat(targets);
    }

    // Unmapped feeds' latest prices: cached where they were parsed (the store keeps the newest).
    state = state.concat(coalesce_local(parsed.solo_points, wiring.store_flush));

    // Trending: boost ranks into entries, exits, moves and momentum.
    let trend_events: StreamVec<'scope, u64, TrendingEvent> = if runs(Computation::Trending) {
        let out = trending(parsed.boosts.clone(), Arc::clone(&wiring.trending));
        state = state.concat(coalesce(records(out.clone()), wiring.store_flush));
        events(out)
    } else {
        empty(scope)
    };
    lines = lines.concat(trend_events.clone().map(|e| JournalLine::of(&e)));

    // Fusion: prices by asset; marks for the tokens the portfolio may hold.
    let assets = Arc::clone(&wiring.parse);
    let interest = trend_events.clone().flat_map(move |e| {
        let on = match &e {
            TrendingEvent::Entry { .. } => true,
            TrendingEvent::Exit { .. } => false,
            _ => return None,
        };
        let asset = assets.assets.resolve(&Instrument::Token(token_of(&e)));
        Some(Interest { asset, on })
    });
    let marks: StreamVec<'scope, u64, (crate::model::Asset, crate::model::Decimal)> =
        if runs(Computation::Fusion) {
            let fused = fusion(
                parsed.points,
                interest,
                Arc::clone(&wiring.fusion),
                wiring.tick_ms,
            );
            // The latest price per (asset, source), for the store: fusion already knows it.
            state = state.concat(coalesce_local(fused.latest, wiring.store_flush));
            lines = lines.concat(fused.out.clone().flat_map(|o| match o {
                FusionOut::Discrepancy(d) => Some(JournalLine::of(&d)),
                FusionOut::Mark(..) => None,
            }));
            fused.out.flat_map(|o| match o {
                FusionOut::Mark(asset, price) => Some((asset, price)),
                FusionOut::Discrepancy(_) => None,
            })
        } else {
            state = state.concat(coalesce(parsed.points, wiring.store_flush));
            empty(scope)
        };

    // Risk: the paper portfolio, marked by fused prices, trading trending entries and exits.
    if runs(Computation::Risk) {
        let assets = Arc::clone(&wiring.parse);
        let moves = trend_events.flat_map(move |e| {
            let entry = match &e {
                TrendingEvent::Entry { .. } => true,
                TrendingEvent::Exit { .. } => false,
                _ => return None,
            };
            let asset = assets.assets.resolve(&Instrument::Token(token_of(&e)));
            Some(Move { asset, entry })
        });
        let out = risk(marks, moves, wiring.portfolio.clone());
        lines = lines.concat(out.clone().flat_map(|o| match o {
            RiskOut::Event(e) => Some(JournalLine::of(&e)),
            RiskOut::Record(_) => None,
        }));
        let portfolio = out.flat_map(|o| match o {
            RiskOut::Record(r) => Some(r),
            RiskOut::Event(_) => None,
        });
        state = state.concat(coalesce(portfolio, wiring.store_flush));
    }

    // Debounce: Hermes prices of pushed feeds and chain reads into push batches.
    let chain_targets = parsed.targets.clone();
    let mut push_batches: StreamVec<'scope, u64, crate::ops::debounce::PushBatch> = empty(scope);
    let mut source_ticks = empty(scope);
    if runs(Computation::Debounce) {
        let ticks = parsed.feed_ticks;
        source_ticks = ticks.clone();
        let rules = Arc::clone(&wiring.feed_rules);
        let reads = parsed.targets.flat_map(move |target| {
            rules.get(&target.feed)?;
            Some(FeedTarget {
                feed: target.feed,
                price: target.price.map(Quote::from),
            })
        });
        let batches = debounce(
            ticks,
            reads,
            Arc::clone(&wiring.feed_rules),
            wiring.debounce,
        );
        push_batches = batches.clone();
        lines = lines.concat(batches.map(|b| JournalLine::of(&b)));
    }
    if wiring.pipeline.writes(SinkKind::Chain) {
        chain_tap(chain_targets, source_ticks, push_batches, sinks.chain);
    }

    if wiring.pipeline.writes(SinkKind::Store) {
        store_sink(state, sinks.store);
    }
    let lines = lines.probe_with(done);
    if wiring.pipeline.writes(SinkKind::Journal) {
        journal_sink(lines, sinks.journal, wiring.flush_journal, stats);
    }
}
