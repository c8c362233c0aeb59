//! Risk: the paper portfolio with drawdown tiers, as a pure state machine (no timely, no I/O,
//! no clock).
//!
//! Trending entries become buys and exits become sells, sized by `base_position_percent ×
//! equity × tier multiplier` within `max_positions`, `max_position_percent` and the cash at
//! hand, with a per-position stop-loss and trailing stop. Equity is marked to market
//! incrementally on every fused price. [`Portfolio::step`] takes everything of one completed
//! dataflow time and returns the events of that time.
//!
//! # Money
//!
//! Money is never a float. [`Fixed`] is an `i128` count of `10^-18` units, used for USD
//! amounts, token quantities, prices and percentages alike. Its rounding rules, all in this
//! module:
//!
//! - a [`Decimal`] price with more than 18 fractional digits is rounded half to even
//!   ([`Fixed::from_decimal`]); a price that does not fit, or is not positive once converted,
//!   is ignored as a mark;
//! - a product (`qty × price`, the value of a position or a fill) is rounded half to even
//!   ([`Fixed::checked_mul`]);
//! - a quantity (`notional / price`) and an entry size (`percent × equity × multiplier`) are
//!   rounded down, so an order never spends more than it was sized for.
//!
//! Arithmetic on [`Fixed`] never panics: the `checked_*` forms return `None` and the
//! portfolio uses the `saturating_*` forms, which stop at ±1.7 × 10^20 — far beyond any paper
//! portfolio; past that point amounts are wrong but the process keeps running.
//!
//! # The invariant that makes equity exact
//!
//! A position caches its value `qty × mark` (rounded once). A new mark moves equity by the
//! change of that value, which is `qty × Δprice` up to one rounding unit. So `equity` is kept
//! as a running value, never recomputed, and is still *exactly* `cash + Σ value(qty, mark)`:
//! fills move cash and value by the same rounded amount, and no per-tick rounding accumulates.
//! The property tests compare it with a recomputation from scratch after every step.
//!
//! # Tiers
//!
//! Drawdown is `1 − equity / peak`, compared with the thresholds exactly (cross-multiplied in
//! wide integers, never divided). A tier is entered as soon as its threshold is reached, even
//! skipping tiers; it is left only when the drawdown falls below its threshold minus
//! `recovery_hysteresis_percent`, for the highest lower tier whose threshold minus the
//! hysteresis the drawdown still reaches.
//!
//! # Smaller rules
//!
//! - A stop with a zero percentage is disabled (a 0 % trailing stop would otherwise sell every
//!   position at the first step after its entry).
//! - Stops are checked for every held position at every step, after the marks.
//! - An order's `notional` is the cash its fill moves, `qty × price` rounded half to even, so
//!   an order and its fill always agree; an entry's size is what the quantity was bought for.
//! - A repeated asset in `entries` or `exits` is handled once.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use alloy_primitives::U512;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::{Percent, RiskConfig};
use crate::model::decimal::pow10;
use crate::model::{Asset, Decimal};
use crate::store::risk::{MarkRecord, PortfolioRecord, PositionRecord};

/// `10^18`: one unit of a [`Fixed`].
const SCALE: i128 = 1_000_000_000_000_000_000;

/// 100 as a raw [`Fixed`]: percentages are divided by it.
const HUNDRED: i128 = 100 * SCALE;

/// A fixed-point number with 18 decimals: an `i128` count of `10^-18` units.
///
/// Displays (and serializes) as a plain decimal string without trailing zeros: `"499.5"`,
/// `"0.00001585"`, `"-3"`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fixed(i128);

/// Why a string is not a [`Fixed`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a fixed-point amount with at most 18 decimals: {0:?}")]
pub struct FixedError(pub String);

/// How a quotient is rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// Toward zero (down, for the positive amounts the portfolio sizes).
    Down,
    /// To the nearest, ties to the even neighbour.
    HalfEven,
}

impl Fixed {
    /// Fractional digits.
    pub const DECIMALS: u32 = 18;
    /// Zero.
    pub const ZERO: Fixed = Fixed(0);
    /// One.
    pub const ONE: Fixed = Fixed(SCALE);
    /// The largest value (about 1.7 × 10^20): where saturating arithmetic stops.
    pub const MAX: Fixed = Fixed(i128::MAX);
    /// The smallest value.
    pub const MIN: Fixed = Fixed(i128::MIN);

    /// The number with this many `10^-18` units.
    pub const fn from_raw(raw: i128) -> Fixed {
        Fixed(raw)
    }

    /// The count of `10^-18` units.
    pub const fn raw(self) -> i128 {
        self.0
    }

    /// An integer, exactly.
    pub const fn from_int(n: i64) -> Fixed {
        // |i64| × 10^18 < 9.3 × 10^36, well inside i128.
        Fixed(n as i128 * SCALE)
    }

    /// A decimal, rounded half to even to 18 fractional digits; `None` if it does not fit.
    pub fn from_decimal(d: Decimal) -> Option<Fixed> {
        let mantissa = i128::from(d.mantissa);
        let shift = i64::from(d.expo) + i64::from(Self::DECIMALS);
        if shift >= 0 {
            let factor = pow10(u32::try_from(shift).ok()?)?;
            return mantissa.checked_mul(factor).map(Fixed);
        }
        let drop = u32::try_from(-shift).ok()?;
        match pow10(drop) {
            Some(divisor) => mul_div(&[mantissa], divisor, Round::HalfEven).map(Fixed),
            // 10^39 and beyond exceed twice any i64 mantissa: the value rounds to zero.
            None => Some(Fixed::ZERO),
        }
    }

    /// A percentage from the configuration.
    pub fn from_percent(p: Percent) -> Option<Fixed> {
        Fixed::from_decimal(p.value())
    }

    /// The value as a [`Decimal`], exact when it fits an i64 mantissa, otherwise rounded half
    /// to even to the most fractional digits that fit (at least 16 for values up to 100).
    pub fn to_decimal(self) -> Decimal {
        // Each attempt rounds the original value once, so there is no double rounding.
        for dropped in 0..=Self::DECIMALS + 2 {
            let rounded = match pow10(dropped) {
                Some(1) => Some(self.0),
                Some(divisor) => mul_div(&[self.0], divisor, Round::HalfEven),
                None => None,
            };
            if let Some(m) = rounded.and_then(|r| i64::try_from(r).ok()) {
                let expo = dropped as i32 - Self::DECIMALS as i32;
                return Decimal::new(m, expo).normalized();
            }
        }
        // Unreachable: after dropping 20 digits |value| < 1.8 × 10^18 fits an i64.
        Decimal::ZERO
    }

    /// Parses a plain decimal string (`"-12.5"`, `"3"`, at most 18 fractional digits, no
    /// exponent): the form [`Fixed`] displays as.
    pub fn parse(text: &str) -> Result<Fixed, FixedError> {
        let error = || FixedError(text.chars().take(80).collect());
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = match body.split_once('.') {
            Some((int, frac)) if !frac.is_empty() => (int, frac),
            Some(_) => return Err(error()),
            None => (body, ""),
        };
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits_only(int) || !digits_only(frac) {
            return Err(error());
        }
        if frac.len() > Self::DECIMALS as usize {
            return Err(error());
        }
        let mut magnitude: u128 = 0;
        let padded = frac
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(Self::DECIMALS as usize);
        for digit in int.bytes().chain(padded) {
            magnitude = magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(digit - b'0')))
                .ok_or_else(error)?;
        }
        let raw = if negative {
            0i128.checked_sub_unsigned(magnitude)
        } else {
            i128::try_from(magnitude).ok()
        };
        raw.map(Fixed).ok_or_else(error)
    }

    /// True when strictly positive.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// True when strictly negative.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// True when zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + rhs`, or `None` on overflow.
    pub fn checked_add(self, rhs: Fixed) -> Option<Fixed> {
        self.0.checked_add(rhs.0).map(Fixed)
    }

    /// `self − rhs`, or `None` on overflow.
    pub fn checked_sub(self, rhs: Fixed) -> Option<Fixed> {
        self.0.checked_sub(rhs.0).map(Fixed)
    }

    /// `self + rhs`, stopping at [`Fixed::MAX`] / [`Fixed::MIN`].
    pub fn saturating_add(self, rhs: Fixed) -> Fixed {
        Fixed(self.0.saturating_add(rhs.0))
    }

    /// `self − rhs`, stopping at [`Fixed::MAX`] / [`Fixed::MIN`].
    pub fn saturating_sub(self, rhs: Fixed) -> Fixed {
        Fixed(self.0.saturating_sub(rhs.0))
    }

    /// `self × rhs` rounded half to even, or `None` if it does not fit. This is the one rule
    /// for the value of a quantity at a price.
    pub fn checked_mul(self, rhs: Fixed) -> Option<Fixed> {
        mul_div(&[self.0, rhs.0], SCALE, Round::HalfEven).map(Fixed)
    }

    /// `self × rhs` rounded half to even, stopping at [`Fixed::MAX`] / [`Fixed::MIN`].
    pub fn saturating_mul(self, rhs: Fixed) -> Fixed {
        self.checked_mul(rhs)
            .unwrap_or(saturated((self.0 < 0) != (rhs.0 < 0)))
    }

    /// `self / rhs` rounded toward zero, or `None` if `rhs` is zero or the quotient does not
    /// fit. This is the one rule for the quantity a notional buys at a price.
    pub fn checked_div_down(self, rhs: Fixed) -> Option<Fixed> {
        mul_div(&[self.0, SCALE], rhs.0, Round::Down).map(Fixed)
    }
}

/// The bound a saturating operation stops at.
fn saturated(negative: bool) -> Fixed {
    if negative { Fixed::MIN } else { Fixed::MAX }
}

/// A magnitude widened to 512 bits: room for the product of three i128s.
fn wide(x: u128) -> U512 {
    U512::from_limbs([x as u64, (x >> 64) as u64, 0, 0, 0, 0, 0, 0])
}

/// `Π factors / divisor`, rounded, signed by the operands' signs; `None` if the divisor is
/// zero or the result does not fit an i128. Intermediate products are exact (512 bits).
fn mul_div(factors: &[i128], divisor: i128, round: Round) -> Option<i128> {
    let mut negative = divisor < 0;
    let mut product = wide(1);
    for f in factors {
        negative ^= *f < 0;
        product = product.checked_mul(wide(f.unsigned_abs()))?;
    }
    let d = wide(divisor.unsigned_abs());
    let mut quotient = product.checked_div(d)?;
    let remainder = product.checked_rem(d)?;
    if round == Round::HalfEven {
        // Twice the remainder is below 2^129: no overflow in 512 bits.
        let twice = remainder.checked_add(remainder)?;
        let odd = quotient.bit(0);
        if twice > d || (twice == d && odd) {
            quotient = quotient.checked_add(wide(1))?;
        }
    }
    let limbs = quotient.as_limbs();
    if limbs[2..].iter().any(|l| *l != 0) {
        return None;
    }
    let magnitude = u128::from(limbs[0]) | (u128::from(limbs[1]) << 64);
    if negative {
        0i128.checked_sub_unsigned(magnitude)
    } else {
        i128::try_from(magnitude).ok()
    }
}

/// Compares `a × b` with `c × d` exactly.
fn cmp_products(a: i128, b: i128, c: i128, d: i128) -> Ordering {
    let sign = |x: i128, y: i128| x.signum() * y.signum();
    let (left, right) = (sign(a, b), sign(c, d));
    if left != right {
        return left.cmp(&right);
    }
    // Two u128 magnitudes multiply to under 2^256: exact in 512 bits.
    let magnitude = |x: i128, y: i128| wide(x.unsigned_abs()).wrapping_mul(wide(y.unsigned_abs()));
    let (l, r) = (magnitude(a, b), magnitude(c, d));
    if left >= 0 { l.cmp(&r) } else { r.cmp(&l) }
}

impl fmt::Display for Fixed {
    /// Plain decimal notation, trailing fractional zeros trimmed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = SCALE.unsigned_abs();
        let magnitude = self.0.unsigned_abs();
        let (int, frac) = (magnitude / scale, magnitude % scale);
        if self.0 < 0 {
            f.write_str("-")?;
        }
        write!(f, "{int}")?;
        if frac != 0 {
            let digits = format!("{frac:018}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fixed({self})")
    }
}

impl FromStr for Fixed {
    type Err = FixedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fixed::parse(s)
    }
}

impl Serialize for Fixed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fixed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Fixed::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A drawdown tier, from best to worst.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Below the warning drawdown.
    #[default]
    Normal,
    /// At or past the warning drawdown.
    Warning,
    /// At or past the critical drawdown.
    Critical,
    /// At or past the emergency drawdown: new entries are halted.
    Emergency,
}

impl Tier {
    /// Every tier, best first.
    pub const ALL: [Tier; 4] = [Tier::Normal, Tier::Warning, Tier::Critical, Tier::Emergency];

    /// The position of the tier in [`Tier::ALL`] (and in `tier_multipliers`).
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Opens a position.
    Buy,
    /// Closes a position.
    Sell,
}

/// Why an order was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderReason {
    /// A trending entry.
    Entry,
    /// A trending exit.
    Exit,
    /// The mark fell to the stop-loss below the entry price.
    StopLoss,
    /// The mark fell to the trailing stop below the high since entry.
    TrailingStop,
}

/// Why an entry was not bought.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The Emergency tier halts new entries.
    Halted,
    /// `max_positions` are already held.
    MaxPositions,
    /// No usable price has been seen for the asset.
    NoPrice,
    /// The size (or the quantity it buys, or its cost) rounds to zero or does not fit.
    ZeroSize,
    /// The size is below `min_order_usd`: a dust position would only take a slot.
    BelowMinimum,
}

/// What the portfolio did, one journal line each. Every field serializes deterministically:
/// amounts are [`Fixed`] decimal strings, enums are snake_case, and the kind comes first and
/// the key fields next, so the journal's byte order is (kind, asset, order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RiskEvent {
    /// An order was placed (paper orders are filled at once; see [`RiskEvent::Fill`]).
    Order {
        /// The asset, as displayed ([`Asset`]'s `Display`).
        asset: String,
        /// Sequential per portfolio, from 1, in processing order.
        order: u64,
        /// Buy or sell.
        side: Side,
        /// Token quantity.
        qty: Fixed,
        /// USD value of the quantity at the mark (`qty × price`, rounded half to even).
        notional: Fixed,
        /// Why.
        reason: OrderReason,
    },
    /// An order was filled: immediately, at the mark, without fees.
    Fill {
        /// The asset.
        asset: String,
        /// The order filled.
        order: u64,
        /// Buy or sell.
        side: Side,
        /// Token quantity.
        qty: Fixed,
        /// The fill price (the mark).
        price: Fixed,
        /// The cash that moved: `qty × price`, rounded half to even.
        notional: Fixed,
    },
    /// An entry was not bought.
    OrderRejected {
        /// The asset.
        asset: String,
        /// Always a buy: sells are never refused.
        side: Side,
        /// Why.
        reason: RejectReason,
    },
    /// The drawdown tier changed.
    TierChange {
        /// The tier before.
        from: Tier,
        /// The tier after.
        to: Tier,
        /// The drawdown in percent ([`Portfolio::drawdown`]).
        #[serde(with = "crate::model::decimal::as_string")]
        drawdown: Decimal,
        /// Equity at the change.
        equity: Fixed,
        /// Peak equity at the change.
        peak: Fixed,
    },
}

/// The risk settings as exact fixed-point numbers; percentages are in percent (`5` is 5 %).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskParams {
    /// Starting cash (USD); must be positive.
    pub initial_capital: Fixed,
    /// Position size as a percent of equity, before the tier multiplier.
    pub base_position_percent: Fixed,
    /// Most positions held at once.
    pub max_positions: usize,
    /// Largest position as a percent of equity.
    pub max_position_percent: Fixed,
    /// Stop-loss distance below the entry price (percent); zero disables it.
    pub stop_loss_percent: Fixed,
    /// Trailing-stop distance below the high since entry (percent); zero disables it.
    pub trailing_stop_percent: Fixed,
    /// Drawdowns (percent) at which Warning, Critical and Emergency start.
    pub drawdown_thresholds: [Fixed; 3],
    /// Points below a tier's threshold the drawdown must fall to leave it.
    pub recovery_hysteresis_percent: Fixed,
    /// Size multipliers for Normal, Warning, Critical, Emergency.
    pub tier_multipliers: [Fixed; 4],
    /// An entry with no price yet waits this long for one before it is rejected (ms).
    pub entry_wait_ms: u64,
    /// Orders smaller than this (USD) are not placed.
    pub min_order: Fixed,
}

/// Why the risk settings cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("risk.{field}: {problem}")]
pub struct RiskParamsError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl RiskParams {
    /// Converts the configuration. Fails only if a value does not fit a [`Fixed`] or the
    /// initial capital is not positive; the rest is checked by the configuration itself.
    /// Percentages with more than 18 fractional digits are rounded half to even.
    pub fn from_config(config: &RiskConfig) -> Result<RiskParams, RiskParamsError> {
        let fixed = |field: &'static str, p: Percent| {
            Fixed::from_percent(p).ok_or_else(|| RiskParamsError {
                field,
                problem: format!("{p} does not fit an 18-decimal fixed-point number"),
            })
        };
        let initial_capital = fixed("initial_capital", config.initial_capital)?;
        if !initial_capital.is_positive() {
            return Err(RiskParamsError {
                field: "initial_capital",
                problem: "must be positive".into(),
            });
        }
        let [normal, warning, critical, emergency] = config.tier_multipliers;
        Ok(RiskParams {
            initial_capital,
            base_position_percent: fixed("base_position_percent", config.base_position_percent)?,
            max_positions: config.max_positions,
            max_position_percent: fixed("max_position_percent", config.max_position_percent)?,
            stop_loss_percent: fixed("stop_loss_percent", config.stop_loss_percent)?,
            trailing_stop_percent: fixed("trailing_stop_percent", config.trailing_stop_percent)?,
            drawdown_thresholds: [
                fixed("warning_drawdown_percent", config.warning_drawdown_percent)?,
                fixed(
                    "critical_drawdown_percent",
                    config.critical_drawdown_percent,
                )?,
                fixed(
                    "emergency_drawdown_percent",
                    config.emergency_drawdown_percent,
                )?,
            ],
            recovery_hysteresis_percent: fixed(
                "recovery_hysteresis_percent",
                config.recovery_hysteresis_percent,
            )?,
            tier_multipliers: [
                fixed("tier_multipliers", normal)?,
                fixed("tier_multipliers", warning)?,
                fixed("tier_multipliers", critical)?,
                fixed("tier_multipliers", emergency)?,
            ],
            entry_wait_ms: config.entry_price_wait_secs.saturating_mul(1000),
            min_order: fixed("min_order_usd", config.min_order_usd)?,
        })
    }

    /// The drawdown (percent) at which `tier` starts; `None` for Normal.
    pub fn threshold(&self, tier: Tier) -> Option<Fixed> {
        tier.index()
            .checked_sub(1)
            .and_then(|i| self.drawdown_thresholds.get(i))
            .copied()
    }

    /// The size multiplier of `tier`.
    pub fn multiplier(&self, tier: Tier) -> Fixed {
        self.tier_multipliers
            .get(tier.index())
            .copied()
            .unwrap_or(Fixed::ZERO)
    }
}

impl TryFrom<&RiskConfig> for RiskParams {
    type Error = RiskParamsError;

    fn try_from(config: &RiskConfig) -> Result<Self, Self::Error> {
        RiskParams::from_config(config)
    }
}

/// A held position. Quantities and prices are positive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// Token quantity.
    pub qty: Fixed,
    /// The fill price of the buy.
    pub entry: Fixed,
    /// The latest mark.
    pub mark: Fixed,
    /// The highest mark since entry (the entry price at first).
    pub high: Fixed,
    /// `qty × mark`, rounded half to even: the position's share of equity.
    value: Fixed,
}

impl Position {
    /// The position's value at its mark, `qty × mark` rounded half to even.
    pub fn value(&self) -> Fixed {
        self.value
    }
}

/// Why a stored portfolio cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// A quantity or price is zero or negative.
    #[error("{what} of {asset} is not positive")]
    NotPositive {
        /// The asset.
        asset: String,
        /// Which field.
        what: &'static str,
    },
    /// The same asset is listed twice.
    #[error("{0} is listed twice")]
    Duplicate(String),
    /// Cash is negative, or the peak is not positive or below equity.
    #[error("cash {cash}, equity {equity} and peak {peak} are not a reachable state")]
    Unreachable {
        /// Stored cash.
        cash: Fixed,
        /// Stored equity.
        equity: Fixed,
        /// Stored peak.
        peak: Fixed,
    },
    /// Equity is not cash plus the value of the positions.
    #[error("stored equity {stored} differs from cash plus positions {computed}")]
    Inconsistent {
        /// Stored equity.
        stored: Fixed,
        /// Cash plus Σ qty × mark.
        computed: Fixed,
    },
}

/// The paper portfolio: cash, positions, running equity, peak equity and the drawdown tier.
#[derive(Clone, Debug)]
pub struct Portfolio {
    params: RiskParams,
    cash: Fixed,
    /// Running value, `cash + Σ position values`, updated incrementally.
    equity: Fixed,
    peak: Fixed,
    tier: Tier,
    positions: BTreeMap<Asset, Position>,
    /// The latest usable mark of every asset still of interest, held or not: entries are
    /// bought at it.
    marks: BTreeMap<Asset, Fixed>,
    /// Entries still waiting for a first price, with the time they came.
    pending: BTreeMap<Asset, u64>,
    /// The id the next order gets.
    next_order: u64,
    /// The time of the last step.
    updated_ms: u64,
}

impl Portfolio {
    /// A portfolio holding only `initial_capital` in cash.
    pub fn new(params: RiskParams) -> Portfolio {
        let cash = params.initial_capital;
        Portfolio {
            params,
            cash,
            equity: cash,
            peak: cash,
            tier: Tier::Normal,
            positions: BTreeMap::new(),
            marks: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_order: 1,
            updated_ms: 0,
        }
    }

    /// Processes one completed time `t_ms`: marks (sorted by asset, at most one per asset),
    /// then stops, then `exits`, then the peak and tier, then entries that were waiting for a
    /// price, then `entries` (both sorted). Returns the events in processing order.
    ///
    /// An entry for an asset with no price yet waits up to `entry_wait_ms` for its first mark
    /// (a token entering the trending list is often priced by the next poll); it is bought at
    /// that mark, cancelled by an exit, or rejected `no_price` once the wait is over.
    pub fn step(
        &mut self,
        t_ms: u64,
        marks: &[(Asset, Decimal)],
        exits: &[Asset],
        entries: &[Asset],
    ) -> Vec<RiskEvent> {
        self.updated_ms = t_ms;
        let mut events = Vec::new();
        for (asset, price) in marks {
            self.apply_mark(asset, *price);
        }
        let stopped: Vec<(Asset, OrderReason)> = self
            .positions
            .iter()
            .filter_map(|(asset, p)| self.stop_reason(p).map(|r| (asset.clone(), r)))
            .collect();
        for (asset, reason) in stopped {
            self.sell(&asset, reason, &mut events);
        }
        for asset in exits {
            // An exit for an asset not held does nothing; `sell` checks.
            self.sell(asset, OrderReason::Exit, &mut events);
            // No entry waits for an asset that left the list.
            self.pending.remove(asset);
        }
        self.peak = self.peak.max(self.equity);
        let next = self.next_tier();
        if next != self.tier {
            events.push(RiskEvent::TierChange {
                from: self.tier,
                to: next,
                drawdown: self.drawdown(),
                equity: self.equity,
                peak: self.peak,
            });
            self.tier = next;
        }
        let waiting: Vec<(Asset, u64)> = std::mem::take(&mut self.pending).into_iter().collect();
        for (asset, since) in waiting {
            self.enter_or_wait(&asset, since, t_ms, &mut events);
        }
        let mut previous: Option<&Asset> = None;
        for asset in entries {
            // Entries are sorted: a repeated asset would only repeat the decision.
            if previous == Some(asset) || self.pending.contains_key(asset) {
                continue;
            }
            previous = Some(asset);
            self.enter_or_wait(asset, t_ms, t_ms, &mut events);
        }
        // An asset that left and is neither held nor awaited is of no interest: forget its
        // mark, so the marks kept stay as few as the assets that matter.
        for asset in exits {
            if !self.positions.contains_key(asset) && !self.pending.contains_key(asset) {
                self.marks.remove(asset);
            }
        }
        events
    }

    /// Enters `asset` if it has a price; otherwise keeps waiting until `since + entry_wait_ms`.
    fn enter_or_wait(&mut self, asset: &Asset, since: u64, t_ms: u64, events: &mut Vec<RiskEvent>) {
        let priced = self.marks.contains_key(asset);
        let waited = t_ms.saturating_sub(since) >= self.params.entry_wait_ms;
        if priced || waited || self.positions.contains_key(asset) {
            self.enter(asset, events);
        } else {
            self.pending.insert(asset.clone(), since);
        }
    }

    /// Step (1): remembers the mark and moves equity by the position's change in value.
    fn apply_mark(&mut self, asset: &Asset, price: Decimal) {
        // A price that does not fit, or rounds to zero or below, cannot value anything.
        let Some(price) = Fixed::from_decimal(price).filter(|p| p.is_positive()) else {
            return;
        };
        match self.marks.get_mut(asset) {
            Some(mark) => *mark = price,
            None => {
                self.marks.insert(asset.clone(), price);
            }
        }
        if let Some(position) = self.positions.get_mut(asset) {
            let value = position.qty.saturating_mul(price);
            // Δequity = qty × Δprice, taken as the change of the rounded value so that
            // equity stays exactly cash + Σ values instead of drifting by a unit per tick.
            self.equity = self
                .equity
                .saturating_add(value.saturating_sub(position.value));
            position.value = value;
            position.mark = price;
            position.high = position.high.max(price);
        }
    }

    /// Step (2): which stop, if any, the position's mark has reached. Stop-loss wins.
    fn stop_reason(&self, p: &Position) -> Option<OrderReason> {
        // mark ≤ level × (1 − pct/100) ⇔ mark × 100 ≤ level × (100 − pct): exact, no division.
        let reached = |level: Fixed, pct: Fixed| {
            pct.is_positive()
                && cmp_products(p.mark.0, HUNDRED, level.0, HUNDRED.saturating_sub(pct.0)).is_le()
        };
        if reached(p.entry, self.params.stop_loss_percent) {
            Some(OrderReason::StopLoss)
        } else if reached(p.high, self.params.trailing_stop_percent) {
            Some(OrderReason::TrailingStop)
        } else {
            None
        }
    }

    /// Sells all of `asset` at its mark, if held. Equity does not change: the position's value
    /// becomes cash.
    fn sell(&mut self, asset: &Asset, reason: OrderReason, events: &mut Vec<RiskEvent>) {
        let Some(position) = self.positions.remove(asset) else {
            return;
        };
        self.cash = self.cash.saturating_add(position.value);
        let order = self.take_order_id();
        let name = asset.to_string();
        events.push(RiskEvent::Order {
            asset: name.clone(),
            order,
            side: Side::Sell,
            qty: position.qty,
            notional: position.value,
            reason,
        });
        events.push(RiskEvent::Fill {
            asset: name,
            order,
            side: Side::Sell,
            qty: position.qty,
            price: position.mark,
            notional: position.value,
        });
    }

    /// Step (5): buys `asset` at its mark, or says why not.
    fn enter(&mut self, asset: &Asset, events: &mut Vec<RiskEvent>) {
        if self.positions.contains_key(asset) {
            return;
        }
        let rejected = |reason| RiskEvent::OrderRejected {
            asset: asset.to_string(),
            side: Side::Buy,
            reason,
        };
        if self.tier == Tier::Emergency {
            events.push(rejected(RejectReason::Halted));
            return;
        }
        if self.positions.len() >= self.params.max_positions {
            events.push(rejected(RejectReason::MaxPositions));
            return;
        }
        let Some(price) = self.marks.get(asset).copied() else {
            events.push(rejected(RejectReason::NoPrice));
            return;
        };
        let size = self.entry_size();
        if size < self.params.min_order {
            events.push(rejected(RejectReason::BelowMinimum));
            return;
        }
        let qty = size.checked_div_down(price).unwrap_or(Fixed::ZERO);
        let cost = qty.saturating_mul(price);
        // qty was rounded down, so qty × price ≤ size exactly, and rounding it to the nearest
        // representable amount cannot pass size, which is representable: cost ≤ size ≤ cash.
        if !qty.is_positive() || !cost.is_positive() || cost > self.cash {
            events.push(rejected(RejectReason::ZeroSize));
            return;
        }
        self.cash = self.cash.saturating_sub(cost);
        self.positions.insert(
            asset.clone(),
            Position {
                qty,
                entry: price,
                mark: price,
                high: price,
                value: cost,
            },
        );
        let order = self.take_order_id();
        let name = asset.to_string();
        events.push(RiskEvent::Order {
            asset: name.clone(),
            order,
            side: Side::Buy,
            qty,
            notional: cost,
            reason: OrderReason::Entry,
        });
        events.push(RiskEvent::Fill {
            asset: name,
            order,
            side: Side::Buy,
            qty,
            price,
            notional: cost,
        });
    }

    /// USD to spend on an entry: `base% × equity × multiplier`, capped at `max% × equity` and
    /// at the cash, rounded down. Zero if anything overflows.
    fn entry_size(&self) -> Fixed {
        let equity = self.equity.max(Fixed::ZERO).0;
        let multiplier = self.params.multiplier(self.tier).0;
        // One rounding for the whole product: equity × percent/100 × multiplier.
        let base = mul_div(
            &[equity, self.params.base_position_percent.0, multiplier],
            HUNDRED.saturating_mul(SCALE),
            Round::Down,
        );
        let cap = mul_div(
            &[equity, self.params.max_position_percent.0],
            HUNDRED,
            Round::Down,
        );
        match (base, cap) {
            (Some(base), Some(cap)) => Fixed(base.min(cap)).min(self.cash),
            _ => Fixed::ZERO,
        }
    }

    /// The tier after step (4), from the exact drawdown.
    fn next_tier(&self) -> Tier {
        let reaches = |threshold: Fixed| self.drawdown_reaches(threshold);
        let threshold = |tier: Tier| self.params.threshold(tier).unwrap_or(Fixed::ZERO);
        let hysteresis = self.params.recovery_hysteresis_percent;
        let indicated = Tier::ALL[1..]
            .iter()
            .rev()
            .copied()
            .find(|t| reaches(threshold(*t)))
            .unwrap_or(Tier::Normal);
        if indicated >= self.tier || self.tier == Tier::Normal {
            return indicated.max(self.tier);
        }
        if reaches(threshold(self.tier).saturating_sub(hysteresis)) {
            // Still within the current tier's hysteresis band: no flapping.
            return self.tier;
        }
        // Recovered: the highest lower tier whose band the drawdown is still inside.
        Tier::ALL[1..self.tier.index()]
            .iter()
            .rev()
            .copied()
            .find(|t| reaches(threshold(*t).saturating_sub(hysteresis)))
            .unwrap_or(Tier::Normal)
    }

    /// Whether `1 − equity/peak ≥ percent/100`, decided exactly.
    fn drawdown_reaches(&self, percent: Fixed) -> bool {
        let loss = self.peak.0.saturating_sub(self.equity.0);
        // (peak − equity)/peak ≥ percent/100 ⇔ (peak − equity) × 100 ≥ percent × peak, peak > 0.
        cmp_products(loss, HUNDRED, percent.0, self.peak.0).is_ge()
    }

    fn take_order_id(&mut self) -> u64 {
        let id = self.next_order;
        self.next_order = self.next_order.saturating_add(1);
        id
    }

    /// The settings.
    pub fn params(&self) -> &RiskParams {
        &self.params
    }

    /// Equity: cash plus the value of every position at its mark.
    pub fn equity(&self) -> Fixed {
        self.equity
    }

    /// Cash (USD). Never negative.
    pub fn cash(&self) -> Fixed {
        self.cash
    }

    /// The highest equity so far.
    pub fn peak(&self) -> Fixed {
        self.peak
    }

    /// The drawdown tier.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// The drawdown `1 − equity/peak`, in percent, rounded half to even (to 18 fractional
    /// digits, then to what fits a [`Decimal`]; at least 16). For display: tier decisions use
    /// the exact value.
    pub fn drawdown(&self) -> Decimal {
        let loss = self.peak.0.saturating_sub(self.equity.0);
        mul_div(&[loss, HUNDRED], self.peak.0, Round::HalfEven)
            .map(|raw| Fixed(raw).to_decimal())
            .unwrap_or(Decimal::ZERO)
    }

    /// The held positions, in asset order.
    pub fn positions(&self) -> impl Iterator<Item = (&Asset, &Position)> {
        self.positions.iter()
    }

    /// The position in `asset`, if held.
    pub fn position(&self, asset: &Asset) -> Option<&Position> {
        self.positions.get(asset)
    }

    /// The latest usable mark of `asset`, held or not.
    pub fn mark_of(&self, asset: &Asset) -> Option<Fixed> {
        self.marks.get(asset).copied()
    }

    /// The time of the last step (0 before the first).
    pub fn updated_ms(&self) -> u64 {
        self.updated_ms
    }

    /// The id the next order will get.
    pub fn next_order_id(&self) -> u64 {
        self.next_order
    }

    /// The stored form of the portfolio, stamped with the time of the last step.
    pub fn to_record(&self) -> PortfolioRecord {
        PortfolioRecord {
            updated_ms: self.updated_ms,
            cash: self.cash,
            equity: self.equity,
            peak: self.peak,
            tier: self.tier,
            next_order: self.next_order,
            positions: self
                .positions
                .iter()
                .map(|(asset, p)| PositionRecord {
                    asset: asset.clone(),
                    qty: p.qty,
                    entry: p.entry,
                    mark: p.mark,
                    high: p.high,
                })
                .collect(),
            marks: self
                .marks
                .iter()
                .map(|(asset, price)| MarkRecord {
                    asset: asset.clone(),
                    price: *price,
                })
                .collect(),
        }
    }

    /// The portfolio a record was taken of, with the current settings (a live restart keeps
    /// its cash, positions, peak and tier even if `initial_capital` changed). A held
    /// position's mark is authoritative over the mark list.
    pub fn from_record(
        params: RiskParams,
        record: &PortfolioRecord,
    ) -> Result<Portfolio, RestoreError> {
        let not_positive = |asset: &Asset, what| RestoreError::NotPositive {
            asset: asset.to_string(),
            what,
        };
        let mut marks = BTreeMap::new();
        for m in &record.marks {
            if !m.price.is_positive() {
                return Err(not_positive(&m.asset, "mark"));
            }
            if marks.insert(m.asset.clone(), m.price).is_some() {
                return Err(RestoreError::Duplicate(m.asset.to_string()));
            }
        }
        let mut positions = BTreeMap::new();
        let mut computed = record.cash;
        for p in &record.positions {
            for (what, v) in [
                ("qty", p.qty),
                ("entry", p.entry),
                ("mark", p.mark),
                ("high", p.high),
            ] {
                if !v.is_positive() {
                    return Err(not_positive(&p.asset, what));
                }
            }
            let value = p.qty.saturating_mul(p.mark);
            computed = computed.saturating_add(value);
            let position = Position {
                qty: p.qty,
                entry: p.entry,
                mark: p.mark,
                high: p.high,
                value,
            };
            if positions.insert(p.asset.clone(), position).is_some() {
                return Err(RestoreError::Duplicate(p.asset.to_string()));
            }
            marks.insert(p.asset.clone(), p.mark);
        }
        if record.cash.is_negative() || !record.peak.is_positive() || record.peak < record.equity {
            return Err(RestoreError::Unreachable {
                cash: record.cash,
                equity: record.equity,
                peak: record.peak,
            });
        }
        if computed != record.equity {
            return Err(RestoreError::Inconsistent {
                stored: record.equity,
                computed,
            });
        }
        Ok(Portfolio {
            params,
            cash: record.cash,
            equity: record.equity,
            peak: record.peak,
            tier: record.tier,
            positions,
            marks,
            // Entries waiting for a price are not kept across a restart: the next trending
            // entry of the token asks again.
            pending: BTreeMap::new(),
            next_order: record.next_order.max(1),
            updated_ms: record.updated_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fx(s: &str) -> Fixed {
        Fixed::parse(s).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    fn a(name: &str) -> Asset {
        Asset::named(name)
    }

    /// The default configuration's numbers.
    fn params() -> RiskParams {
        RiskParams {
            initial_capital: fx("10000"),
            base_position_percent: fx("5"),
            max_positions: 8,
            max_position_percent: fx("20"),
            stop_loss_percent: fx("15"),
            trailing_stop_percent: fx("10"),
            drawdown_thresholds: [fx("5"), fx("10"), fx("20")],
            recovery_hysteresis_percent: fx("1"),
            tier_multipliers: [fx("1"), fx("0.5"), fx("0.25"), fx("0")],
            entry_wait_ms: 0,
            min_order: Fixed::ZERO,
        }
    }

    fn marks(list: &[(&str, &str)]) -> Vec<(Asset, Decimal)> {
        list.iter().map(|(n, p)| (a(n), dec(p))).collect()
    }

    fn fills(events: &[RiskEvent]) -> Vec<(String, Side, Fixed, Fixed, Fixed)> {
        events
            .iter()
            .filter_map(|e| match e {
                RiskEvent::Fill {
                    asset,
                    side,
                    qty,
                    price,
                    notional,
                    ..
                } => Some((asset.clone(), *side, *qty, *price, *notional)),
                _ => None,
            })
            .collect()
    }

    fn rejections(events: &[RiskEvent]) -> Vec<(String, RejectReason)> {
        events
            .iter()
            .filter_map(|e| match e {
                RiskEvent::OrderRejected { asset, reason, .. } => Some((asset.clone(), *reason)),
                _ => None,
            })
            .collect()
    }

    fn tier_changes(events: &[RiskEvent]) -> Vec<(Tier, Tier)> {
        events
            .iter()
            .filter_map(|e| match e {
                RiskEvent::TierChange { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect()
    }

    /// Holds one position of `notional` (bought at price 1) and leaves the rest as cash, so
    /// the drawdown can be steered by the position's mark.
    fn steerable(p: RiskParams) -> Portfolio {
        let mut p = Portfolio::new(p);
        p.step(1, &marks(&[("X", "1")]), &[], &[a("X")]);
        p
    }

    #[test]
    fn an_entry_waits_for_its_first_price() {
        let params = RiskParams {
            entry_wait_ms: 30_000,
            ..params()
        };
        let mut p = Portfolio::new(params);
        // No price yet: nothing happens, the entry waits.
        assert!(p.step(1_000, &[], &[], &[a("NEW")]).is_empty());
        // The first mark arrives: bought at it.
        let events = p.step(7_000, &marks(&[("NEW", "2")]), &[], &[]);
        assert_eq!(
            fills(&events),
            vec![("NEW".into(), Side::Buy, fx("250"), fx("2"), fx("500"))]
        );
        // Another one never gets a price: rejected once the wait is over.
        assert!(p.step(8_000, &[], &[], &[a("LATE")]).is_empty());
        assert!(p.step(37_999, &[], &[], &[]).is_empty());
        let events = p.step(38_000, &[], &[], &[]);
        assert!(matches!(
            &events[..],
            [RiskEvent::OrderRejected {
                reason: RejectReason::NoPrice,
                ..
            }]
        ));
        // An exit before the first price cancels the wait, silently.
        assert!(p.step(40_000, &[], &[], &[a("GONE")]).is_empty());
        assert!(p.step(41_000, &[], &[a("GONE")], &[]).is_empty());
        assert!(
            p.step(41_500, &marks(&[("GONE", "1")]), &[], &[])
                .is_empty()
        );
    }

    #[test]
    fn dust_orders_are_rejected() {
        let params = RiskParams {
            min_order: fx("600"),
            ..params()
        };
        let mut p = Portfolio::new(params);
        let events = p.step(1_000, &marks(&[("SOL", "100")]), &[], &[a("SOL")]);
        assert!(matches!(
            &events[..],
            [RiskEvent::OrderRejected {
                reason: RejectReason::BelowMinimum,
                ..
            }]
        ));
    }

    #[test]
    fn fixed_converts_displays_and_parses() {
        assert_eq!(
            Fixed::from_decimal(dec("0.00001585")).unwrap().raw(),
            15_850_000_000_000
        );
        assert_eq!(
            Fixed::from_decimal(dec("1500")).unwrap(),
            Fixed::from_int(1500)
        );
        assert_eq!(fx("-12.5").to_string(), "-12.5");
        assert_eq!(fx("0.000000000000000001").raw(), 1);
        assert_eq!(fx("3.000").to_string(), "3");
        // Half to even beyond 18 fractional digits.
        assert_eq!(Fixed::from_decimal(Decimal::new(25, -19)).unwrap().raw(), 2);
        assert_eq!(Fixed::from_decimal(Decimal::new(35, -19)).unwrap().raw(), 4);
        assert_eq!(
            Fixed::from_decimal(Decimal::new(-35, -19)).unwrap().raw(),
            -4
        );
        assert_eq!(
            Fixed::from_decimal(Decimal::new(251, -20)).unwrap().raw(),
            3
        );
        assert_eq!(
            Fixed::from_decimal(Decimal::new(i64::MAX, -30))
                .unwrap()
                .raw(),
            9_223_372
        );
        assert_eq!(
            Fixed::from_decimal(Decimal::new(i64::MAX, -38)),
            Some(Fixed::ZERO)
        );
        assert_eq!(Fixed::from_decimal(Decimal::new(5, -60)), Some(Fixed::ZERO));
        assert_eq!(Fixed::from_decimal(Decimal::new(1, 21)), None);
        for bad in [
            "",
            "-",
            "1.",
            ".5",
            "1e5",
            "1.0000000000000000001",
            "abc",
            "--1",
            "+1",
        ] {
            assert!(Fixed::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Fixed::parse(&Fixed::MIN.to_string()), Ok(Fixed::MIN));
        assert_eq!(Fixed::parse(&Fixed::MAX.to_string()), Ok(Fixed::MAX));
        assert!(Fixed::parse("170141183460469231732").is_err());
        assert_eq!(
            fx("99.123456789012345678").to_decimal(),
            dec("99.1234567890123457")
        );
        assert_eq!(fx("12.5").to_decimal(), dec("12.5"));
        let json = serde_json::to_string(&fx("0.1")).unwrap();
        assert_eq!(json, "\"0.1\"");
        assert_eq!(serde_json::from_str::<Fixed>(&json).unwrap(), fx("0.1"));
    }

    #[test]
    fn fixed_arithmetic_rounds_as_documented_and_saturates() {
        assert_eq!(
            fx("0.000000000000000001").checked_mul(fx("0.5")),
            Some(Fixed::ZERO)
        );
        assert_eq!(
            fx("0.000000000000000003")
                .checked_mul(fx("0.5"))
                .unwrap()
                .raw(),
            2
        );
        assert_eq!(
            fx("-0.000000000000000003")
                .checked_mul(fx("0.5"))
                .unwrap()
                .raw(),
            -2
        );
        assert_eq!(
            fx("10").checked_div_down(fx("3")).unwrap(),
            fx("3.333333333333333333")
        );
        assert_eq!(
            fx("-10").checked_div_down(fx("3")).unwrap(),
            fx("-3.333333333333333333")
        );
        assert_eq!(fx("1").checked_div_down(Fixed::ZERO), None);
        assert_eq!(Fixed::MAX.checked_mul(fx("2")), None);
        assert_eq!(Fixed::MAX.saturating_mul(fx("2")), Fixed::MAX);
        assert_eq!(Fixed::MAX.saturating_mul(fx("-2")), Fixed::MIN);
        assert_eq!(Fixed::MAX.saturating_add(Fixed::ONE), Fixed::MAX);
        assert_eq!(Fixed::MIN.checked_sub(Fixed::ONE), None);
        // Products wider than i128 before the division are still exact.
        let qty = fx("31545741.324921135646687697");
        assert_eq!(qty.checked_mul(fx("0.00001585")).unwrap(), fx("500"));
        assert_eq!(fx("500").checked_div_down(fx("0.00001585")).unwrap(), qty);
    }

    #[test]
    fn params_come_from_the_configuration() {
        let text = r#"
            initial_capital = 10000
            base_position_percent = 5
            max_positions = 8
            max_position_percent = 20
            stop_loss_percent = 15
            trailing_stop_percent = 10
            warning_drawdown_percent = 5
            critical_drawdown_percent = 10
            emergency_drawdown_percent = 20
            recovery_hysteresis_percent = 1
            tier_multipliers = [1, 0.5, 0.25, 0]
            entry_price_wait_secs = 30
            min_order_usd = 10
        "#;
        let config: RiskConfig = toml::from_str(text).unwrap();
        let expected = RiskParams {
            entry_wait_ms: 30_000,
            min_order: fx("10"),
            ..params()
        };
        assert_eq!(RiskParams::try_from(&config).unwrap(), expected);
        let mut zero = config.clone();
        zero.initial_capital = Percent::parse("0").unwrap();
        assert_eq!(
            RiskParams::from_config(&zero).unwrap_err().field,
            "initial_capital"
        );
        let mut huge = config;
        huge.base_position_percent = Percent(Decimal::new(1, 25));
        assert!(RiskParams::from_config(&huge).is_err());
    }

    #[test]
    fn buys_the_base_size_at_the_mark_and_marks_equity_exactly() {
        let mut p = Portfolio::new(params());
        let events = p.step(1000, &marks(&[("PEPE", "0.00001585")]), &[], &[a("PEPE")]);
        // 5 % of 10 000 = 500 USD; qty = 500 / 0.00001585 rounded down to 18 decimals, and
        // qty × price = 499.99999999999999999999999979... rounds half to even to 500.
        let qty = fx("31545741.324921135646687697");
        assert_eq!(
            events,
            vec![
                RiskEvent::Order {
                    asset: "PEPE".into(),
                    order: 1,
                    side: Side::Buy,
                    qty,
                    notional: fx("500"),
                    reason: OrderReason::Entry,
                },
                RiskEvent::Fill {
                    asset: "PEPE".into(),
                    order: 1,
                    side: Side::Buy,
                    qty,
                    price: fx("0.00001585"),
                    notional: fx("500"),
                },
            ]
        );
        assert_eq!(p.cash(), fx("9500"));
        assert_eq!(
            p.equity(),
            fx("10000"),
            "a fill without fees does not change equity"
        );
        // qty × 0.00001412 = 445.4258675078864353312...: equity moves by exactly
        // 445.425867507886435331 − 500. That is 10.9 % below the entry (no stop-loss at 15 %)
        // but more than 10 % below the high (the entry): the trailing stop sells at the mark.
        let events = p.step(2000, &marks(&[("PEPE", "0.00001412")]), &[], &[]);
        assert_eq!(p.equity(), fx("9945.425867507886435331"));
        assert_eq!(p.cash(), p.equity());
        assert_eq!(p.positions().count(), 0);
        assert_eq!(p.peak(), fx("10000"));
        assert_eq!(p.drawdown(), dec("0.545741324921135647"));
        let lines: Vec<String> = events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![
                r#"{"kind":"order","asset":"PEPE","order":2,"side":"sell","qty":"31545741.324921135646687697","notional":"445.425867507886435331","reason":"trailing_stop"}"#,
                r#"{"kind":"fill","asset":"PEPE","order":2,"side":"sell","qty":"31545741.324921135646687697","price":"0.00001412","notional":"445.425867507886435331"}"#,
            ]
        );
        for (line, event) in lines.iter().zip(&events) {
            assert_eq!(&serde_json::from_str::<RiskEvent>(line).unwrap(), event);
        }
    }

    #[test]
    fn marks_move_equity_by_qty_times_the_price_change() {
        let mut config = params();
        config.stop_loss_percent = Fixed::ZERO;
        config.trailing_stop_percent = Fixed::ZERO;
        let mut p = Portfolio::new(config);
        p.step(1, &marks(&[("PEPE", "0.00001585")]), &[], &[a("PEPE")]);
        p.step(2, &marks(&[("PEPE", "0.00001412")]), &[], &[]);
        assert_eq!(p.equity(), fx("9945.425867507886435331"));
        assert_eq!(
            p.position(&a("PEPE")).unwrap().value(),
            fx("445.425867507886435331")
        );
        p.step(3, &marks(&[("PEPE", "0.00001585")]), &[], &[]);
        assert_eq!(
            p.equity(),
            fx("10000"),
            "back at the entry price, back at the start"
        );
        let line = serde_json::to_string(&p.step(4, &[], &[a("PEPE")], &[])[0]).unwrap();
        assert!(
            line.ends_with(r#""notional":"500","reason":"exit"}"#),
            "{line}"
        );
        assert_eq!(p.cash(), fx("10000"));
    }

    #[test]
    fn sizes_by_the_tier_multiplier() {
        let mut config = params();
        config.base_position_percent = fx("50");
        config.max_position_percent = fx("50");
        config.stop_loss_percent = Fixed::ZERO;
        config.trailing_stop_percent = Fixed::ZERO;
        let mut p = Portfolio::new(config);
        let size = |events: &[RiskEvent]| fills(events)[0].4;
        // Normal: 50 % × 10 000 × 1.
        let events = p.step(
            1,
            &marks(&[("X", "1"), ("Y", "1"), ("Z", "1")]),
            &[],
            &[a("X")],
        );
        assert_eq!(size(&events), fx("5000"));
        // X at 0.88: equity 9 400, drawdown 6 %: Warning, 50 % × 9 400 × 0.5.
        let events = p.step(2, &marks(&[("X", "0.88")]), &[], &[a("Y")]);
        assert_eq!(p.tier(), Tier::Warning);
        assert_eq!(size(&events), fx("2350"));
        // X at 0.78: equity 8 900, drawdown 11 %: Critical, 50 % × 8 900 × 0.25.
        let events = p.step(3, &marks(&[("X", "0.78")]), &[], &[a("Z")]);
        assert_eq!(p.tier(), Tier::Critical);
        assert_eq!(size(&events), fx("1112.5"));
        assert_eq!(p.cash(), fx("1537.5"));
        assert_eq!(p.equity(), fx("8900"));
    }

    #[test]
    fn caps_at_max_position_percent_and_at_cash() {
        let mut config = params();
        config.base_position_percent = fx("50");
        config.max_position_percent = fx("20");
        let mut p = Portfolio::new(config);
        let events = p.step(
            1,
            &marks(&[
                ("A", "1"),
                ("B", "1"),
                ("C", "1"),
                ("D", "1"),
                ("E", "1"),
                ("F", "1"),
            ]),
            &[],
            &[a("A"), a("B"), a("C"), a("D"), a("E"), a("F")],
        );
        let sizes: Vec<Fixed> = fills(&events).iter().map(|f| f.4).collect();
        // 20 % of 10 000 each, until the cash runs out; the last one gets nothing.
        assert_eq!(sizes, vec![fx("2000"); 5]);
        assert_eq!(
            rejections(&events),
            vec![("F".into(), RejectReason::ZeroSize)]
        );
        assert_eq!(p.cash(), Fixed::ZERO);

        let mut config = params();
        config.base_position_percent = fx("30");
        config.max_position_percent = fx("100");
        let mut p = Portfolio::new(config);
        let events = p.step(
            1,
            &marks(&[("A", "1"), ("B", "1"), ("C", "1"), ("D", "1")]),
            &[],
            &[a("A"), a("B"), a("C"), a("D")],
        );
        let sizes: Vec<Fixed> = fills(&events).iter().map(|f| f.4).collect();
        assert_eq!(
            sizes,
            vec![fx("3000"), fx("3000"), fx("3000"), fx("1000")],
            "capped by cash"
        );
        assert_eq!(p.equity(), fx("10000"));
    }

    #[test]
    fn refuses_past_max_positions() {
        let mut config = params();
        config.max_positions = 2;
        let mut p = Portfolio::new(config);
        let events = p.step(
            1,
            &marks(&[("A", "1"), ("B", "1"), ("C", "1")]),
            &[],
            &[a("A"), a("B"), a("C")],
        );
        assert_eq!(fills(&events).len(), 2);
        assert_eq!(
            rejections(&events),
            vec![("C".into(), RejectReason::MaxPositions)]
        );
        // An exit frees a slot for an entry in the same step.
        let events = p.step(2, &[], &[a("A")], &[a("C")]);
        let f = fills(&events);
        assert_eq!((f[0].0.as_str(), f[0].1), ("A", Side::Sell));
        assert_eq!((f[1].0.as_str(), f[1].1), ("C", Side::Buy));
    }

    #[test]
    fn rejects_entries_without_a_price_and_ignores_held_ones() {
        let mut p = Portfolio::new(params());
        let events = p.step(1, &marks(&[("A", "1")]), &[], &[a("A"), a("B")]);
        assert_eq!(
            rejections(&events),
            vec![("B".into(), RejectReason::NoPrice)]
        );
        // A price that rounds to zero at 18 decimals is not a price.
        let events = p.step(2, &[(a("C"), Decimal::new(4, -19))], &[], &[a("C")]);
        assert_eq!(
            rejections(&events),
            vec![("C".into(), RejectReason::NoPrice)]
        );
        assert_eq!(p.mark_of(&a("C")), None);
        // The mark of an unheld asset is remembered for a later entry.
        p.step(3, &marks(&[("B", "4")]), &[], &[]);
        assert_eq!(p.mark_of(&a("B")), Some(fx("4")));
        let events = p.step(4, &[], &[], &[a("A"), a("B")]);
        assert_eq!(
            fills(&events).len(),
            1,
            "A is held already; only B is bought"
        );
        assert_eq!(fills(&events)[0].3, fx("4"));
        assert_eq!(p.next_order_id(), 3);
    }

    #[test]
    fn exits_of_unheld_assets_do_nothing() {
        let mut p = Portfolio::new(params());
        let events = p.step(1, &marks(&[("A", "1")]), &[a("A"), a("B")], &[]);
        assert!(events.is_empty());
        assert_eq!(p.cash(), fx("10000"));
        assert_eq!(p.next_order_id(), 1);
    }

    #[test]
    fn stop_loss_sells_at_the_mark() {
        let mut config = params();
        config.trailing_stop_percent = fx("15");
        let mut p = Portfolio::new(config);
        p.step(1, &marks(&[("A", "100")]), &[], &[a("A")]);
        // The high is the entry, so at exactly 15 % below it both stops are reached:
        // stop-loss wins.
        let events = p.step(2, &marks(&[("A", "85.0000000001")]), &[], &[]);
        assert!(fills(&events).is_empty(), "just above the stop");
        let events = p.step(3, &marks(&[("A", "85")]), &[], &[]);
        let reasons: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                RiskEvent::Order { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect();
        assert_eq!(reasons, vec![OrderReason::StopLoss]);
        assert_eq!(fills(&events)[0].3, fx("85"));
        assert_eq!(fills(&events)[0].4, fx("425"));
        assert_eq!(p.cash(), fx("9925"));
        assert_eq!(p.equity(), fx("9925"));
    }

    #[test]
    fn trailing_stop_follows_the_high() {
        let mut p = Portfolio::new(params());
        p.step(1, &marks(&[("A", "100")]), &[], &[a("A")]);
        p.step(2, &marks(&[("A", "150")]), &[], &[]);
        assert_eq!(p.position(&a("A")).unwrap().high, fx("150"));
        let events = p.step(3, &marks(&[("A", "135.1")]), &[], &[]);
        assert!(events.is_empty());
        let events = p.step(4, &marks(&[("A", "135")]), &[], &[]);
        assert!(matches!(
            events[0],
            RiskEvent::Order {
                reason: OrderReason::TrailingStop,
                ..
            }
        ));
        assert_eq!(p.positions().count(), 0);
        assert_eq!(p.equity(), fx("10175"));
    }

    #[test]
    fn zero_percent_stops_are_disabled() {
        let mut config = params();
        config.stop_loss_percent = Fixed::ZERO;
        config.trailing_stop_percent = Fixed::ZERO;
        let mut p = Portfolio::new(config);
        p.step(1, &marks(&[("A", "100")]), &[], &[a("A")]);
        let events = p.step(2, &marks(&[("A", "1")]), &[], &[]);
        assert!(fills(&events).is_empty());
    }

    #[test]
    fn tiers_skip_and_emergency_halts_entries() {
        let mut config = params();
        config.base_position_percent = fx("100");
        config.max_position_percent = fx("100");
        config.stop_loss_percent = Fixed::ZERO;
        config.trailing_stop_percent = Fixed::ZERO;
        let mut p = steerable(config);
        assert_eq!(p.cash(), Fixed::ZERO);
        // A 12 % loss jumps Normal → Critical at once.
        let events = p.step(2, &marks(&[("X", "0.88")]), &[], &[]);
        assert_eq!(tier_changes(&events), vec![(Tier::Normal, Tier::Critical)]);
        assert_eq!(
            serde_json::to_string(&events[0]).unwrap(),
            r#"{"kind":"tier_change","from":"normal","to":"critical","drawdown":"12","equity":"8800","peak":"10000"}"#
        );
        // Exactly 20 %: Emergency, and the entry in the same step is halted.
        let events = p.step(3, &marks(&[("X", "0.8"), ("Y", "1")]), &[], &[a("Y")]);
        assert_eq!(
            tier_changes(&events),
            vec![(Tier::Critical, Tier::Emergency)]
        );
        assert_eq!(
            rejections(&events),
            vec![("Y".into(), RejectReason::Halted)]
        );
        assert_eq!(p.drawdown(), dec("20"));
    }

    #[test]
    fn recovery_needs_the_hysteresis_and_does_not_flap() {
        let mut config = params();
        config.base_position_percent = fx("100");
        config.max_position_percent = fx("100");
        config.stop_loss_percent = Fixed::ZERO;
        config.trailing_stop_percent = Fixed::ZERO;
        let mut p = steerable(config);
        let tier_at = |p: &mut Portfolio, t: u64, mark: &str| {
            p.step(t, &marks(&[("X", mark)]), &[], &[]);
            p.tier()
        };
        assert_eq!(tier_at(&mut p, 2, "0.95"), Tier::Warning);
        // Around the 5 % threshold: recovering needs a drawdown below 4 %.
        for (t, mark) in [(3, "0.951"), (4, "0.96"), (5, "0.95"), (6, "0.9599")] {
            assert_eq!(tier_at(&mut p, t, mark), Tier::Warning, "{mark}");
        }
        let events = p.step(7, &marks(&[("X", "0.9601")]), &[], &[]);
        assert_eq!(tier_changes(&events), vec![(Tier::Warning, Tier::Normal)]);
        assert_eq!(tier_at(&mut p, 8, "0.9501"), Tier::Normal);
        // Emergency at 20 %; back at 9.5 % it lands in Critical (still within 10 − 1), not
        // Warning, which the drawdown alone would indicate.
        assert_eq!(tier_at(&mut p, 9, "0.79"), Tier::Emergency);
        assert_eq!(
            tier_at(&mut p, 10, "0.805"),
            Tier::Emergency,
            "19.5 % is inside the band"
        );
        let events = p.step(11, &marks(&[("X", "0.905")]), &[], &[]);
        assert_eq!(
            tier_changes(&events),
            vec![(Tier::Emergency, Tier::Critical)]
        );
        assert_eq!(tier_at(&mut p, 12, "0.93"), Tier::Warning);
        assert_eq!(tier_at(&mut p, 13, "1.2"), Tier::Normal);
        assert_eq!(p.peak(), fx("12000"));
        // A new peak resets the reference: 5 % below 12 000 is Warning.
        assert_eq!(tier_at(&mut p, 14, "1.14"), Tier::Warning);
    }

    #[test]
    fn order_ids_are_sequential_in_processing_order() {
        let mut p = Portfolio::new(params());
        p.step(1, &marks(&[("A", "1"), ("B", "1")]), &[], &[a("A"), a("B")]);
        // B stops out (step 2), A exits (step 3), C is bought (step 5).
        let events = p.step(2, &marks(&[("B", "0.5"), ("C", "1")]), &[a("A")], &[a("C")]);
        let orders: Vec<(String, u64)> = events
            .iter()
            .filter_map(|e| match e {
                RiskEvent::Order { asset, order, .. } => Some((asset.clone(), *order)),
                _ => None,
            })
            .collect();
        assert_eq!(
            orders,
            vec![("B".into(), 3), ("A".into(), 4), ("C".into(), 5)]
        );
    }

    #[test]
    fn survives_a_record_round_trip() {
        let mut p = Portfolio::new(params());
        p.step(
            5,
            &marks(&[("A", "3"), ("B", "0.5"), ("C", "7")]),
            &[],
            &[a("A"), a("B")],
        );
        p.step(6, &marks(&[("A", "2.71")]), &[], &[]);
        let record = p.to_record();
        assert_eq!(record.updated_ms, 6);
        let mut back = Portfolio::from_record(params(), &record).unwrap();
        assert_eq!(back.to_record(), record);
        let step = |p: &mut Portfolio| p.step(7, &marks(&[("B", "0.4")]), &[], &[a("C")]);
        assert_eq!(step(&mut back), step(&mut p));
        assert_eq!(back.to_record(), p.to_record());

        let mut bad = record.clone();
        bad.equity = bad.equity.saturating_add(Fixed::from_raw(1));
        bad.peak = bad.peak.max(bad.equity);
        assert!(matches!(
            Portfolio::from_record(params(), &bad),
            Err(RestoreError::Inconsistent { .. })
        ));
        let mut bad = record.clone();
        bad.positions[0].qty = Fixed::ZERO;
        assert!(matches!(
            Portfolio::from_record(params(), &bad),
            Err(RestoreError::NotPositive { what: "qty", .. })
        ));
        let mut bad = record;
        bad.marks.push(bad.marks[0].clone());
        assert!(matches!(
            Portfolio::from_record(params(), &bad),
            Err(RestoreError::Duplicate(_))
        ));
    }
}
