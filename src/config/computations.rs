//! Settings of the four computations: trending, fusion, debounce and risk.
//!
//! Percentages are exact decimals ([`Percent`]): they take part in integer comparisons with
//! prices, so `0.5` must mean exactly one half of a percent.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{Decimal, FeedId};

/// A percentage, exact: written in TOML as a number (`0.5`) or a string (`"0.5"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percent(pub Decimal);

impl Percent {
    /// A percentage from a decimal literal.
    pub fn parse(text: &str) -> Option<Percent> {
        Decimal::parse(text).ok().map(Percent)
    }

    /// The decimal value (in percent units: `0.5` is half a percent).
    pub fn value(&self) -> Decimal {
        self.0
    }

    /// True when the value is negative.
    pub fn is_negative(&self) -> bool {
        self.0.mantissa < 0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Int(i) => i.to_string(),
            // Rust prints the shortest text that reads back as the same f64: "0.5", not
            // 0.5000000000000000277.
            Raw::Float(f) if f.is_finite() => format!("{f}"),
            Raw::Float(f) => {
                return Err(serde::de::Error::custom(format!("{f} is not a percentage")));
            }
            Raw::Text(t) => t,
        };
        Percent::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a decimal percentage"))
        })
    }
}

type Problem = (&'static str, String);

/// Trending: boost-rank snapshots into entries, exits, moves and momentum.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrendingConfig {
    /// Ranks deeper than this are not tracked: falling past it is an exit.
    pub min_trending_rank: u32,
    /// Velocity (ranks per minute) is measured over this window.
    pub velocity_window_secs: u64,
    /// `high_momentum` fires when the climb velocity crosses this (ranks per minute).
    pub high_momentum_ranks_per_min: Percent,
    /// ...and may fire again only after the velocity fell below this.
    pub high_momentum_rearm_ranks_per_min: Percent,
    /// Positions and events kept per token.
    pub max_history_size: usize,
}

impl TrendingConfig {
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        if self.min_trending_rank == 0 {
            return Err(("min_trending_rank", "must be at least 1".into()));
        }
        if self.velocity_window_secs == 0 {
            return Err(("velocity_window_secs", "must be at least 1".into()));
        }
        if self.max_history_size == 0 {
            return Err(("max_history_size", "must be at least 1".into()));
        }
        if !self.high_momentum_ranks_per_min.value().is_positive() {
            return Err(("high_momentum_ranks_per_min", "must be positive".into()));
        }
        if self
            .high_momentum_rearm_ranks_per_min
            .value()
            .cmp_value(&self.high_momentum_ranks_per_min.value())
            .is_gt()
        {
            return Err((
                "high_momentum_rearm_ranks_per_min",
                "must not exceed high_momentum_ranks_per_min".into(),
            ));
        }
        Ok(())
    }
}

/// Fusion: the latest fresh price per (asset, source), discrepancies, and the fused price.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionConfig {
    /// Source families in order of preference for the fused price.
    pub source_order: Vec<String>,
    /// A discrepancy fires when fresh sources differ by more than this (percent of the lower).
    pub discrepancy_threshold_percent: Percent,
    /// ...and ends only when they are back within this.
    pub discrepancy_clear_percent: Percent,
    /// Only prices published at most this far apart are compared (s).
    pub discrepancy_max_skew_secs: u64,
    /// A price older than this (by publish time, per source family) is not fresh.
    pub staleness_secs: BTreeMap<String, u64>,
}

/// The source families fusion knows.
pub const SOURCE_FAMILIES: [&str; 4] = ["hermes", "dexscreener", "birdeye", "mesh"];

impl FusionConfig {
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        for family in &self.source_order {
            if !SOURCE_FAMILIES.contains(&family.as_str()) {
                return Err((
                    "source_order",
                    format!("unknown source {family:?}; expected {SOURCE_FAMILIES:?}"),
                ));
            }
        }
        for family in SOURCE_FAMILIES {
            if !self.staleness_secs.contains_key(family) {
                return Err(("staleness_secs", format!("no staleness for {family:?}")));
            }
        }
        if let Some(family) = self
            .staleness_secs
            .keys()
            .find(|k| !SOURCE_FAMILIES.contains(&k.as_str()))
        {
            return Err(("staleness_secs", format!("unknown source {family:?}")));
        }
        if !self.discrepancy_threshold_percent.value().is_positive() {
            return Err(("discrepancy_threshold_percent", "must be positive".into()));
        }
        if self.discrepancy_clear_percent.is_negative()
            || self
                .discrepancy_clear_percent
                .value()
                .cmp_value(&self.discrepancy_threshold_percent.value())
                .is_gt()
        {
            return Err((
                "discrepancy_clear_percent",
                "must be between 0 and discrepancy_threshold_percent".into(),
            ));
        }
        Ok(())
    }
}

/// What happens to Hermes feeds not listed in `[[debounce.feeds]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnlistedFeeds {
    /// Not pushed (like Pyth's price pusher: only configured feeds).
    Ignore,
    /// Pushed with the global default thresholds.
    Defaults,
}

/// Debounce: Pyth's update rule per feed, batched over a debounce window.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebounceConfig {
    /// Default `price_deviation` (percent) — the seed keeper's `MIN_PRICE_CHANGE_PERCENT`.
    pub min_price_change_percent: Percent,
    /// Default `time_difference` (ms) — the seed keeper's `FORCE_UPDATE_INTERVAL_MS`.
    pub force_update_interval_ms: u64,
    /// Default `confidence_ratio` (percent).
    pub confidence_ratio_percent: Percent,
    /// Source prices older than this are dropped (s) — the seed keeper's `MAX_STALENESS`.
    pub max_staleness_secs: u64,
    /// The window the first YES opens; its end emits one batch (ms) — `DEBOUNCE_MS`.
    pub debounce_ms: u64,
    /// A batch stops counting as the target once a chain read this long after it shows it did
    /// not land (ms).
    pub receipt_timeout_ms: u64,
    /// What to do with feeds the table does not list.
    pub unlisted_feeds: UnlistedFeeds,
    /// Per-feed thresholds, like the pusher's price config.
    #[serde(default)]
    pub feeds: Vec<FeedConfig>,
}

/// One feed's entry, with the price pusher's field names.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Free-text label for logs and metrics.
    pub alias: String,
    /// The Pyth feed id (64 hex, optional 0x).
    pub id: String,
    /// Heartbeat (s); default `force_update_interval_ms`.
    #[serde(default)]
    pub time_difference: Option<u64>,
    /// Deviation (percent); default `min_price_change_percent`.
    #[serde(default)]
    pub price_deviation: Option<Percent>,
    /// Confidence ratio (percent); default `confidence_ratio_percent`.
    #[serde(default)]
    pub confidence_ratio: Option<Percent>,
    /// When present, a feed joins another feed's batch only if one of these is met.
    #[serde(default)]
    pub early_update: Option<EarlyUpdate>,
}

/// Thresholds for joining a batch early; an omitted one never triggers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyUpdate {
    /// Seconds since the target's publish time.
    #[serde(default)]
    pub time_difference: Option<u64>,
    /// Percent deviation from the target.
    #[serde(default)]
    pub price_deviation: Option<Percent>,
    /// Percent confidence ratio.
    #[serde(default)]
    pub confidence_ratio: Option<Percent>,
}

impl DebounceConfig {
    pub(crate) fn validate(&self, tick_ms: u64) -> Result<(), Problem> {
        if self.debounce_ms < tick_ms {
            return Err((
                "debounce_ms",
                format!(
                    "must be at least dataflow.tick_ms ({tick_ms}), got {}",
                    self.debounce_ms
                ),
            ));
        }
        if self.force_update_interval_ms < 1000 {
            return Err((
                "force_update_interval_ms",
                "must be at least 1000 (publish times are in seconds)".into(),
            ));
        }
        for (key, p) in [
            ("min_price_change_percent", &self.min_price_change_percent),
            ("confidence_ratio_percent", &self.confidence_ratio_percent),
        ] {
            if p.is_negative() {
                return Err((key, "percentages must not be negative".into()));
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut aliases = std::collections::BTreeSet::new();
        for feed in &self.feeds {
            let id: FeedId = feed
                .id
                .parse()
                .map_err(|e| ("feeds", format!("{}: {e}", feed.alias)))?;
            if !ids.insert(id) {
                return Err(("feeds", format!("feed id {id} is listed twice")));
            }
            if !aliases.insert(feed.alias.clone()) {
                return Err(("feeds", format!("alias {:?} is listed twice", feed.alias)));
            }
            // A negative threshold would make the rule say YES on every price.
            let early = feed.early_update.as_ref();
            for (name, p) in [
                ("price_deviation", feed.price_deviation.as_ref()),
                ("confidence_ratio", feed.confidence_ratio.as_ref()),
                (
                    "early_update.price_deviation",
                    early.and_then(|e| e.price_deviation.as_ref()),
                ),
                (
                    "early_update.confidence_ratio",
                    early.and_then(|e| e.confidence_ratio.as_ref()),
                ),
            ] {
                if p.is_some_and(Percent::is_negative) {
                    return Err((
                        "feeds",
                        format!("{}: {name} must not be negative", feed.alias),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Risk: the paper portfolio, position sizing and drawdown tiers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskConfig {
    /// Starting cash in USD (`SLUICE__RISK__INITIAL_CAPITAL`).
    pub initial_capital: Percent,
    /// Position size as a percent of equity, before the tier multiplier.
    pub base_position_percent: Percent,
    /// Most positions held at once.
    pub max_positions: usize,
    /// Largest position as a percent of equity.
    pub max_position_percent: Percent,
    /// Sell when a position falls this far below its entry (percent).
    pub stop_loss_percent: Percent,
    /// Sell when a position falls this far below its high since entry (percent).
    pub trailing_stop_percent: Percent,
    /// Drawdown (percent) at which the Warning tier starts.
    pub warning_drawdown_percent: Percent,
    /// Drawdown at which the Critical tier starts.
    pub critical_drawdown_percent: Percent,
    /// Drawdown at which the Emergency tier starts (new entries halted).
    pub emergency_drawdown_percent: Percent,
    /// A tier is left for a lower one only when the drawdown is this many points below its
    /// threshold.
    pub recovery_hysteresis_percent: Percent,
    /// Size multipliers for Normal, Warning, Critical, Emergency.
    pub tier_multipliers: [Percent; 4],
    /// An entry for a token with no price yet waits this long for its first one (s).
    pub entry_price_wait_secs: u64,
    /// Orders smaller than this (USD) are not placed.
    pub min_order_usd: Percent,
}

impl RiskConfig {
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        if !self.initial_capital.value().is_positive() {
            return Err(("initial_capital", "must be positive".into()));
        }
        let ordered = [
            &self.warning_drawdown_percent,
            &self.critical_drawdown_percent,
            &self.emergency_drawdown_percent,
        ];
        if ordered
            .windows(2)
            .any(|w| w[0].value().cmp_value(&w[1].value()).is_ge())
            || !self.warning_drawdown_percent.value().is_positive()
        {
            return Err((
                "warning_drawdown_percent",
                "tiers must be positive and increasing: warning < critical < emergency".into(),
            ));
        }
        if self.max_positions == 0 {
            return Err(("max_positions", "must be at least 1".into()));
        }
        for (key, p) in [
            ("base_position_percent", &self.base_position_percent),
            ("max_position_percent", &self.max_position_percent),
            ("stop_loss_percent", &self.stop_loss_percent),
            ("trailing_stop_percent", &self.trailing_stop_percent),
            (
                "recovery_hysteresis_percent",
                &self.recovery_hysteresis_percent,
            ),
        ] {
            if p.is_negative() || p.value().cmp_value(&Decimal::new(100, 0)).is_gt() {
                return Err((key, format!("must be between 0 and 100, got {p}")));
            }
        }
        if self.tier_multipliers.iter().any(|m| m.is_negative()) {
            return Err(("tier_multipliers", "must not be negative".into()));
        }
        Ok(())
    }
}
