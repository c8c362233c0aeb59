//! Oracle for the paper portfolio: random steps (big moves and crashes included) checked
//! against naive recomputations from the full history after every step, and against other
//! batchings of the same inputs.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::U512;
use proptest::prelude::*;
use sluice::model::{Asset, Decimal};
use sluice::ops::risk::{
    Fixed, OrderReason, Portfolio, RejectReason, RiskEvent, RiskParams, Side, Tier,
};

/// The assets: a name, the exponent of its prices and a starting mantissa. The exponents
/// cover a meme coin, a two-decimal price, a price with more than 18 fractional digits (so
/// conversion rounds) and a large integer price.
const ASSETS: [(&str, i32, i64); 4] = [
    ("A", -8, 1585),
    ("B", -2, 14241),
    ("C", -22, 123_456_789_012_345),
    ("D", 0, 97_123),
];

const N: usize = ASSETS.len();

fn fx(s: &str) -> Fixed {
    Fixed::parse(s).unwrap()
}

fn asset(i: usize) -> Asset {
    Asset::named(ASSETS[i].0)
}

/// What happens in one step: a price move (in permille of the last price) per asset, and
/// which assets exit and enter.
#[derive(Clone, Debug)]
struct StepIn {
    moves: Vec<Option<u32>>,
    exits: Vec<bool>,
    entries: Vec<bool>,
}

fn a_move() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => 900u32..=1100,
        2 => 1100u32..=1600,
        // Crashes of 30–60 %.
        2 => 400u32..=700,
    ]
}

fn a_step() -> impl Strategy<Value = StepIn> {
    (
        prop::collection::vec(prop::option::weighted(0.6, a_move()), N),
        prop::collection::vec(prop::bool::weighted(0.15), N),
        prop::collection::vec(prop::bool::weighted(0.3), N),
    )
        .prop_map(|(moves, exits, entries)| StepIn {
            moves,
            exits,
            entries,
        })
}

fn some_params() -> impl Strategy<Value = RiskParams> {
    (
        prop::sample::select(vec!["5", "10", "30", "60"]),
        1usize..=4,
        prop::sample::select(vec!["20", "50", "100"]),
        prop::sample::select(vec!["0", "15", "30"]),
        prop::sample::select(vec!["0", "10", "25"]),
        prop::sample::select(vec!["0", "1", "2.5"]),
        prop::sample::select(vec!["10000", "1234.56789", "7"]),
        // A non-zero Emergency multiplier makes the halt the only thing that stops buys.
        prop::sample::select(vec!["0", "0.1"]),
    )
        .prop_map(
            |(base, max_positions, max_pct, sl, trailing, h, capital, emergency)| RiskParams {
                initial_capital: fx(capital),
                base_position_percent: fx(base),
                max_positions,
                max_position_percent: fx(max_pct),
                stop_loss_percent: fx(sl),
                trailing_stop_percent: fx(trailing),
                drawdown_thresholds: [fx("5"), fx("10"), fx("20")],
                recovery_hysteresis_percent: fx(h),
                tier_multipliers: [fx("1"), fx("0.5"), fx("0.25"), fx(emergency)],
                entry_wait_ms: 0,
                min_order: Fixed::ZERO,
            },
        )
}

/// The price path: mantissas move by the permille factors, kept within 1..=10^17.
struct Prices {
    mantissas: [i64; N],
}

impl Prices {
    fn new() -> Self {
        Prices {
            mantissas: ASSETS.map(|(_, _, m)| m),
        }
    }

    /// The marks of a step, sorted by asset.
    fn marks(&mut self, moves: &[Option<u32>]) -> Vec<(Asset, Decimal)> {
        let mut out = Vec::new();
        for (i, m) in moves.iter().enumerate() {
            if let Some(permille) = m {
                let next = (i128::from(self.mantissas[i]) * i128::from(*permille) / 1000)
                    .clamp(1, 100_000_000_000_000_000);
                self.mantissas[i] = next as i64;
                out.push((asset(i), Decimal::new(self.mantissas[i], ASSETS[i].1)));
            }
        }
        out
    }
}

fn chosen(flags: &[bool]) -> Vec<Asset> {
    flags
        .iter()
        .enumerate()
        .filter(|(_, f)| **f)
        .map(|(i, _)| asset(i))
        .collect()
}

/// `a × b` compared with `c × d`, for non-negative operands, exactly.
fn product_ge(a: i128, b: i128, c: i128, d: i128) -> bool {
    let wide = |x: i128| U512::from(x.unsigned_abs());
    assert!(a >= 0 && b >= 0 && c >= 0 && d >= 0);
    wide(a) * wide(b) >= wide(c) * wide(d)
}

const HUNDRED: i128 = 100_000_000_000_000_000_000;

/// The naive tier: replays the rule over the whole (equity, peak) history.
fn naive_tier(history: &[(Fixed, Fixed)], params: &RiskParams) -> Tier {
    let thresholds: Vec<i128> = params.drawdown_thresholds.iter().map(|t| t.raw()).collect();
    let h = params.recovery_hysteresis_percent.raw();
    let mut tier = 0usize;
    for (equity, peak) in history {
        let loss = peak.raw() - equity.raw();
        // drawdown% ≥ pct ⇔ loss × 100 ≥ pct × peak.
        let reaches = |pct: i128| pct <= 0 || product_ge(loss, HUNDRED, pct, peak.raw());
        let indicated = (1..=3)
            .filter(|k| reaches(thresholds[k - 1]))
            .max()
            .unwrap_or(0);
        if indicated > tier {
            tier = indicated;
        } else if tier > 0 && !reaches(thresholds[tier - 1] - h) {
            tier = (1..tier)
                .filter(|k| reaches(thresholds[k - 1] - h))
                .max()
                .unwrap_or(0);
        }
    }
    Tier::ALL[tier]
}

/// The naive model: every fill and every mark so far, nothing incremental.
struct Naive {
    params: RiskParams,
    fills: Vec<(Asset, Side, Fixed, Fixed, Fixed)>,
    marks: BTreeMap<Asset, Fixed>,
    history: Vec<(Fixed, Fixed)>,
}

impl Naive {
    fn held(&self) -> BTreeMap<Asset, Fixed> {
        let mut held = BTreeMap::new();
        for (asset, side, qty, _, _) in &self.fills {
            match side {
                Side::Buy => assert!(held.insert(asset.clone(), *qty).is_none(), "bought twice"),
                Side::Sell => assert_eq!(held.remove(asset), Some(*qty), "sold what was not held"),
            }
        }
        held
    }

    fn cash(&self) -> Fixed {
        self.fills.iter().fold(
            self.params.initial_capital,
            |cash, (_, side, _, _, notional)| match side {
                Side::Buy => cash.checked_sub(*notional).unwrap(),
                Side::Sell => cash.checked_add(*notional).unwrap(),
            },
        )
    }

    fn equity(&self) -> Fixed {
        self.held()
            .iter()
            .fold(self.cash(), |equity, (asset, qty)| {
                let mark = self.marks[asset];
                equity.checked_add(qty.checked_mul(mark).unwrap()).unwrap()
            })
    }
}

/// Runs `steps` and checks every invariant after each one.
fn run_and_check(params: RiskParams, steps: &[StepIn]) -> Result<(), TestCaseError> {
    let mut portfolio = Portfolio::new(params.clone());
    let mut naive = Naive {
        params: params.clone(),
        fills: Vec::new(),
        marks: BTreeMap::new(),
        history: Vec::new(),
    };
    let mut prices = Prices::new();
    let mut last_order = 0;
    for (t, step) in steps.iter().enumerate() {
        let marks = prices.marks(&step.moves);
        for (asset, price) in &marks {
            if let Some(p) = Fixed::from_decimal(*price).filter(|p| p.is_positive()) {
                naive.marks.insert(asset.clone(), p);
            }
        }
        let held_before = naive.held();
        let (exits, entries) = (chosen(&step.exits), chosen(&step.entries));
        let events = portfolio.step(t as u64 * 1000, &marks, &exits, &entries);
        let tier = portfolio.tier();
        // Positions held at each point of the step, to check max_positions decisions.
        let mut live = held_before.len();
        for event in &events {
            match event {
                RiskEvent::Fill {
                    asset,
                    order,
                    side,
                    qty,
                    price,
                    notional,
                } => {
                    let asset = Asset::named(asset);
                    prop_assert_eq!(*order, last_order + 1, "order ids are sequential");
                    last_order = *order;
                    prop_assert_eq!(
                        Some(*price),
                        naive.marks.get(&asset).copied(),
                        "fills at the mark"
                    );
                    prop_assert_eq!(*notional, qty.checked_mul(*price).unwrap());
                    // A sell's notional may round to zero: a dust position at a crashed price.
                    prop_assert!(qty.is_positive() && !notional.is_negative());
                    prop_assert!(*side == Side::Sell || notional.is_positive());
                    if *side == Side::Buy {
                        // Sized from scratch: base% × equity × multiplier, capped at max% ×
                        // equity and at the cash, each rounded down; then qty = size / price
                        // rounded down.
                        let equity = U512::from(naive.equity().raw().max(0).unsigned_abs());
                        let raw = |f: Fixed| U512::from(f.raw().unsigned_abs());
                        let scale = U512::from(10u128.pow(18));
                        let hundred = U512::from(100u8) * scale;
                        let base = equity
                            * raw(params.base_position_percent)
                            * raw(params.multiplier(tier))
                            / (hundred * scale);
                        let cap = equity * raw(params.max_position_percent) / hundred;
                        let size = base.min(cap).min(raw(naive.cash()));
                        let want_qty = size * scale / raw(*price);
                        prop_assert_eq!(raw(*qty), want_qty, "{} sized from {}", asset, size);
                        prop_assert!(tier != Tier::Emergency, "bought in Emergency");
                        prop_assert!(entries.contains(&asset));
                        prop_assert!(live < params.max_positions);
                        live += 1;
                    } else {
                        prop_assert!(held_before.contains_key(&asset));
                        live -= 1;
                    }
                    naive.fills.push((asset, *side, *qty, *price, *notional));
                }
                RiskEvent::Order { reason, asset, .. } => {
                    let asset = Asset::named(asset);
                    if *reason == OrderReason::Exit {
                        prop_assert!(exits.contains(&asset));
                    }
                }
                RiskEvent::OrderRejected {
                    asset,
                    reason,
                    side,
                } => {
                    prop_assert_eq!(*side, Side::Buy);
                    let asset = Asset::named(asset);
                    prop_assert!(entries.contains(&asset));
                    // In Emergency every entry is halted, whatever else is true.
                    prop_assert_eq!(*reason == RejectReason::Halted, tier == Tier::Emergency);
                    match reason {
                        RejectReason::Halted | RejectReason::ZeroSize => {}
                        RejectReason::NoPrice => prop_assert!(!naive.marks.contains_key(&asset)),
                        RejectReason::MaxPositions => prop_assert_eq!(live, params.max_positions),
                        // These parameters have no minimum order.
                        RejectReason::BelowMinimum => prop_assert!(false, "below a zero minimum"),
                    }
                }
                RiskEvent::TierChange {
                    from, to, equity, ..
                } => {
                    // One change a step, to the tier the step ends in, at the equity after
                    // the step's marks and stops.
                    prop_assert_eq!(*to, tier);
                    prop_assert!(from != to);
                    prop_assert_eq!(*equity, naive.equity());
                }
            }
        }
        // Every entry not held at the end of the step was refused, once.
        let refused = events
            .iter()
            .filter(|e| matches!(e, RiskEvent::OrderRejected { .. }))
            .count();
        let not_held = entries
            .iter()
            .filter(|a| portfolio.position(a).is_none())
            .count();
        prop_assert_eq!(refused, not_held);
        // Equity, computed from scratch, is exactly the running value.
        prop_assert_eq!(portfolio.cash(), naive.cash());
        prop_assert_eq!(portfolio.equity(), naive.equity(), "step {}", t);
        prop_assert!(!portfolio.cash().is_negative());
        let held = naive.held();
        prop_assert!(held.len() <= params.max_positions);
        let positions: BTreeMap<Asset, Fixed> = portfolio
            .positions()
            .map(|(a, p)| (a.clone(), p.qty))
            .collect();
        prop_assert_eq!(&positions, &held);
        // Peak and tier from the history.
        let peak = naive
            .history
            .iter()
            .map(|(e, _)| *e)
            .chain([params.initial_capital, portfolio.equity()])
            .max()
            .unwrap();
        prop_assert_eq!(portfolio.peak(), peak);
        naive.history.push((portfolio.equity(), peak));
        prop_assert_eq!(tier, naive_tier(&naive.history, &params), "step {}", t);
        // Every position left stands above its enabled stops.
        for (asset, p) in portfolio.positions() {
            prop_assert_eq!(Some(p.mark), naive.marks.get(asset).copied());
            let sl = params.stop_loss_percent.raw();
            let tr = params.trailing_stop_percent.raw();
            prop_assert!(
                sl == 0 || !product_ge(p.entry.raw(), HUNDRED - sl, p.mark.raw(), HUNDRED)
            );
            prop_assert!(tr == 0 || !product_ge(p.high.raw(), HUNDRED - tr, p.mark.raw(), HUNDRED));
            prop_assert!(p.high >= p.mark && p.high >= p.entry);
        }
        // The portfolio forgets the marks of assets that left and are not held afterwards.
        let held_after: BTreeSet<Asset> = portfolio.positions().map(|(a, _)| a.clone()).collect();
        for asset in &exits {
            if !held_after.contains(asset) {
                naive.marks.remove(asset);
            }
        }
    }
    Ok(())
}

/// A portfolio after `prefix`, and the prices it left.
fn after(params: &RiskParams, prefix: &[StepIn]) -> (Portfolio, Prices) {
    let mut portfolio = Portfolio::new(params.clone());
    let mut prices = Prices::new();
    for (t, step) in prefix.iter().enumerate() {
        let marks = prices.marks(&step.moves);
        portfolio.step(
            t as u64,
            &marks,
            &chosen(&step.exits),
            &chosen(&step.entries),
        );
    }
    (portfolio, prices)
}

fn is_order(e: &RiskEvent) -> bool {
    matches!(e, RiskEvent::Order { .. })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        // Only tests/risk_oracle.rs belongs to this computation: no regression files.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn matches_the_naive_recomputation(
        params in some_params(),
        steps in prop::collection::vec(a_step(), 1..60),
    ) {
        run_and_check(params, &steps)?;
    }

    /// Marks spread over several steps and only the last mark per asset in one step end at
    /// the same equity, cash and positions when the spread run sells nothing: stop-loss
    /// depends only on the entry and the last mark, and the spread run's highs are at least
    /// the single step's, so the single step cannot stop out either.
    #[test]
    fn spread_marks_equal_the_last_marks(
        params in some_params(),
        prefix in prop::collection::vec(a_step(), 1..20),
        moves in prop::collection::vec(prop::collection::vec(prop::option::weighted(0.6, a_move()), N), 1..10),
    ) {
        let (start, prices) = after(&params, &prefix);
        let t0 = prefix.len() as u64;
        let mut spread = start.clone();
        let mut path = Prices { mantissas: prices.mantissas };
        let mut last: BTreeMap<Asset, Decimal> = BTreeMap::new();
        let mut spread_sold = false;
        for (i, m) in moves.iter().enumerate() {
            let marks = path.marks(m);
            last.extend(marks.iter().cloned());
            let events = spread.step(t0 + i as u64, &marks, &[], &[]);
            spread_sold |= events.iter().any(is_order);
        }
        let mut single = start;
        let marks: Vec<(Asset, Decimal)> = last.into_iter().collect();
        let events = single.step(t0 + moves.len() as u64, &marks, &[], &[]);
        if !spread_sold {
            prop_assert!(!events.iter().any(is_order), "the single step stopped out");
            prop_assert_eq!(spread.equity(), single.equity());
            prop_assert_eq!(spread.cash(), single.cash());
            prop_assert!(spread.peak() >= single.peak());
            let view = |p: &Portfolio| -> Vec<(Asset, Fixed, Fixed, Fixed)> {
                p.positions().map(|(a, p)| (a.clone(), p.qty, p.entry, p.mark)).collect()
            };
            prop_assert_eq!(view(&spread), view(&single));
            for ((_, s), (_, o)) in spread.positions().zip(single.positions()) {
                prop_assert!(s.high >= o.high);
            }
        }
    }

    /// A step split in two — marks first, exits and entries at the next time — gives the same
    /// orders, fills, rejections and tier changes, and the same state, as the single step:
    /// the second step finds nothing new to stop and the same drawdown.
    #[test]
    fn splitting_a_step_changes_nothing(
        params in some_params(),
        prefix in prop::collection::vec(a_step(), 0..20),
        step in a_step(),
    ) {
        let (start, mut prices) = after(&params, &prefix);
        let t0 = prefix.len() as u64;
        let marks = prices.marks(&step.moves);
        let (exits, entries) = (chosen(&step.exits), chosen(&step.entries));
        let mut single = start.clone();
        let one = single.step(t0, &marks, &exits, &entries);
        let mut split = start;
        let mut two = split.step(t0, &marks, &[], &[]);
        two.extend(split.step(t0 + 1, &[], &exits, &entries));
        let (tiers_one, rest_one): (Vec<_>, Vec<_>) =
            one.into_iter().partition(|e| matches!(e, RiskEvent::TierChange { .. }));
        let (tiers_two, rest_two): (Vec<_>, Vec<_>) =
            two.into_iter().partition(|e| matches!(e, RiskEvent::TierChange { .. }));
        prop_assert_eq!(rest_one, rest_two);
        prop_assert_eq!(tiers_one, tiers_two);
        let mut a = single.to_record();
        let b = split.to_record();
        a.updated_ms = b.updated_ms;
        prop_assert_eq!(a, b);
    }

    /// A restart from the stored record continues exactly like the original.
    #[test]
    fn restarts_from_the_record(
        params in some_params(),
        prefix in prop::collection::vec(a_step(), 0..20),
        rest in prop::collection::vec(a_step(), 1..10),
    ) {
        let (mut original, prices) = after(&params, &prefix);
        let record = original.to_record();
        let json = serde_json::to_vec(&record).unwrap();
        let stored = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(&stored, &record);
        let mut restored = Portfolio::from_record(params.clone(), &stored).unwrap();
        let mut path_a = Prices { mantissas: prices.mantissas };
        let mut path_b = Prices { mantissas: prices.mantissas };
        for (i, step) in rest.iter().enumerate() {
            let t = (prefix.len() + i) as u64;
            let (exits, entries) = (chosen(&step.exits), chosen(&step.entries));
            let a = original.step(t, &path_a.marks(&step.moves), &exits, &entries);
            let b = restored.step(t, &path_b.marks(&step.moves), &exits, &entries);
            prop_assert_eq!(a, b);
        }
        prop_assert_eq!(original.to_record(), restored.to_record());
    }
}

#[test]
fn a_crash_walks_down_the_tiers_and_a_recovery_back_up() {
    let params = RiskParams {
        initial_capital: fx("10000"),
        base_position_percent: fx("60"),
        max_positions: 4,
        max_position_percent: fx("60"),
        stop_loss_percent: Fixed::ZERO,
        trailing_stop_percent: Fixed::ZERO,
        drawdown_thresholds: [fx("5"), fx("10"), fx("20")],
        recovery_hysteresis_percent: fx("1"),
        tier_multipliers: [fx("1"), fx("0.5"), fx("0.25"), fx("0")],
        entry_wait_ms: 0,
        min_order: Fixed::ZERO,
    };
    let mut moves = vec![StepIn {
        moves: vec![Some(1000), None, None, None],
        exits: vec![false; N],
        entries: vec![true, false, false, false],
    }];
    for permille in [600, 900, 1500, 1200, 1100, 400, 2000] {
        moves.push(StepIn {
            moves: vec![Some(permille), Some(1000), None, None],
            exits: vec![false; N],
            entries: vec![false, true, false, false],
        });
    }
    run_and_check(params, &moves).unwrap();
}
