//! Oracle for trending: the incremental path (snapshot diffs, consolidation, one state machine
//! per token) against a naive recomputation from whole snapshots and full position histories,
//! over random snapshot sequences.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sluice::model::{BoostEntry, BoostSnapshot, Decimal, TokenRef};
use sluice::ops::trending::{
    Position, RankChange, SnapshotDiff, TimedEvent, TokenTrend, TrendingEvent, TrendingParams,
};

/// Where snapshot times start: a realistic epoch in ms.
const T0_MS: u64 = 1_795_248_000_000;

/// How a poll's list relates to the previous one.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// The same list again.
    Repeat,
    /// The previous tokens with a few of them moved, and ranks re-spaced: long stints that drift.
    Perturb,
    /// A new list from the pool.
    Fresh,
}

/// One poll as generated: the gap since the previous one, what kind of list, pool indices,
/// moves (from, to) for a perturbed list, and the rank gaps.
#[derive(Clone, Debug)]
struct Step {
    gap_s: u64,
    kind: Kind,
    picks: Vec<usize>,
    moves: Vec<(usize, usize)>,
    rank_gaps: Vec<u32>,
}

#[derive(Clone, Debug)]
struct Case {
    params: TrendingParams,
    snapshots: Vec<(u64, BoostSnapshot)>,
}

/// Valid Solana (base58 of 32 bytes) and Base (0x + 40 hex) tokens.
fn pool() -> impl Strategy<Value = Vec<TokenRef>> {
    prop::collection::vec((any::<bool>(), any::<[u8; 32]>()), 15).prop_map(|seeds| {
        let tokens: BTreeSet<TokenRef> = seeds
            .into_iter()
            .map(|(solana, bytes)| {
                if solana {
                    TokenRef::parse("solana", &bs58::encode(bytes).into_string())
                } else {
                    TokenRef::parse("base", &format!("0x{}", hex::encode(&bytes[..20])))
                }
                .expect("generated addresses are valid")
            })
            .collect();
        tokens.into_iter().collect()
    })
}

fn step() -> impl Strategy<Value = Step> {
    (
        1u64..=120,
        prop_oneof![1 => Just(Kind::Repeat), 2 => Just(Kind::Perturb), 2 => Just(Kind::Fresh)],
        prop::collection::vec(0usize..15, 0..=12),
        prop::collection::vec((0usize..12, 0usize..12), 0..=3),
        // Mostly consecutive ranks, some small gaps, a few large ones.
        prop::collection::vec(
            prop_oneof![6 => Just(0u32), 2 => 1u32..=3, 1 => 4u32..=15],
            12,
        ),
    )
        .prop_map(|(gap_s, kind, picks, moves, rank_gaps)| Step {
            gap_s,
            kind,
            picks,
            moves,
            rank_gaps,
        })
}

fn params() -> impl Strategy<Value = TrendingParams> {
    (
        prop_oneof![1u32..=5, 5u32..=20, 20u32..=80],
        // Round windows and whole thresholds make velocities land exactly on the threshold,
        // where `≥` and `>` differ.
        prop_oneof![prop::sample::select(vec![30u64, 60, 120, 300]), 10u64..=400],
        prop_oneof![(1i64..=20).prop_map(|r| r * 10), 1i64..=200],
        prop_oneof![3 => Just(-1i32), 1 => Just(-4)],
        1usize..=8,
    )
        .prop_flat_map(|(min_rank, window_s, threshold, expo, max_history)| {
            // The re-arm level is at most the threshold, sometimes negative.
            // Whole steps below make the re-arm level exact too, where `<` and `≤` differ.
            let below = prop_oneof![
                (0..=threshold / 10 + 3).prop_map(|k| k * 10),
                0..=threshold + 30
            ];
            below.prop_map(move |below| TrendingParams {
                min_trending_rank: min_rank,
                velocity_window_ms: window_s * 1_000,
                high_momentum: Decimal::new(threshold, expo),
                rearm: Decimal::new(threshold - below, expo),
                max_history,
            })
        })
}

fn case() -> impl Strategy<Value = Case> {
    (params(), pool(), prop::collection::vec(step(), 1..=40)).prop_map(|(params, pool, steps)| {
        let mut snapshots: Vec<(u64, BoostSnapshot)> = Vec::new();
        let mut t_ms = T0_MS;
        for step in steps {
            t_ms += step.gap_s * 1_000;
            let previous = snapshots.last().map(|(_, s)| s.clone());
            let order: Vec<TokenRef> = match (step.kind, previous) {
                (Kind::Repeat, Some(previous)) => {
                    snapshots.push((t_ms, previous));
                    continue;
                }
                (Kind::Perturb, Some(previous)) => {
                    let mut order: Vec<TokenRef> =
                        previous.entries.into_iter().map(|e| e.token).collect();
                    for (from, to) in &step.moves {
                        if order.is_empty() {
                            break;
                        }
                        let token = order.remove(from % order.len());
                        order.insert(to % (order.len() + 1), token);
                    }
                    order
                }
                // Picks may repeat a token: a list can name one twice.
                _ => step
                    .picks
                    .iter()
                    .filter_map(|pick| pool.get(pick % pool.len().max(1)).cloned())
                    .collect(),
            };
            let mut rank = 0;
            let entries = order
                .into_iter()
                .zip(&step.rank_gaps)
                .map(|(token, gap)| {
                    rank += 1 + gap;
                    BoostEntry {
                        token,
                        rank,
                        total_amount: Decimal::new(i64::from(rank) * 10, 0),
                    }
                })
                .collect();
            let snapshot = BoostSnapshot { entries };
            snapshots.push((t_ms, snapshot));
        }
        Case { params, snapshots }
    })
}

/// What the incremental path produced.
struct Incremental {
    events: Vec<(u64, TrendingEvent)>,
    trends: BTreeMap<TokenRef, TokenTrend>,
}

/// The incremental path: `SnapshotDiff`, naive consolidation per time, grouping per token into
/// `RankChange`, and `TokenTrend::apply` per token in token order. With `evict`, states are
/// dropped as soon as they are evictable. `check` runs after each time with its trends.
fn incremental(
    case: &Case,
    params: &TrendingParams,
    evict: bool,
    mut check: impl FnMut(u64, &BTreeMap<TokenRef, TokenTrend>) -> Result<(), TestCaseError>,
) -> Result<Incremental, TestCaseError> {
    let mut diff = SnapshotDiff::new();
    let mut trends: BTreeMap<TokenRef, TokenTrend> = BTreeMap::new();
    let mut events = Vec::new();
    for (t_ms, snapshot) in &case.snapshots {
        // The state between polls, as seen at the next poll's time, before its changes.
        check(*t_ms, &trends)?;
        let updates = diff.next(snapshot, params);

        let mut net: BTreeMap<(TokenRef, u32), isize> = BTreeMap::new();
        for (row, d) in &updates {
            *net.entry(row.clone()).or_default() += d;
        }
        net.retain(|_, d| *d != 0);
        let mut changes: BTreeMap<TokenRef, RankChange> = BTreeMap::new();
        for ((token, rank), d) in net {
            let change = changes.entry(token).or_insert(RankChange {
                old: None,
                new: None,
            });
            let slot = match d {
                -1 => &mut change.old,
                1 => &mut change.new,
                other => return Err(TestCaseError::fail(format!("consolidated diff {other}"))),
            };
            prop_assert!(
                slot.replace(rank).is_none(),
                "two ranks on one side for one token"
            );
        }

        // The library's own grouping agrees with the naive one.
        let mut raw: BTreeMap<TokenRef, Vec<(u32, isize)>> = BTreeMap::new();
        for ((token, rank), d) in updates {
            raw.entry(token).or_default().push((rank, d));
        }
        let grouped: BTreeMap<TokenRef, RankChange> = raw
            .into_iter()
            .filter_map(|(token, updates)| {
                RankChange::from_updates(updates)
                    .map(|change| change.map(|c| (token, c)))
                    .transpose()
            })
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&grouped, &changes);

        for (token, change) in changes {
            let trend = trends.entry(token.clone()).or_default();
            for event in trend.apply(&token, *t_ms, change, params) {
                events.push((*t_ms, event));
            }
        }
        check(*t_ms, &trends)?;
        if evict {
            trends.retain(|_, trend| !trend.is_evictable(*t_ms, params));
        }
    }
    Ok(Incremental { events, trends })
}

/// The naive model of one token: its full history, and its current stint's positions.
#[derive(Default)]
struct NaiveToken {
    stint: Vec<(u64, u32)>,
    armed: bool,
    positions: Vec<Position>,
    events: Vec<TimedEvent>,
    /// When the token last left the list.
    exited: Option<u64>,
}

impl NaiveToken {
    fn rank(&self) -> Option<u32> {
        self.stint.last().map(|(_, rank)| *rank)
    }
}

/// The velocity from the whole stint, scanning it: the baseline is the rank in effect at
/// max(t − W, stint start).
fn naive_velocity(stint: &[(u64, u32)], t_ms: u64, current: u32, window_ms: u64) -> Decimal {
    let Some(&(start, first_rank)) = stint.first() else {
        return Decimal::new(0, -3);
    };
    let from = (i128::from(t_ms) - i128::from(window_ms)).max(i128::from(start));
    let mut baseline = first_rank;
    for &(at, rank) in stint {
        if i128::from(at) <= from {
            baseline = rank;
        }
    }
    let milli = (i128::from(baseline) - i128::from(current)) * 60_000_000 / i128::from(window_ms);
    Decimal::new(i64::try_from(milli).expect("bounded"), -3)
}

/// The naive model's rank and velocity of every token it has seen, at one check.
type NaiveView = BTreeMap<TokenRef, (Option<u32>, Decimal)>;

/// What the naive recomputation produced.
struct Naive {
    events: Vec<(u64, TrendingEvent)>,
    tokens: BTreeMap<TokenRef, NaiveToken>,
}

/// The naive recomputation: maps token → rank per snapshot (tracked ranks, best rank of a token
/// listed twice), events from consecutive pairs, high momentum from each stint's full history.
/// `check` sees the model at each poll's time, before and after its changes.
fn naive(case: &Case, mut check: impl FnMut(u64, &BTreeMap<TokenRef, NaiveToken>)) -> Naive {
    let p = &case.params;
    let mut previous: BTreeMap<TokenRef, u32> = BTreeMap::new();
    let mut tokens: BTreeMap<TokenRef, NaiveToken> = BTreeMap::new();
    let mut events = Vec::new();
    for (t_ms, snapshot) in &case.snapshots {
        let t = *t_ms;
        check(t, &tokens);
        let mut current: BTreeMap<TokenRef, u32> = BTreeMap::new();
        for entry in &snapshot.entries {
            if entry.rank <= p.min_trending_rank {
                let best = current.entry(entry.token.clone()).or_insert(entry.rank);
                *best = (*best).min(entry.rank);
            }
        }
        let all: BTreeSet<&TokenRef> = previous.keys().chain(current.keys()).collect();
        for token in all {
            let chain = token.chain.to_string();
            let address = token.address.to_string();
            let state = tokens.entry(token.clone()).or_default();
            let mut out = Vec::new();
            match (previous.get(token).copied(), current.get(token).copied()) {
                (None, Some(rank)) => {
                    // Back after more than a window out: a fresh start, history and all.
                    if state
                        .exited
                        .is_some_and(|e| t.saturating_sub(e) > p.velocity_window_ms)
                    {
                        *state = NaiveToken::default();
                    }
                    out.push(TrendingEvent::Entry {
                        chain: chain.clone(),
                        token: address.clone(),
                        rank,
                    });
                    state.stint = vec![(t, rank)];
                    state.armed = true;
                    state.positions.push(Position { t_ms: t, rank });
                }
                (Some(final_rank), None) => {
                    out.push(TrendingEvent::Exit {
                        chain: chain.clone(),
                        token: address.clone(),
                        final_rank,
                    });
                    state.stint.clear();
                    state.exited = Some(t);
                }
                (Some(old_rank), Some(new_rank)) if old_rank != new_rank => {
                    out.push(if new_rank < old_rank {
                        TrendingEvent::RankUp {
                            chain: chain.clone(),
                            token: address.clone(),
                            old_rank,
                            new_rank,
                        }
                    } else {
                        TrendingEvent::RankDown {
                            chain: chain.clone(),
                            token: address.clone(),
                            old_rank,
                            new_rank,
                        }
                    });
                    let before = naive_velocity(&state.stint, t, old_rank, p.velocity_window_ms);
                    if before.cmp_value(&p.rearm).is_lt() {
                        state.armed = true;
                    }
                    state.stint.push((t, new_rank));
                    state.positions.push(Position {
                        t_ms: t,
                        rank: new_rank,
                    });
                }
                _ => {}
            }
            if let (false, Some(rank)) = (out.is_empty(), current.get(token)) {
                let velocity = naive_velocity(&state.stint, t, *rank, p.velocity_window_ms);
                if state.armed && velocity.cmp_value(&p.high_momentum).is_ge() {
                    state.armed = false;
                    out.push(TrendingEvent::HighMomentum {
                        chain,
                        token: address,
                        velocity,
                    });
                }
            }
            for event in out {
                state.events.push(TimedEvent {
                    t_ms: t,
                    event: event.clone(),
                });
                events.push((t, event));
            }
        }
        previous = current;
        check(t, &tokens);
    }
    Naive { events, tokens }
}

/// The last `n` items.
fn tail<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    items[items.len().saturating_sub(n)..].to_vec()
}

/// Every velocity stays within the largest possible climb over one window.
fn assert_velocity_bound(velocity: Decimal, params: &TrendingParams) -> Result<(), TestCaseError> {
    let bound_milli =
        i128::from(params.min_trending_rank) * 60_000_000 / i128::from(params.velocity_window_ms);
    let milli = velocity
        .scaled_to(-3)
        .expect("velocities are in thousandths");
    prop_assert!(
        milli.abs() <= bound_milli,
        "velocity {} beyond bound",
        velocity
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn incremental_matches_naive_recomputation(case in case()) {
        let p = case.params;
        // The naive model's velocities and ranks at each check, in the same order as the
        // incremental path's checks.
        let mut expected_states: Vec<(u64, NaiveView)> = Vec::new();
        let naive = naive(&case, |t, tokens| {
            let view = tokens
                .iter()
                .map(|(token, state)| {
                    let velocity = match state.rank() {
                        Some(rank) => naive_velocity(&state.stint, t, rank, p.velocity_window_ms),
                        None => Decimal::new(0, -3),
                    };
                    (token.clone(), (state.rank(), velocity))
                })
                .collect();
            expected_states.push((t, view));
        });

        for evict in [false, true] {
            let mut checks = expected_states.iter();
            let result = incremental(&case, &p, evict, |t, trends| {
                let (expected_t, expected) = checks.next().expect("as many checks as the naive run");
                prop_assert_eq!(*expected_t, t);
                for (token, trend) in trends {
                    let velocity = trend.velocity_at(t, &p);
                    assert_velocity_bound(velocity, &p)?;
                    prop_assert!(trend.positions().len() <= p.max_history);
                    prop_assert!(trend.events().len() <= p.max_history);
                    let (rank, naive_velocity) = expected.get(token).copied().unwrap_or((None, Decimal::new(0, -3)));
                    prop_assert_eq!(trend.current_rank(), rank, "rank of {} at {}", token, t);
                    prop_assert_eq!(velocity, naive_velocity, "velocity of {} at {}", token, t);
                    let metrics = trend.metrics(t, &p);
                    prop_assert_eq!(metrics.is_trending, rank.is_some());
                    prop_assert_eq!(metrics.velocity, velocity);
                    prop_assert_eq!(&metrics.recent_events, &trend.events().iter().cloned().collect::<Vec<_>>());
                }
                // Every token the naive model has trending is known to the incremental path.
                for (token, (rank, _)) in expected {
                    if rank.is_some() {
                        prop_assert!(trends.contains_key(token), "{} lost while trending", token);
                    }
                }
                Ok(())
            })?;
            prop_assert_eq!(&result.events, &naive.events, "evict = {}", evict);

            if !evict {
                for (token, trend) in &result.trends {
                    let model = &naive.tokens[token];
                    let positions: Vec<Position> = trend.positions().iter().copied().collect();
                    prop_assert_eq!(positions, tail(&model.positions, p.max_history));
                    let events: Vec<TimedEvent> = trend.events().iter().cloned().collect();
                    prop_assert_eq!(events, tail(&model.events, p.max_history));
                }
            }
        }

        for (_, event) in &naive.events {
            let line = serde_json::to_string(event).expect("events serialize");
            let head = format!(r#"{{"kind":"{}","chain":"#, event.kind());
            prop_assert!(line.starts_with(&head), "{}", line);
            let back: TrendingEvent = serde_json::from_str(&line).expect("events read back");
            prop_assert_eq!(&back, event);
        }
    }

    #[test]
    fn no_event_names_a_rank_past_the_cut_off(
        case in case(),
        cut_offs in prop::collection::vec(1u32..=40, 1..=4),
    ) {
        for cut_off in cut_offs {
            let params = TrendingParams { min_trending_rank: cut_off, ..case.params };
            let result = incremental(&case, &params, false, |_, _| Ok(()))?;
            for (t, event) in &result.events {
                let ranks = match event {
                    TrendingEvent::Entry { rank, .. } => vec![*rank],
                    TrendingEvent::Exit { final_rank, .. } => vec![*final_rank],
                    TrendingEvent::RankUp { old_rank, new_rank, .. }
                    | TrendingEvent::RankDown { old_rank, new_rank, .. } => vec![*old_rank, *new_rank],
                    TrendingEvent::HighMomentum { .. } => vec![],
                };
                prop_assert!(ranks.iter().all(|r| *r <= cut_off), "{:?} at {} with cut-off {}", event, t, cut_off);
            }
            for trend in result.trends.values() {
                prop_assert!(trend.current_rank().is_none_or(|r| r <= cut_off));
                prop_assert!(trend.positions().iter().all(|p| p.rank <= cut_off));
            }
        }
    }
}

/// A hand-written sequence through both paths, so a failure of the basics reads plainly.
#[test]
fn a_known_sequence_agrees() {
    let token =
        |n: u8| TokenRef::parse("solana", &bs58::encode([n; 32]).into_string()).expect("valid");
    let (a, b, c) = (token(1), token(2), token(3));
    let snapshot = |rows: &[(&TokenRef, u32)]| BoostSnapshot {
        entries: rows
            .iter()
            .map(|(token, rank)| BoostEntry {
                token: (*token).clone(),
                rank: *rank,
                total_amount: Decimal::ZERO,
            })
            .collect(),
    };
    let case = Case {
        params: TrendingParams {
            min_trending_rank: 5,
            velocity_window_ms: 60_000,
            high_momentum: Decimal::new(2, 0),
            rearm: Decimal::new(1, 0),
            max_history: 3,
        },
        snapshots: vec![
            (T0_MS, snapshot(&[(&a, 1), (&b, 2), (&c, 5)])),
            (T0_MS + 10_000, snapshot(&[(&c, 1), (&a, 2), (&b, 3)])),
            (T0_MS + 20_000, snapshot(&[(&c, 1), (&a, 2), (&b, 3)])),
            (T0_MS + 30_000, snapshot(&[(&c, 1), (&a, 2), (&b, 9)])),
        ],
    };
    let naive = naive(&case, |_, _| {});
    let incremental = incremental(&case, &case.params, false, |_, _| Ok(())).expect("runs");
    assert_eq!(incremental.events, naive.events);
    let kinds: Vec<&str> = naive.events.iter().map(|(_, e)| e.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            "entry",
            "entry",
            "entry",
            "rank_down",
            "rank_down",
            "rank_up",
            "high_momentum",
            "exit"
        ]
    );
}
