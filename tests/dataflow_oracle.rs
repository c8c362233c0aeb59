//! The timely operators for trending, fusion and risk against plain loops over their pure state
//! machines, on 1, 2 and 4 workers, with the inputs advanced every tick, every 7 ticks or all
//! at once (the model is section 2 of `debounce_oracle.rs`).
//!
//! Every harness advances all inputs to a final watermark `W` and steps until the probe passes
//! it before the inputs close (timers fire only while input is open), so the oracles process
//! exactly the times before `W`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use sluice::config::Config;
use sluice::dataflow::fusion::{Fusion, FusionOut, Interest, fusion};
use sluice::dataflow::risk::{Move, RiskOut, risk};
use sluice::dataflow::route;
use sluice::dataflow::trending::{PolledSnapshot, TrendingOut, trending};
use sluice::model::{Asset, BoostEntry, BoostSnapshot, Decimal, PricePoint, PriceSource, TokenRef};
use sluice::ops::fusion::{AssetFusion, FusionParams};
use sluice::ops::risk::{Portfolio, RiskParams};
use sluice::ops::trending::{RankChange, SnapshotDiff, TokenTrend, TrendingParams};
use sluice::store::trending::TrendingRecord;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;

// ---------------------------------------------------------------------------------------------
// The harness shared by the three tests.

/// Advance the inputs so many ticks at a time: effectively never before the final watermark.
const ALL_AT_ONCE: u64 = 1 << 40;

/// Proptest settings: few cases (every case runs timely), no regression file, and shrinking
/// bounded in time (a shrink step with four workers on a small machine can take a second).
fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        max_shrink_iters: 1_000,
        max_shrink_time: 20_000,
        ..ProptestConfig::default()
    }
}

fn workers() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), Just(2), Just(4)]
}

/// Advance the inputs every tick, every 7 ticks, or only to the final watermark.
fn batching() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), Just(7), Just(ALL_AT_ONCE)]
}

/// What the harness asks of a worker's input handles.
enum Drive {
    /// Advance every input to this time.
    Advance(u64),
    /// Send the input at this position (at the time the inputs were just advanced to).
    Send(usize),
}

/// Feeds inputs at `times` (non-decreasing) spread over the workers by position, advancing all
/// inputs and completing everything before a time every `batch` ticks; then advances to
/// `final_watermark` and steps until the probe has passed it. The inputs close when the caller
/// drops them, after this returns.
fn drive(
    worker: &mut Worker,
    probe: &ProbeHandle<u64>,
    times: &[u64],
    tick: u64,
    batch: u64,
    final_watermark: u64,
    mut input: impl FnMut(Drive),
) {
    let (index, peers) = (worker.index(), worker.peers());
    let mut time = 0u64;
    for (position, &t) in times.iter().enumerate() {
        if t >= time.saturating_add(batch.saturating_mul(tick)) {
            time = t;
            input(Drive::Advance(time));
            worker.step_while(|| probe.less_than(&time));
        }
        if position % peers == index {
            input(Drive::Advance(t));
            input(Drive::Send(position));
        }
    }
    input(Drive::Advance(final_watermark));
    worker.step_while(|| probe.less_than(&final_watermark));
}

/// A canonical, comparable form of an output.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("outputs serialize")
}

// ---------------------------------------------------------------------------------------------
// 1. Trending: snapshots → differential (token, rank) → per-token state machines.

const TREND_TICK: u64 = 1_000;
const TREND_T0: u64 = 1_800_000_000_000;

/// Twelve valid Solana tokens (base58 of 32 bytes) and two valid EVM ones.
fn token_pool() -> impl Strategy<Value = Vec<TokenRef>> {
    (
        prop::collection::vec(any::<[u8; 32]>(), 12),
        prop::collection::vec(any::<[u8; 20]>(), 2),
    )
        .prop_map(|(solana, evm)| {
            let pool: BTreeSet<TokenRef> = solana
                .iter()
                .map(|bytes| TokenRef::parse("solana", &bs58::encode(bytes).into_string()))
                .chain(evm.iter().enumerate().map(|(i, bytes)| {
                    // One in upper case: EVM addresses are kept lower-case.
                    let hex = hex::encode(bytes);
                    let hex = if i == 0 { hex.to_uppercase() } else { hex };
                    TokenRef::parse(["base", "ethereum"][i], &format!("0x{hex}"))
                }))
                .map(|t| t.expect("generated addresses are valid"))
                .collect();
            pool.into_iter().collect()
        })
}

fn trending_params() -> impl Strategy<Value = TrendingParams> {
    (
        3u32..=10,
        prop::sample::select(vec![5_000u64, 20_000, 60_000]),
        1i64..=20,
        0i64..=20,
        1usize..=6,
    )
        .prop_map(
            |(min_rank, window, high, rearm, max_history)| TrendingParams {
                min_trending_rank: min_rank,
                velocity_window_ms: window,
                high_momentum: Decimal::new(high, 0),
                rearm: Decimal::new(rearm.min(high), 0),
                max_history,
            },
        )
}

#[derive(Clone, Debug)]
struct TrendingCase {
    params: TrendingParams,
    /// Snapshots with their (tick) times, in time order; some share a time.
    snapshots: Vec<(u64, BoostSnapshot)>,
}

fn trending_case() -> impl Strategy<Value = TrendingCase> {
    let step = (
        prop_oneof![1 => Just(0u64), 6 => 1u64..=12, 2 => 13u64..=80],
        // A fresh list half the time; otherwise the previous list with one token moved, so
        // that stints last and velocities build up.
        any::<bool>(),
        // Pool indices in list order (repeats list a token twice), or the move (from, to).
        prop::collection::vec(0usize..14, 0..=11),
        (0usize..12, 0usize..12),
        // Rank gaps (invalid items the parser dropped), mostly none.
        prop::collection::vec(prop_oneof![8 => Just(0u32), 1 => 1u32..=3], 12),
        0i64..1_000,
    );
    (
        token_pool(),
        trending_params(),
        prop::collection::vec(step, 1..40),
    )
        .prop_map(|(pool, params, steps)| {
            let mut t = TREND_T0;
            let mut list: Vec<usize> = Vec::new();
            let snapshots = steps
                .into_iter()
                .map(|(gap, fresh, picks, (from, to), gaps, amount)| {
                    t += gap * TREND_TICK;
                    if fresh || list.is_empty() {
                        list = picks;
                    } else {
                        let token = list.remove(from % list.len());
                        list.insert(to % (list.len() + 1), token);
                    }
                    let mut rank = 0u32;
                    let entries = list
                        .iter()
                        .zip(&gaps)
                        .map(|(&i, &g)| {
                            rank += 1 + g;
                            BoostEntry {
                                token: pool[i % pool.len()].clone(),
                                rank,
                                total_amount: Decimal::new(amount, 0),
                            }
                        })
                        .collect();
                    (t, BoostSnapshot { entries })
                })
                .collect();
            TrendingCase { params, snapshots }
        })
}

type TrendingResult = (Vec<(u64, String)>, Vec<(u64, TrendingRecord)>);

/// The worker a token's state lives on.
fn worker_of(token: &TokenRef, peers: usize) -> u64 {
    route(token) % peers as u64
}

/// The plain loop: per time, in time order, the snapshots in the operator's fixed order,
/// diffed, consolidated by hand, one change per token in token order.
///
/// The operator drops evictable token states (exited more than a window ago) after each time
/// it processes, on the worker that processed it; a worker processes only times where one of
/// its tokens changed. Events do not depend on that, but a record written after a re-entry
/// carries the history only if the state was not evicted, so the loop models the eviction on
/// `peers` workers exactly (see `trending_records_do_not_depend_on_the_worker_count`).
fn trending_oracle(case: &TrendingCase, final_watermark: u64, peers: usize) -> TrendingResult {
    let params = &case.params;
    let mut by_time: BTreeMap<u64, Vec<BoostSnapshot>> = BTreeMap::new();
    for (t, snapshot) in &case.snapshots {
        by_time.entry(*t).or_default().push(snapshot.clone());
    }
    let mut diff = SnapshotDiff::new();
    let mut tokens: BTreeMap<TokenRef, TokenTrend> = BTreeMap::new();
    let (mut events, mut records) = (Vec::new(), Vec::new());
    // Snapshots of one time are applied in the order they came (their position).
    for (t, snapshots) in by_time {
        if t >= final_watermark {
            break;
        }
        let mut net: BTreeMap<(TokenRef, u32), isize> = BTreeMap::new();
        for snapshot in &snapshots {
            for (row, d) in diff.next(snapshot, params) {
                *net.entry(row).or_default() += d;
            }
        }
        let mut by_token: BTreeMap<TokenRef, Vec<(u32, isize)>> = BTreeMap::new();
        for ((token, rank), d) in net {
            if d != 0 {
                by_token.entry(token).or_default().push((rank, d));
            }
        }
        let active: BTreeSet<u64> = by_token.keys().map(|k| worker_of(k, peers)).collect();
        for (token, updates) in by_token {
            let change = RankChange::from_updates(updates.clone())
                .unwrap_or_else(|e| panic!("{token}: {updates:?} at {t}: {e}"))
                .expect("a non-zero consolidated update is a change");
            let trend = tokens.entry(token.clone()).or_default();
            for event in trend.apply(&token, t, change, params) {
                events.push((t, json(&event)));
            }
            records.push((
                t,
                TrendingRecord {
                    token: token.clone(),
                    trend: trend.clone(),
                    updated_ms: t,
                },
            ));
        }
        tokens.retain(|token, trend| {
            !active.contains(&worker_of(token, peers)) || !trend.is_evictable(t, params)
        });
    }
    events.sort();
    records.sort_by(|a, b| (a.0, &a.1.token).cmp(&(b.0, &b.1.token)));
    (events, records)
}

fn trending_dataflow(
    case: &TrendingCase,
    final_watermark: u64,
    workers: usize,
    batch: u64,
) -> TrendingResult {
    let out: Arc<Mutex<Vec<(u64, TrendingOut)>>> = Arc::default();
    let sink = Arc::clone(&out);
    let snapshots = case.snapshots.clone();
    let params = Arc::new(case.params);
    timely::execute(timely::Config::process(workers), move |worker| {
        let mut input: InputHandle<u64, CapacityContainerBuilder<Vec<PolledSnapshot>>> =
            InputHandle::new();
        let probe = ProbeHandle::new();
        let sink = Arc::clone(&sink);
        let params = Arc::clone(&params);
        worker.dataflow::<u64, _, _>(|scope| {
            trending(scope.input_from(&mut input), params)
                .inspect_time(move |t, o| sink.lock().unwrap().push((*t, o.clone())))
                .probe_with(&probe);
        });
        let times: Vec<u64> = snapshots.iter().map(|(t, _)| *t).collect();
        drive(
            worker,
            &probe,
            &times,
            TREND_TICK,
            batch,
            final_watermark,
            |step| match step {
                Drive::Advance(t) => input.advance_to(t),
                Drive::Send(i) => input.send(PolledSnapshot {
                    seq: i as u64,
                    snapshot: snapshots[i].1.clone(),
                }),
            },
        );
    })
    .unwrap();
    let (mut events, mut records) = (Vec::new(), Vec::new());
    for (t, o) in std::mem::take(&mut *out.lock().unwrap()) {
        match o {
            TrendingOut::Event(e) => events.push((t, json(&e))),
            TrendingOut::Record(r) => records.push((t, r)),
        }
    }
    events.sort();
    records.sort_by(|a, b| (a.0, &a.1.token).cmp(&(b.0, &b.1.token)));
    (events, records)
}

/// The last record of every token.
fn last_records(records: &[(u64, TrendingRecord)]) -> BTreeMap<TokenRef, TrendingRecord> {
    records
        .iter()
        .map(|(_, r)| (r.token.clone(), r.clone()))
        .collect()
}

proptest! {
    #![proptest_config(cases(40))]
    #[test]
    fn trending_equals_the_plain_loop(
        case in trending_case(),
        workers in workers(),
        batch in batching(),
        tail_ticks in 1u64..100,
    ) {
        let last = case.snapshots.last().map_or(TREND_T0, |(t, _)| *t);
        let final_watermark = last + tail_ticks * TREND_TICK;
        let (events, records) = trending_dataflow(&case, final_watermark, workers, batch);
        let (expected_events, expected_records) = trending_oracle(&case, final_watermark, workers);
        prop_assert_eq!(&events, &expected_events);
        prop_assert_eq!(last_records(&records), last_records(&expected_records));
        prop_assert_eq!(&records, &expected_records);
    }
}

/// A Solana token from a seed byte.
fn sol(seed: u8) -> TokenRef {
    TokenRef::parse("solana", &bs58::encode([seed; 32]).into_string()).unwrap()
}

/// A snapshot listing `tokens` at ranks 1, 2, ...
fn listing(tokens: &[&TokenRef]) -> BoostSnapshot {
    BoostSnapshot {
        entries: tokens
            .iter()
            .zip(1..)
            .map(|(token, rank)| BoostEntry {
                token: (*token).clone(),
                rank,
                total_amount: Decimal::ZERO,
            })
            .collect(),
    }
}

/// A token exits; more than a velocity window later another token changes; then the first
/// re-enters. On one worker the other token's change evicts the first token's state, so its
/// record after the re-entry has a one-entry history; on two workers (the tokens on different
/// workers) it keeps the whole history. Events agree; the stored records do not.
///
/// Fails while eviction depends on which other tokens share a worker: the stored history of a
/// re-entering token then depends on the worker count.
#[test]
fn trending_records_do_not_depend_on_the_worker_count() {
    let a = sol(1);
    let b = (2..=u8::MAX)
        .map(sol)
        .find(|b| worker_of(b, 2) != worker_of(&a, 2))
        .unwrap();
    let case = TrendingCase {
        params: TrendingParams {
            min_trending_rank: 10,
            velocity_window_ms: 5_000,
            high_momentum: Decimal::new(100, 0),
            rearm: Decimal::new(1, 0),
            max_history: 10,
        },
        snapshots: vec![
            (TREND_T0, listing(&[&a])),
            (TREND_T0 + 1_000, listing(&[])),
            (TREND_T0 + 10_000, listing(&[&b])),
            (TREND_T0 + 11_000, listing(&[&a])),
        ],
    };
    let final_watermark = TREND_T0 + 20_000;
    let (events_1, records_1) = trending_dataflow(&case, final_watermark, 1, 1);
    let (events_2, records_2) = trending_dataflow(&case, final_watermark, 2, 1);
    assert_eq!(events_1, events_2);
    // 1 worker: a's state was evicted at +10 s (b's change ran on its worker), so its record
    // after the re-entry holds one position and one event; 2 workers: nothing ran on a's worker
    // at +10 s, so it holds two positions and three events (entry, exit, entry).
    let last_a = |records: &[(u64, TrendingRecord)]| last_records(records)[&a].clone();
    assert_eq!(
        last_a(&records_1),
        last_a(&records_2),
        "a's stored record after its re-entry, on 1 worker (left) and on 2 (right)"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Fusion: per-asset state, staleness timers, marks for interesting assets.

const FUSION_TICK: u64 = 100;
const FUSION_T0: u64 = 1_800_000_000_000;

const FUSION_ASSETS: [(&str, i64, i32); 3] = [
    ("SOL", 14_000, -2),
    ("BTC", 6_512_345, -2),
    ("WIF", 2_345, -3),
];

fn fusion_source(i: usize) -> PriceSource {
    match i {
        0 => PriceSource::Hermes,
        1 => PriceSource::Birdeye,
        2 => PriceSource::Dexscreener,
        3 => PriceSource::Mesh(Arc::from("aa01")),
        _ => PriceSource::Mesh(Arc::from("bb02")),
    }
}

fn fusion_params(threshold: i64) -> FusionParams {
    FusionParams {
        order: ["hermes", "mesh", "birdeye", "dexscreener"]
            .map(String::from)
            .to_vec(),
        threshold: Decimal::new(threshold, 0),
        clear: Decimal::new(threshold * 10 - 5, -1),
        staleness_ms: [
            ("hermes", 3_000),
            ("mesh", 5_000),
            ("birdeye", 6_000),
            ("dexscreener", 8_000),
        ]
        .into_iter()
        .map(|(f, s)| (f.to_owned(), s))
        .collect(),
        max_skew_ms: 2_000,
    }
}

#[derive(Clone, Debug)]
enum FusionIn {
    Price(u64, PricePoint),
    Interest(u64, Interest),
}

impl FusionIn {
    fn time(&self) -> u64 {
        match self {
            FusionIn::Price(t, _) | FusionIn::Interest(t, _) => *t,
        }
    }
}

fn fusion_inputs() -> impl Strategy<Value = Vec<FusionIn>> {
    let step = (
        prop_oneof![2 => Just(0u64), 5 => 1u64..=5, 2 => 6u64..=60],
        0u8..6,
        0usize..3,
        0usize..5,
        // Price deviation from the asset's base, in basis points: mostly within 1 %, sometimes
        // several percent.
        prop_oneof![6 => -100i64..=100, 3 => -600i64..=600],
        // Publish time before the ingest time (ms, not on ticks): mostly recent, sometimes
        // slightly ahead, sometimes older than the staleness.
        prop_oneof![6 => -200i64..=1_500, 2 => 1_500i64..=12_000],
        prop::bool::weighted(0.15),
    );
    prop::collection::vec(step, 1..100).prop_map(|steps| {
        let mut t = FUSION_T0;
        steps
            .into_iter()
            .map(|(gap, kind, asset, source, dev_bp, age, rescale)| {
                t += gap * FUSION_TICK;
                let (name, base, expo) = FUSION_ASSETS[asset];
                if kind == 0 {
                    return FusionIn::Interest(
                        t,
                        Interest {
                            asset: Asset::named(name),
                            on: source < 3,
                        },
                    );
                }
                let mantissa = base * (10_000 + dev_bp) / 10_000;
                // The same value written with one more digit now and then.
                let price = if rescale {
                    Decimal::new(mantissa * 10, expo - 1)
                } else {
                    Decimal::new(mantissa, expo)
                };
                FusionIn::Price(
                    t,
                    PricePoint {
                        asset: Asset::named(name),
                        source: fusion_source(source),
                        price,
                        publish_ms: t as i64 - age,
                        change_24h: None,
                        chain: None,
                    },
                )
            })
            .collect()
    })
}

type LatestKey = (Asset, PriceSource);
type FusionResult = (Vec<(u64, String)>, BTreeMap<LatestKey, PricePoint>);

/// Brute force: every asset with state is evaluated at every tick from the first input to the
/// final watermark. The operator evaluates only when a price is taken or one goes stale; since
/// an evaluation changes nothing unless the set of fresh prices changed, the outputs agree.
fn fusion_oracle(inputs: &[FusionIn], params: &FusionParams, final_watermark: u64) -> FusionResult {
    let mut prices: BTreeMap<u64, Vec<PricePoint>> = BTreeMap::new();
    let mut interests: BTreeMap<u64, Vec<Interest>> = BTreeMap::new();
    for input in inputs {
        match input {
            FusionIn::Price(t, p) => prices.entry(*t).or_default().push(p.clone()),
            FusionIn::Interest(t, i) => interests.entry(*t).or_default().push(i.clone()),
        }
    }
    let mut assets: BTreeMap<Asset, AssetFusion> = BTreeMap::new();
    let mut interested: BTreeSet<Asset> = BTreeSet::new();
    let mut latest: BTreeMap<LatestKey, PricePoint> = BTreeMap::new();
    let mut out = Vec::new();
    let Some(first) = inputs.first().map(FusionIn::time) else {
        return (out, latest);
    };
    let mut t = first;
    while t < final_watermark {
        // Interest changes in their sorted order (an off and an on at one time: off first).
        let mut newly: BTreeSet<Asset> = BTreeSet::new();
        let mut changes = interests.remove(&t).unwrap_or_default();
        changes.sort();
        for change in changes {
            if change.on {
                if interested.insert(change.asset.clone()) {
                    newly.insert(change.asset);
                }
            } else {
                interested.remove(&change.asset);
                newly.remove(&change.asset);
            }
        }
        for point in prices.remove(&t).unwrap_or_default() {
            if assets.entry(point.asset.clone()).or_default().offer(&point) {
                latest.insert((point.asset.clone(), point.source.clone()), point);
            }
        }
        for (asset, state) in &mut assets {
            let step = state.evaluate(asset, t, params);
            if let Some(event) = step.discrepancy {
                out.push((t, json(&FusionOut::Discrepancy(event))));
            }
            if let Some(fused) = step.fused
                && interested.contains(asset)
                && !newly.contains(asset)
            {
                out.push((t, json(&FusionOut::Mark(asset.clone(), fused.price))));
            }
        }
        assets.retain(|_, state| !state.is_empty());
        for asset in newly {
            if let Some(fused) = assets.get(&asset).and_then(AssetFusion::fused) {
                out.push((t, json(&FusionOut::Mark(asset, fused.price))));
            }
        }
        t += FUSION_TICK;
    }
    out.sort();
    (out, latest)
}

fn fusion_dataflow(
    inputs: &[FusionIn],
    params: &FusionParams,
    final_watermark: u64,
    workers: usize,
    batch: u64,
) -> FusionResult {
    type Sink<T> = Arc<Mutex<Vec<(u64, T)>>>;
    let out: Sink<FusionOut> = Arc::default();
    let latest: Sink<PricePoint> = Arc::default();
    let (out_sink, latest_sink) = (Arc::clone(&out), Arc::clone(&latest));
    let inputs = inputs.to_vec();
    let params = Arc::new(params.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let mut prices: InputHandle<u64, CapacityContainerBuilder<Vec<PricePoint>>> =
            InputHandle::new();
        let mut interest: InputHandle<u64, CapacityContainerBuilder<Vec<Interest>>> =
            InputHandle::new();
        let probe = ProbeHandle::new();
        let (out_sink, latest_sink) = (Arc::clone(&out_sink), Arc::clone(&latest_sink));
        let params = Arc::clone(&params);
        worker.dataflow::<u64, _, _>(|scope| {
            let Fusion { out, latest } = fusion(
                scope.input_from(&mut prices),
                scope.input_from(&mut interest),
                params,
                FUSION_TICK,
            );
            out.inspect_time(move |t, o| out_sink.lock().unwrap().push((*t, o.clone())))
                .probe_with(&probe);
            latest
                .inspect_time(move |t, p| latest_sink.lock().unwrap().push((*t, p.clone())))
                .probe_with(&probe);
        });
        let times: Vec<u64> = inputs.iter().map(FusionIn::time).collect();
        drive(
            worker,
            &probe,
            &times,
            FUSION_TICK,
            batch,
            final_watermark,
            |step| match step {
                Drive::Advance(t) => {
                    prices.advance_to(t);
                    interest.advance_to(t);
                }
                Drive::Send(i) => match &inputs[i] {
                    FusionIn::Price(_, p) => prices.send(p.clone()),
                    FusionIn::Interest(_, i) => interest.send(i.clone()),
                },
            },
        );
    })
    .unwrap();
    let mut events: Vec<(u64, String)> = std::mem::take(&mut *out.lock().unwrap())
        .into_iter()
        .map(|(t, o)| (t, json(&o)))
        .collect();
    events.sort();
    // Of several prices taken for one key at one time the greatest is the last one taken.
    let mut taken = std::mem::take(&mut *latest.lock().unwrap());
    taken.sort_by(|(ta, a), (tb, b)| (ta, a.publish_ms, a.price).cmp(&(tb, b.publish_ms, b.price)));
    let latest = taken
        .into_iter()
        .map(|(_, p)| ((p.asset.clone(), p.source.clone()), p))
        .collect();
    (events, latest)
}

proptest! {
    #![proptest_config(cases(40))]
    #[test]
    fn fusion_equals_evaluating_every_tick(
        inputs in fusion_inputs(),
        threshold in prop_oneof![Just(2i64), Just(5)],
        workers in workers(),
        batch in batching(),
        tail_ticks in 1u64..150,
    ) {
        let params = fusion_params(threshold);
        let last = inputs.last().map_or(FUSION_T0, FusionIn::time);
        let final_watermark = last + tail_ticks * FUSION_TICK;
        let (expected, expected_latest) = fusion_oracle(&inputs, &params, final_watermark);
        let (got, latest) = fusion_dataflow(&inputs, &params, final_watermark, workers, batch);
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(&latest, &expected_latest);
    }
}

fn price_at(source: PriceSource, mantissa: i64, publish_ms: i64) -> PricePoint {
    PricePoint {
        asset: Asset::named("SOL"),
        source,
        price: Decimal::new(mantissa, -2),
        publish_ms,
        change_24h: None,
        chain: None,
    }
}

/// A price that goes stale before the asset's pending staleness timer: a DEX Screener price
/// (fresh 8 s) sets a timer for its expiry; a Hermes price that is already 2 s old (fresh 3 s)
/// arrives and becomes the fused price. When it goes stale, 1 s later, the fused price must
/// fall back to DEX Screener's, with a mark.
#[test]
fn fusion_notices_a_price_going_stale_before_the_pending_timer() {
    let params = fusion_params(2);
    let t0 = FUSION_T0;
    let sol = Asset::named("SOL");
    let inputs = vec![
        FusionIn::Interest(
            t0,
            Interest {
                asset: sol.clone(),
                on: true,
            },
        ),
        FusionIn::Price(t0, price_at(PriceSource::Dexscreener, 14_000, t0 as i64)),
        FusionIn::Price(
            t0 + 1_000,
            price_at(PriceSource::Hermes, 14_010, t0 as i64 - 1_000),
        ),
    ];
    let final_watermark = t0 + 20_000;
    let mark = |t: u64, m: i64| (t, json(&FusionOut::Mark(sol.clone(), Decimal::new(m, -2))));
    // Hermes (published at t0 − 1000) is fresh up to t0 + 2000: stale from the tick t0 + 2100.
    let expected = vec![
        mark(t0, 14_000),
        mark(t0 + 1_000, 14_010),
        mark(t0 + 2_100, 14_000),
    ];
    assert_eq!(fusion_oracle(&inputs, &params, final_watermark).0, expected);
    let (got, _) = fusion_dataflow(&inputs, &params, final_watermark, 1, 1);
    assert_eq!(got, expected);
}

// ---------------------------------------------------------------------------------------------
// 3. Risk: the one portfolio, stepped once per time with data.

const RISK_TICK: u64 = 10;
const RISK_T0: u64 = 1_800_000_000_000;

/// Four priced assets (a name, a starting mantissa and its exponent) and one never priced.
const RISK_ASSETS: [(&str, i64, i32); 5] = [
    ("A", 1_585, -8),
    ("B", 14_241, -2),
    ("C", 97_123, 0),
    ("D", 123_456_789, -9),
    ("E", 1, 0),
];

#[derive(Clone, Debug)]
enum RiskIn {
    Mark(u64, (Asset, Decimal)),
    Move(u64, Move),
}

impl RiskIn {
    fn time(&self) -> u64 {
        match self {
            RiskIn::Mark(t, _) | RiskIn::Move(t, _) => *t,
        }
    }
}

fn risk_params() -> impl Strategy<Value = RiskParams> {
    (1usize..=4, prop::sample::select(vec![0u64, 30, 200])).prop_map(|(max_positions, wait)| {
        let config = Config::load(None, &[]).expect("the default configuration loads");
        let mut params = RiskParams::from_config(&config.risk).expect("default risk params");
        params.max_positions = max_positions;
        params.entry_wait_ms = wait;
        params
    })
}

fn risk_inputs() -> impl Strategy<Value = Vec<RiskIn>> {
    let step = (
        prop_oneof![2 => Just(0u64), 6 => 1u64..=3, 2 => 4u64..=30],
        0u8..10,
        0usize..5,
        // Price moves in permille: drift, rallies, crashes.
        prop_oneof![6 => 900u32..=1100, 2 => 1100u32..=1600, 2 => 400u32..=700],
        prop::bool::weighted(0.1),
    );
    prop::collection::vec(step, 1..80).prop_map(|steps| {
        let mut t = RISK_T0;
        let mut mantissas = RISK_ASSETS.map(|(_, m, _)| m);
        steps
            .into_iter()
            .map(|(gap, kind, asset, permille, rescale)| {
                t += gap * RISK_TICK;
                if kind < 6 {
                    let i = asset % 4;
                    let next = (i128::from(mantissas[i]) * i128::from(permille) / 1000)
                        .clamp(1, 100_000_000_000_000);
                    mantissas[i] = next as i64;
                    let (name, _, expo) = RISK_ASSETS[i];
                    let price = if rescale {
                        Decimal::new(mantissas[i] * 10, expo - 1)
                    } else {
                        Decimal::new(mantissas[i], expo)
                    };
                    RiskIn::Mark(t, (Asset::named(name), price))
                } else {
                    RiskIn::Move(
                        t,
                        Move {
                            asset: Asset::named(RISK_ASSETS[asset].0),
                            entry: kind < 9,
                        },
                    )
                }
            })
            .collect()
    })
}

/// The marks and moves of one time.
type RiskBatch = (Vec<(Asset, Decimal)>, Vec<Move>);

/// The plain loop: one `Portfolio::step` per time with data, with the operator's per-time
/// canonical form (one mark per asset, the greatest; moves sorted and deduplicated; exits and
/// entries apart), and a record whenever something traded or a held asset was marked.
fn risk_oracle(
    inputs: &[RiskIn],
    params: &RiskParams,
    final_watermark: u64,
) -> Vec<(u64, RiskOut)> {
    let mut by_time: BTreeMap<u64, RiskBatch> = BTreeMap::new();
    for input in inputs {
        let slot = by_time.entry(input.time()).or_default();
        match input {
            RiskIn::Mark(_, m) => slot.0.push(m.clone()),
            RiskIn::Move(_, m) => slot.1.push(m.clone()),
        }
    }
    let mut portfolio = Portfolio::new(params.clone());
    let mut out = Vec::new();
    for (t, (marks, mut moves)) in by_time {
        if t >= final_watermark {
            break;
        }
        let mut greatest: BTreeMap<Asset, Decimal> = BTreeMap::new();
        for (asset, price) in marks {
            greatest
                .entry(asset)
                .and_modify(|p| *p = (*p).max(price))
                .or_insert(price);
        }
        let marks: Vec<(Asset, Decimal)> = greatest.into_iter().collect();
        moves.sort();
        moves.dedup();
        let pick = |entry: bool| -> Vec<Asset> {
            moves
                .iter()
                .filter(|m| m.entry == entry)
                .map(|m| m.asset.clone())
                .collect()
        };
        let (exits, entries) = (pick(false), pick(true));
        let events = portfolio.step(t, &marks, &exits, &entries);
        let changed =
            !events.is_empty() || marks.iter().any(|(a, _)| portfolio.position(a).is_some());
        out.extend(events.into_iter().map(|e| (t, RiskOut::Event(e))));
        if changed {
            out.push((t, RiskOut::Record(portfolio.to_record())));
        }
    }
    out
}

fn risk_dataflow(
    inputs: &[RiskIn],
    params: &RiskParams,
    final_watermark: u64,
    workers: usize,
    batch: u64,
) -> Vec<(u64, RiskOut)> {
    let out: Arc<Mutex<Vec<(u64, RiskOut)>>> = Arc::default();
    let sink = Arc::clone(&out);
    let inputs = inputs.to_vec();
    let portfolio = Portfolio::new(params.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let mut marks: InputHandle<u64, CapacityContainerBuilder<Vec<(Asset, Decimal)>>> =
            InputHandle::new();
        let mut moves: InputHandle<u64, CapacityContainerBuilder<Vec<Move>>> = InputHandle::new();
        let probe = ProbeHandle::new();
        let sink = Arc::clone(&sink);
        let portfolio = portfolio.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            risk(
                scope.input_from(&mut marks),
                scope.input_from(&mut moves),
                portfolio,
            )
            .inspect_time(move |t, o| sink.lock().unwrap().push((*t, o.clone())))
            .probe_with(&probe);
        });
        let times: Vec<u64> = inputs.iter().map(RiskIn::time).collect();
        drive(
            worker,
            &probe,
            &times,
            RISK_TICK,
            batch,
            final_watermark,
            |step| match step {
                Drive::Advance(t) => {
                    marks.advance_to(t);
                    moves.advance_to(t);
                }
                Drive::Send(i) => match &inputs[i] {
                    RiskIn::Mark(_, m) => marks.send(m.clone()),
                    RiskIn::Move(_, m) => moves.send(m.clone()),
                },
            },
        );
    })
    .unwrap();
    let mut v = std::mem::take(&mut *out.lock().unwrap());
    // One worker emits everything, in order within a time: a stable sort by time keeps it.
    v.sort_by_key(|(t, _)| *t);
    v
}

proptest! {
    #![proptest_config(cases(40))]
    #[test]
    fn risk_equals_the_plain_loop(
        inputs in risk_inputs(),
        params in risk_params(),
        workers in workers(),
        batch in batching(),
        tail_ticks in 1u64..50,
    ) {
        let last = inputs.last().map_or(RISK_T0, RiskIn::time);
        let final_watermark = last + tail_ticks * RISK_TICK;
        let expected = risk_oracle(&inputs, &params, final_watermark);
        let got = risk_dataflow(&inputs, &params, final_watermark, workers, batch);
        prop_assert_eq!(&got, &expected);
    }
}
