//! Per-update costs of each operator's pure computation: `cargo bench --bench operators`.
//!
//! Inputs are built once, outside the timed closures, from small synthetic recordings generated
//! in memory (`sluice::synth::generate` into a `RecordingWriter<Vec<u8>>`, read back with
//! `RecordingReader::from_bytes`), so every payload has the real wire format. Each iteration
//! processes a fixed batch; `Throughput::Elements` counts the unit named last in the benchmark
//! id (`parse/hermes_stream_16_feeds/feeds` counts feeds), so criterion's `thrpt` line is
//! updates per second and `1e9 / thrpt` is ns per update. The batch each benchmark runs is
//! printed to stderr before it starts.
//!
//! Groups:
//!
//! - `parse`: `parse_envelope` on Hermes stream events of 16 and of 500 feeds (elements =
//!   feeds), DEX Screener `/tokens/v1` pair bodies (elements = records), boost lists (elements
//!   = list entries; a list is one record) and Birdeye `multi_price` bodies (elements = records).
//! - `debounce`: `should_update` over a spread of cases (elements = cases); `FeedState::offer`
//!   and, when accepted, `decide` per Hermes tick of a recorded walk, with the keeper's chain
//!   reads and its own pushes folded in (elements = ticks).
//! - `fusion`: `AssetFusion::offer` and, when taken, `evaluate` per price of every asset the
//!   recording prices from two or more sources (elements = prices).
//! - `trending`: `SnapshotDiff::next`, consolidation per token and `TokenTrend::apply` per boost
//!   snapshot (elements = tokens in the snapshots).
//! - `risk`: `Portfolio::step` with one mark per held position (elements = marks).
//! - `recording`: writing every frame of a recording into a `Vec<u8>`, and reading it back
//!   (elements = bytes of the uncompressed frame stream, for both codecs).
//!
//! - `mesh`: a signed price message's rules and signature, one by one (`check`) and as one
//!   batch of 64 (`check_many`, what a node does with a burst) (elements = messages).
//!
//! A quick run: `cargo bench --bench operators -- --warm-up-time 1 --measurement-time 2`.

use std::collections::BTreeMap;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use sluice::config::{Config, UnlistedFeeds};
use sluice::dataflow::debounce::FeedTick;
use sluice::model::parse::{ParseContext, parse_envelope};
use sluice::model::{
    Asset, AssetMap, BoostSnapshot, Decimal, Endpoint, Envelope, FeedId, PricePoint, Record,
    TokenRef,
};
use sluice::ops::debounce::{
    Decision, EarlyThresholds, FeedRules, FeedState, Offer, Quote, Reason, SourcePrice, Thresholds,
    should_update,
};
use sluice::ops::fusion::{AssetFusion, FusionParams};
use sluice::ops::risk::{Fixed, Portfolio, RiskParams};
use sluice::ops::trending::{RankChange, SnapshotDiff, TokenTrend, TrendingParams};
use sluice::record::{Codec, Item, RecordingReader, RecordingWriter};
use sluice::synth::{self, SynthOptions};

/// A synthetic recording, generated in memory and read back.
struct Recorded {
    /// Every item in order (envelopes with their `seq`, and watermarks).
    items: Vec<Item>,
    /// The uncompressed recording.
    plain: Bytes,
}

impl Recorded {
    fn generate(minutes: u32, feeds: u32) -> Recorded {
        let opts = SynthOptions {
            minutes,
            feeds,
            // Clean payloads: the benchmarks measure the path good data takes.
            faults: false,
            ..SynthOptions::default()
        };
        let mut writer = RecordingWriter::new(Vec::new(), Codec::None, &synth::meta(&opts))
            .expect("start an in-memory recording");
        synth::generate(&opts, &mut writer).expect("generate a synthetic market");
        let plain = Bytes::from(writer.finish().expect("finish the recording"));
        let mut reader = RecordingReader::from_bytes(plain.clone()).expect("read it back");
        let mut items = Vec::new();
        while let Some(item) = reader.next_item().expect("a whole recording") {
            items.push(item);
        }
        Recorded { items, plain }
    }

    fn envelopes(&self) -> impl Iterator<Item = &Envelope> {
        self.items.iter().filter_map(|item| match item {
            Item::Envelope(env) => Some(env),
            Item::Watermark { .. } => None,
        })
    }

    fn of(&self, endpoint: Endpoint) -> Vec<Envelope> {
        self.envelopes()
            .filter(|env| env.endpoint == endpoint)
            .cloned()
            .collect()
    }
}

/// Everything the benchmarks share: configuration and two recordings.
struct Inputs {
    config: Config,
    assets: AssetMap,
    /// Two minutes, 16 Hermes feeds, 60 tokens.
    small: Recorded,
    /// One minute, 500 Hermes feeds.
    wide: Recorded,
}

impl Inputs {
    fn new() -> Inputs {
        let config = Config::load(None, &[]).expect("the default configuration");
        let assets = config.asset_map().expect("the default assets");
        Inputs {
            config,
            assets,
            small: Recorded::generate(2, 16),
            wide: Recorded::generate(1, 500),
        }
    }

    fn ctx(&self) -> ParseContext<'_> {
        ParseContext {
            assets: &self.assets,
            max_future_skew_ms: self.config.dataflow.max_future_skew_ms,
        }
    }

    /// Every record of every envelope, with the envelope's ingest time, in recording order.
    fn records(&self, recorded: &Recorded) -> Vec<(u64, Record)> {
        let ctx = self.ctx();
        let mut out = Vec::new();
        let mut all = Vec::new();
        for env in recorded.envelopes() {
            parse_envelope(env, &ctx, &mut out);
            all.extend(out.drain(..).map(|r| (env.t_ms, r)));
        }
        all
    }
}

fn count_prices(records: &[Record]) -> u64 {
    records
        .iter()
        .filter(|r| matches!(r, Record::Price(_)))
        .count() as u64
}

fn count_boost_entries(records: &[Record]) -> u64 {
    records
        .iter()
        .map(|r| match r {
            Record::Boosts(s) => s.entries.len() as u64,
            _ => 0,
        })
        .sum()
}

fn assert_clean(records: &[Record], what: &str) {
    let invalid = records
        .iter()
        .filter(|r| matches!(r, Record::Invalid(_)))
        .count();
    assert_eq!(invalid, 0, "{what}: the inputs should parse cleanly");
}

// ---------------------------------------------------------------------------------------------
// parse

/// Benchmarks `parse_envelope` over `envs`, each iteration parsing all of them; `count` picks
/// the elements out of one envelope's records.
fn bench_parse(
    c: &mut Criterion,
    inputs: &Inputs,
    id: &str,
    envs: &[Envelope],
    count: fn(&[Record]) -> u64,
) {
    let ctx = inputs.ctx();
    let mut out = Vec::new();
    let mut elements = 0;
    let mut bytes = 0;
    for env in envs {
        parse_envelope(env, &ctx, &mut out);
        assert_clean(&out, id);
        elements += count(&out);
        bytes += env.raw.len();
        out.clear();
    }
    assert!(elements > 0, "{id}: nothing to parse");
    eprintln!(
        "parse/{id}: one iteration = {} envelopes, {elements} elements, {:.1} KB",
        envs.len(),
        bytes as f64 / 1e3
    );
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(elements));
    group.bench_function(id, |b| {
        b.iter(|| {
            for env in envs {
                parse_envelope(black_box(env), &ctx, &mut out);
                black_box(&out);
                out.clear();
            }
        })
    });
    group.finish();
}

/// Hermes stream events carrying exactly `feeds` prices (full events, not the subsets), at
/// most `limit` of them.
fn hermes_events(inputs: &Inputs, recorded: &Recorded, feeds: u64, limit: usize) -> Vec<Envelope> {
    let ctx = inputs.ctx();
    let mut out = Vec::new();
    recorded
        .of(Endpoint::HermesStream)
        .into_iter()
        .filter(|env| {
            out.clear();
            parse_envelope(env, &ctx, &mut out);
            count_prices(&out) == feeds
        })
        .take(limit)
        .collect()
}

fn parse(c: &mut Criterion, inputs: &Inputs) {
    let narrow = hermes_events(inputs, &inputs.small, 16, 64);
    bench_parse(
        c,
        inputs,
        "hermes_stream_16_feeds/feeds",
        &narrow,
        count_prices,
    );
    let wide = hermes_events(inputs, &inputs.wide, 500, 16);
    bench_parse(
        c,
        inputs,
        "hermes_stream_500_feeds/feeds",
        &wide,
        count_prices,
    );
    let all = |records: &[Record]| records.len() as u64;
    bench_parse(
        c,
        inputs,
        "dexscreener_pairs/records",
        &inputs.small.of(Endpoint::DexscreenerTokens),
        all,
    );
    bench_parse(
        c,
        inputs,
        "dexscreener_boosts/entries",
        &inputs.small.of(Endpoint::DexscreenerBoosts),
        count_boost_entries,
    );
    bench_parse(
        c,
        inputs,
        "birdeye_multi_price/records",
        &inputs.small.of(Endpoint::BirdeyeMultiPrice),
        all,
    );
}

// ---------------------------------------------------------------------------------------------
// debounce

fn quote(price: i64, conf: u64, expo: i32, publish_time: i64) -> Quote {
    Quote {
        price,
        conf,
        expo,
        publish_time,
    }
}

/// A spread of cases through every branch of the rule, with BTC-sized mantissas.
fn should_update_cases() -> Vec<(Thresholds, Quote, Option<Quote>, Decision)> {
    let plain = Thresholds {
        time_difference_s: 60,
        price_deviation: Decimal::new(5, -1),
        confidence_ratio: Decimal::new(100, 0),
        early: None,
    };
    let early = Thresholds {
        early: Some(EarlyThresholds {
            price_deviation: Some(Decimal::new(1, -1)),
            ..EarlyThresholds::default()
        }),
        ..plain.clone()
    };
    let t = quote(9_712_346_678_901, 4_512_345_678, -8, 1_795_248_000);
    let moved = |bp: i64, after: i64| {
        quote(
            t.price + t.price / 10_000 * bp,
            t.conf,
            t.expo,
            t.publish_time + after,
        )
    };
    let yes = Decision::Yes;
    vec![
        (plain.clone(), moved(1, 1), None, yes(Reason::Initial)),
        (plain.clone(), moved(80, -1), Some(t), Decision::No),
        (plain.clone(), moved(60, 2), Some(t), yes(Reason::Deviation)),
        (
            plain.clone(),
            moved(-60, 2),
            Some(t),
            yes(Reason::Deviation),
        ),
        (plain.clone(), moved(2, 61), Some(t), yes(Reason::Heartbeat)),
        (
            plain.clone(),
            Quote {
                conf: t.price as u64 * 2,
                ..moved(1, 3)
            },
            Some(t),
            yes(Reason::Confidence),
        ),
        (plain.clone(), moved(3, 5), Some(t), Decision::Early),
        (plain.clone(), moved(-4, 0), Some(t), Decision::Early),
        (early.clone(), moved(5, 5), Some(t), Decision::No),
        (early.clone(), moved(20, 5), Some(t), Decision::Early),
        (early.clone(), moved(70, 5), Some(t), yes(Reason::Deviation)),
        // The same price with two more digits: no move; then a real one.
        (
            plain.clone(),
            quote(t.price * 100, t.conf * 100, -10, t.publish_time + 1),
            Some(t),
            Decision::Early,
        ),
        (
            plain.clone(),
            quote(t.price * 101, t.conf * 100, -10, t.publish_time + 1),
            Some(t),
            yes(Reason::Deviation),
        ),
        (
            plain.clone(),
            moved(0, 1),
            Some(quote(-5, 0, -8, t.publish_time)),
            Decision::Early,
        ),
        (
            plain,
            moved(0, 1),
            Some(quote(0, 0, -8, t.publish_time)),
            yes(Reason::Deviation),
        ),
    ]
}

/// One step of the debounce walk.
enum Step {
    /// A Hermes price for feed `.0`, seen at `.2`.
    Tick(usize, SourcePrice, u64),
    /// A chain read of feed `.0` at `.2`.
    Read(usize, Option<Quote>, u64),
}

/// Runs the walk on fresh feed states; returns the decisions taken.
fn debounce_walk(
    steps: &[Step],
    rules: &[Thresholds],
    staleness_ms: u64,
    receipt_ms: u64,
) -> [u64; 4] {
    let mut feeds = vec![FeedState::default(); rules.len()];
    let mut tally = [0u64; 4];
    for step in steps {
        match step {
            Step::Read(i, price, t) => feeds[*i].observe(*price, *t),
            Step::Tick(i, price, t) => {
                let feed = &mut feeds[*i];
                if feed.offer(price.clone(), *t, staleness_ms) != Offer::Accepted {
                    tally[3] += 1;
                    continue;
                }
                match feed.decide(&rules[*i]) {
                    Decision::Yes(_) => {
                        // What a closing window does: the price is the target from now on.
                        feed.pushed(price.quote, *t, receipt_ms);
                        tally[0] += 1;
                    }
                    Decision::Early => tally[1] += 1,
                    Decision::No => tally[2] += 1,
                }
            }
        }
    }
    tally
}

fn debounce(c: &mut Criterion, inputs: &Inputs) {
    let mut group = c.benchmark_group("debounce");

    let cases = should_update_cases();
    for (rule, source, target, expected) in &cases {
        assert_eq!(
            should_update(rule, source, target.as_ref()),
            *expected,
            "{source:?} against {target:?}"
        );
    }
    eprintln!(
        "debounce/should_update/cases: one iteration = {} cases",
        cases.len()
    );
    group.throughput(Throughput::Elements(cases.len() as u64));
    group.bench_function("should_update/cases", |b| {
        b.iter(|| {
            for (rule, source, target, _) in &cases {
                black_box(should_update(
                    black_box(rule),
                    black_box(source),
                    black_box(target.as_ref()),
                ));
            }
        })
    });

    // Every Hermes feed pushed (the unlisted ones with the defaults), so the walk covers all 16.
    let mut debounce_config = inputs.config.debounce.clone();
    debounce_config.unlisted_feeds = UnlistedFeeds::Defaults;
    let feed_rules = FeedRules::from_config(&debounce_config);
    let mut index: BTreeMap<FeedId, usize> = BTreeMap::new();
    let mut rules: Vec<Thresholds> = Vec::new();
    let mut slot = |feed: FeedId| {
        *index.entry(feed).or_insert_with(|| {
            rules.push(feed_rules.get(&feed).expect("every feed has rules").clone());
            rules.len() - 1
        })
    };
    let mut steps = Vec::new();
    let mut ticks = 0u64;
    for (t, record) in inputs.records(&inputs.small) {
        match record {
            Record::Price(tick) => {
                if let Some(feed_tick) = FeedTick::of(&tick, &feed_rules) {
                    let price = SourcePrice {
                        quote: feed_tick.quote,
                        update_data: feed_tick.update_data,
                    };
                    steps.push(Step::Tick(slot(feed_tick.feed), price, t));
                    ticks += 1;
                }
            }
            Record::Target(read) => {
                let i = slot(read.feed);
                steps.push(Step::Read(i, read.price.map(Quote::from), t));
            }
            _ => {}
        }
    }
    let staleness_ms = debounce_config.max_staleness_secs * 1000;
    let receipt_ms = debounce_config.receipt_timeout_ms;
    let [yes, early, no, refused] = debounce_walk(&steps, &rules, staleness_ms, receipt_ms);
    eprintln!(
        "debounce/offer_decide/ticks: one iteration = {ticks} ticks of {} feeds and {} chain reads; \
         {refused} offers refused (older or stale), decisions: {yes} yes, {early} early, {no} no",
        rules.len(),
        steps.len() as u64 - ticks,
    );
    group.throughput(Throughput::Elements(ticks));
    group.bench_function("offer_decide/ticks", |b| {
        b.iter(|| black_box(debounce_walk(&steps, &rules, staleness_ms, receipt_ms)))
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// fusion

fn fusion(c: &mut Criterion, inputs: &Inputs) {
    let params = FusionParams::from(&inputs.config.fusion);
    let points: Vec<(u64, PricePoint)> = inputs
        .records(&inputs.small)
        .into_iter()
        .filter_map(|(t, r)| match r {
            Record::Price(tick) => Some((t, PricePoint::from(tick))),
            _ => None,
        })
        .collect();
    // The assets priced by more than one source family: where fusion has work to do.
    let mut families: BTreeMap<&Asset, Vec<&'static str>> = BTreeMap::new();
    for (_, p) in &points {
        let seen = families.entry(&p.asset).or_default();
        if !seen.contains(&p.source.family()) {
            seen.push(p.source.family());
        }
    }
    let assets: Vec<Asset> = families
        .iter()
        .filter(|(_, f)| f.len() > 1)
        .map(|(a, _)| (*a).clone())
        .collect();
    let stream: Vec<(usize, u64, PricePoint)> = points
        .iter()
        .filter_map(|(t, p)| {
            let i = assets.iter().position(|a| *a == p.asset)?;
            Some((i, *t, p.clone()))
        })
        .collect();
    let sources: std::collections::BTreeSet<String> = stream
        .iter()
        .map(|(_, _, p)| p.source.to_string())
        .collect();

    let run = |states: &mut [AssetFusion]| {
        let (mut discrepancies, mut fused) = (0u64, 0u64);
        for (i, t, point) in &stream {
            let state = &mut states[*i];
            if state.offer(point) {
                let step = state.evaluate(&assets[*i], *t, &params);
                discrepancies += u64::from(step.discrepancy.is_some());
                fused += u64::from(step.fused.is_some());
                black_box(step);
            }
        }
        (discrepancies, fused)
    };
    let (discrepancies, fused) = run(&mut vec![AssetFusion::default(); assets.len()]);
    eprintln!(
        "fusion/offer_evaluate/prices: one iteration = {} prices of {} assets from {} sources; \
         {fused} fused changes, {discrepancies} discrepancies",
        stream.len(),
        assets.len(),
        sources.len()
    );
    assert!(!stream.is_empty(), "no multi-source asset in the recording");

    let mut group = c.benchmark_group("fusion");
    group.throughput(Throughput::Elements(stream.len() as u64));
    group.bench_function("offer_evaluate/prices", |b| {
        b.iter_batched_ref(
            || vec![AssetFusion::default(); assets.len()],
            |states| black_box(run(states)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// trending

#[derive(Clone, Default)]
struct Trending {
    diff: SnapshotDiff,
    tokens: BTreeMap<TokenRef, TokenTrend>,
}

impl Trending {
    /// One snapshot: diff, consolidate per token, apply. Returns the events.
    fn step(&mut self, t: u64, snapshot: &BoostSnapshot, params: &TrendingParams) -> usize {
        let mut by_token: BTreeMap<TokenRef, Vec<(u32, isize)>> = BTreeMap::new();
        for ((token, rank), diff) in self.diff.next(snapshot, params) {
            by_token.entry(token).or_default().push((rank, diff));
        }
        let mut events = 0;
        for (token, updates) in by_token {
            let Ok(Some(change)) = RankChange::from_updates(updates) else {
                continue;
            };
            let trend = match self.tokens.get_mut(&token) {
                Some(trend) => trend,
                None => self.tokens.entry(token.clone()).or_default(),
            };
            events += black_box(trend.apply(&token, t, change, params)).len();
        }
        events
    }
}

fn trending(c: &mut Criterion, inputs: &Inputs) {
    let params = TrendingParams::from(&inputs.config.trending);
    let snapshots: Vec<(u64, BoostSnapshot)> = inputs
        .records(&inputs.small)
        .into_iter()
        .filter_map(|(t, r)| match r {
            Record::Boosts(s) => Some((t, s)),
            _ => None,
        })
        .collect();
    assert!(snapshots.len() > 2, "too few boost snapshots");
    // The state after the first snapshot (all entries): the benchmark is the steady state.
    let mut warm = Trending::default();
    warm.step(snapshots[0].0, &snapshots[0].1, &params);
    let rest = &snapshots[1..];
    let tokens: u64 = rest.iter().map(|(_, s)| s.entries.len() as u64).sum();
    let mut probe = warm.clone();
    let events: usize = rest.iter().map(|(t, s)| probe.step(*t, s, &params)).sum();
    eprintln!(
        "trending/diff_apply/tokens: one iteration = {} snapshots, {tokens} tokens ({:.1} per \
         snapshot), {events} events",
        rest.len(),
        tokens as f64 / rest.len() as f64
    );

    let mut group = c.benchmark_group("trending");
    group.throughput(Throughput::Elements(tokens));
    group.bench_function("diff_apply/tokens", |b| {
        b.iter_batched_ref(
            || warm.clone(),
            |state| {
                for (t, snapshot) in rest {
                    black_box(state.step(*t, snapshot, &params));
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// risk

/// A small deterministic walk (xorshift), within ±2 % of the start: no stop is ever reached.
fn walk(seed: u64, len: usize) -> Vec<i64> {
    let mut x = seed | 1;
    let mut bp = 0i64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bp = (bp + (x % 21) as i64 - 10).clamp(-200, 200);
            bp
        })
        .collect()
}

fn risk(c: &mut Criterion, inputs: &Inputs) {
    const STEPS: usize = 100;
    // Tokens the recording lists, as the trending entries would name them.
    let mut held: Vec<Asset> = Vec::new();
    for (_, record) in inputs.records(&inputs.small) {
        if let Record::Boosts(snapshot) = record {
            for entry in snapshot.entries {
                let asset = Asset::Token(entry.token);
                if !held.contains(&asset) {
                    held.push(asset);
                }
            }
        }
    }
    let mut group = c.benchmark_group("risk");
    for (positions, percent) in [(8usize, "10"), (30, "3")] {
        assert!(held.len() >= positions, "too few tokens in the recording");
        let mut assets = held[..positions].to_vec();
        assets.sort();
        let mut params = RiskParams::from_config(&inputs.config.risk).expect("risk settings");
        params.max_positions = positions;
        params.base_position_percent = Fixed::parse(percent).expect("a percentage");
        let start: Vec<i64> = (0..positions)
            .map(|i| 1_000_000 + 37_911 * i as i64)
            .collect();
        let walks: Vec<Vec<i64>> = (0..positions)
            .map(|i| walk(0x9e37_79b9 + i as u64, STEPS))
            .collect();
        let mark = |i: usize, bp: i64| Decimal::new(start[i] + start[i] * bp / 10_000, -8);
        let steps: Vec<Vec<(Asset, Decimal)>> = (0..STEPS)
            .map(|k| {
                (0..positions)
                    .map(|i| (assets[i].clone(), mark(i, walks[i][k])))
                    .collect()
            })
            .collect();
        let t0 = 1_795_248_000_000u64;
        let mut warm = Portfolio::new(params);
        let opening: Vec<(Asset, Decimal)> = (0..positions)
            .map(|i| (assets[i].clone(), mark(i, 0)))
            .collect();
        warm.step(t0, &opening, &[], &assets);
        assert_eq!(warm.positions().count(), positions, "every entry bought");
        let mut probe = warm.clone();
        for (k, marks) in steps.iter().enumerate() {
            let events = probe.step(t0 + 1_000 * (k as u64 + 1), marks, &[], &[]);
            assert!(events.is_empty(), "marks only: no stop, no tier change");
        }
        let marks = (STEPS * positions) as u64;
        let id = format!("step_{positions}_positions/marks");
        eprintln!("risk/{id}: one iteration = {STEPS} steps x {positions} marks");
        group.throughput(Throughput::Elements(marks));
        group.bench_function(id, |b| {
            b.iter_batched_ref(
                || warm.clone(),
                |portfolio| {
                    for (k, marks) in steps.iter().enumerate() {
                        let t = t0 + 1_000 * (k as u64 + 1);
                        black_box(portfolio.step(t, black_box(marks), &[], &[]));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// recording

fn write_all(items: &[Item], codec: Codec, capacity: usize) -> Vec<u8> {
    let meta = sluice::record::RecordingMeta::default();
    let mut writer =
        RecordingWriter::new(Vec::with_capacity(capacity), codec, &meta).expect("start");
    for item in items {
        match item {
            Item::Envelope(env) => writer.write_envelope(env),
            Item::Watermark { source, t_ms } => writer.write_watermark(*source, *t_ms),
        }
        .expect("write to memory");
    }
    writer.finish().expect("finish")
}

fn read_all(bytes: &Bytes) -> u64 {
    let mut reader = RecordingReader::from_bytes(bytes.clone()).expect("a recording");
    let mut items = 0;
    while let Some(item) = reader.next_item().expect("a whole recording") {
        black_box(&item);
        items += 1;
    }
    items
}

fn recording(c: &mut Criterion, inputs: &Inputs) {
    let items = &inputs.small.items;
    let plain = Bytes::from(write_all(items, Codec::None, inputs.small.plain.len()));
    let zstd = Bytes::from(write_all(items, Codec::Zstd, plain.len() / 4));
    assert_eq!(read_all(&plain), items.len() as u64);
    assert_eq!(read_all(&zstd), items.len() as u64);
    eprintln!(
        "recording: one iteration = {} frames, {:.2} MB uncompressed ({:.2} MB zstd); \
         elements are uncompressed bytes for both codecs",
        items.len(),
        plain.len() as f64 / 1e6,
        zstd.len() as f64 / 1e6
    );
    let mut group = c.benchmark_group("recording");
    group.throughput(Throughput::Bytes(plain.len() as u64));
    for (name, codec) in [("none", Codec::None), ("zstd", Codec::Zstd)] {
        group.bench_function(format!("write_{name}/bytes"), |b| {
            b.iter(|| black_box(write_all(items, codec, plain.len())))
        });
    }
    for (name, bytes) in [("none", &plain), ("zstd", &zstd)] {
        group.bench_function(format!("read_{name}/bytes"), |b| {
            b.iter(|| black_box(read_all(bytes)))
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// mesh

fn mesh(c: &mut Criterion) {
    use ed25519_dalek::SigningKey;
    use sluice::model::parse::mesh::MeshPriceMessage;
    use sluice::ops::mesh::rules::{Policy, check, check_many};
    use sluice::ops::mesh::signed::{origin_hex, sign_wire};

    const NOW: i64 = 1_800_000_000_000;
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let origin = origin_hex(&key.verifying_key());
    let policy = Policy::new(std::slice::from_ref(&origin), 2048, 5_000, 60_000).expect("a key");
    let wires: Vec<Vec<u8>> = (0..64u64)
        .map(|seq| {
            let msg = MeshPriceMessage {
                v: 1,
                asset: "SOL".into(),
                mantissa: 14_000_000 + seq as i64,
                expo: -5,
                chain: Some("solana".into()),
                publish_ms: NOW - 1_000,
                change_24h: Some("-2.31".into()),
                origin: origin.clone(),
                seq,
            };
            sign_wire(&msg, &key).into_bytes()
        })
        .collect();
    let refs: Vec<&[u8]> = wires.iter().map(Vec::as_slice).collect();
    assert!(check_many(&refs, NOW, &policy).iter().all(Result::is_ok));
    eprintln!("mesh: one iteration = 64 signed price messages");
    let mut group = c.benchmark_group("mesh");
    group.throughput(Throughput::Elements(refs.len() as u64));
    group.bench_function("check_one_by_one/messages", |b| {
        b.iter(|| {
            for wire in &refs {
                let _ = black_box(check(wire, NOW, &policy));
            }
        })
    });
    group.bench_function("check_many_64/messages", |b| {
        b.iter(|| black_box(check_many(&refs, NOW, &policy)))
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------

fn operators(c: &mut Criterion) {
    let inputs = Inputs::new();
    parse(c, &inputs);
    debounce(c, &inputs);
    fusion(c, &inputs);
    trending(c, &inputs);
    risk(c, &inputs);
    recording(c, &inputs);
    mesh(c);
}

criterion_group!(benches, operators);
criterion_main!(benches);
