//! Fusion: the latest fresh price per (asset, source), discrepancies between sources, and the
//! fused price that marks the portfolio.
//!
//! Freshness is judged against the dataflow time (the ingest time being completed), never a
//! clock: a price is fresh while `now ≤ publish + staleness(source)`. A discrepancy fires when
//! the spread between the fresh sources of an asset goes above a threshold, and the asset
//! counts as agreeing again only once the spread is back under a lower one (hysteresis). The
//! fused price is the price of the first fresh source in the configured order.
//!
//! ```
//! use sluice::ops::fusion::{AssetFusion, FusionParams};
//! use sluice::model::{Asset, Decimal, PricePoint, PriceSource};
//! let params = FusionParams::for_tests();
//! let tick = |price: i64, source: PriceSource| PricePoint {
//!     asset: Asset::named("SOL"), source, price: Decimal::new(price, -2),
//!     publish_ms: 1_000, change_24h: None, chain: None,
//! };
//! let mut sol = AssetFusion::default();
//! sol.offer(&tick(14_000, PriceSource::Birdeye));
//! sol.offer(&tick(14_500, PriceSource::Dexscreener));
//! let step = sol.evaluate(&Asset::named("SOL"), 2_000, &params);
//! let event = step.discrepancy.unwrap(); // 3.57 % apart, threshold 2 %
//! assert_eq!(event.percent.to_string(), "3.5714");
//! assert_eq!(step.fused.unwrap().source, PriceSource::Birdeye); // birdeye before dexscreener
//! ```

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::FusionConfig;
use crate::model::{Asset, Decimal, PricePoint, PriceSource};

/// Fusion settings, resolved from the configuration.
#[derive(Clone, Debug)]
pub struct FusionParams {
    /// Source families in order of preference.
    pub order: Vec<String>,
    /// Discrepancy threshold (percent, exclusive).
    pub threshold: Decimal,
    /// Discrepancy clear level (percent).
    pub clear: Decimal,
    /// Staleness per family (ms).
    pub staleness_ms: BTreeMap<String, i64>,
    /// Two prices are compared only if their publish times are this close (ms).
    pub max_skew_ms: i64,
}

impl From<&FusionConfig> for FusionParams {
    fn from(config: &FusionConfig) -> Self {
        FusionParams {
            order: config.source_order.clone(),
            threshold: config.discrepancy_threshold_percent.value(),
            clear: config.discrepancy_clear_percent.value(),
            staleness_ms: config
                .staleness_secs
                .iter()
                .map(|(family, secs)| (family.clone(), *secs as i64 * 1000))
                .collect(),
            max_skew_ms: config.discrepancy_max_skew_secs as i64 * 1000,
        }
    }
}

impl FusionParams {
    /// Fixed settings for examples and tests, independent of `config/default.toml` so that
    /// tuning the defaults does not move the tests: 2 % threshold, 1.5 % clear, 60 s (Hermes)
    /// and 120 s staleness, 10 s skew.
    pub fn for_tests() -> FusionParams {
        FusionParams {
            order: ["hermes", "mesh", "birdeye", "dexscreener"]
                .map(String::from)
                .to_vec(),
            threshold: Decimal::new(2, 0),
            clear: Decimal::new(15, -1),
            staleness_ms: [
                ("hermes", 60_000),
                ("mesh", 120_000),
                ("birdeye", 120_000),
                ("dexscreener", 120_000),
            ]
            .into_iter()
            .map(|(f, s)| (f.to_owned(), s))
            .collect(),
            max_skew_ms: 10_000,
        }
    }

    /// A validated configuration names every family; a family missing anyway (params built
    /// by hand) counts as never fresh rather than getting an invented limit.
    fn staleness(&self, source: &PriceSource) -> i64 {
        self.staleness_ms
            .get(source.family())
            .copied()
            .unwrap_or(-1)
    }

    fn rank(&self, source: &PriceSource) -> usize {
        self.order
            .iter()
            .position(|f| f == source.family())
            .unwrap_or(self.order.len())
    }
}

/// A source's latest price for an asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceQuote {
    /// The price.
    pub price: Decimal,
    /// Its publish time (ms).
    pub publish_ms: i64,
}

/// The price that marks an asset, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fused {
    /// The source chosen.
    pub source: PriceSource,
    /// Its price.
    pub price: Decimal,
    /// Its publish time (ms).
    pub publish_ms: i64,
}

/// The journal event: two fresh sources of one asset disagree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "price_discrepancy")]
pub struct PriceDiscrepancy {
    /// The asset.
    #[serde(with = "display_string")]
    pub asset: Asset,
    /// The sources with the lowest and the highest price.
    pub sources: [String; 2],
    /// Their prices.
    pub prices: [String; 2],
    /// (high − low) / low × 100, truncated to 4 decimals.
    #[serde(with = "crate::model::decimal::as_string")]
    pub percent: Decimal,
}

/// What one evaluation of an asset produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// A discrepancy that just began.
    pub discrepancy: Option<PriceDiscrepancy>,
    /// The fused price, if it changed.
    pub fused: Option<Fused>,
    /// When the next fresh price goes stale: the asset must be evaluated again then.
    pub next_expiry: Option<u64>,
}

/// One asset's fusion state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssetFusion {
    latest: BTreeMap<PriceSource, SourceQuote>,
    discrepant: bool,
    fused: Option<Fused>,
}

impl AssetFusion {
    /// Takes a price if it is newer (by publish time) than the source's current one.
    pub fn offer(&mut self, tick: &PricePoint) -> bool {
        let quote = SourceQuote {
            price: tick.price,
            publish_ms: tick.publish_ms,
        };
        match self.latest.get_mut(&tick.source) {
            // Never backwards; of two prices with one publish time the greater stays, so the
            // result does not depend on the order they arrive in.
            Some(current)
                if (current.publish_ms, current.price) >= (quote.publish_ms, quote.price) =>
            {
                false
            }
            Some(current) => {
                *current = quote;
                true
            }
            None => {
                self.latest.insert(tick.source.clone(), quote);
                true
            }
        }
    }

    /// The current fused price.
    pub fn fused(&self) -> Option<&Fused> {
        self.fused.as_ref()
    }

    /// The latest price of every source (fresh or not).
    pub fn latest(&self) -> impl Iterator<Item = (&PriceSource, &SourceQuote)> {
        self.latest.iter()
    }

    /// True when nothing is kept for the asset.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty() && self.fused.is_none()
    }

    /// Evaluates the asset at dataflow time `now_ms`: drops stale prices, updates the
    /// discrepancy state and the fused price.
    pub fn evaluate(&mut self, asset: &Asset, now_ms: u64, params: &FusionParams) -> Evaluation {
        let now = now_ms as i64;
        self.latest
            .retain(|source, q| q.publish_ms.saturating_add(params.staleness(source)) >= now);
        let next_expiry = self
            .latest
            .iter()
            .map(|(source, q)| {
                (q.publish_ms.saturating_add(params.staleness(source)) + 1).max(0) as u64
            })
            .min();

        let mut evaluation = Evaluation {
            next_expiry,
            ..Evaluation::default()
        };

        // The widest pair among prices published close together: a fresh quote against a
        // stale-ish one of a volatile asset measures movement, not disagreement.
        let quotes: Vec<(&PriceSource, &SourceQuote)> = self.latest.iter().collect();
        let mut widest: Option<(Spread, usize, usize)> = None;
        for (i, (_, a)) in quotes.iter().enumerate() {
            for (j, (_, b)) in quotes.iter().enumerate().skip(i + 1) {
                if (a.publish_ms - b.publish_ms).abs() > params.max_skew_ms {
                    continue;
                }
                let (low, high) = if a.price.cmp_value(&b.price).is_le() {
                    (i, j)
                } else {
                    (j, i)
                };
                let spread = Spread::of(&quotes[low].1.price, &quotes[high].1.price);
                if widest
                    .as_ref()
                    .is_none_or(|(w, _, _)| spread.cmp(w).is_gt())
                {
                    widest = Some((spread, low, high));
                }
            }
        }
        if self.latest.len() < 2 {
            self.discrepant = false;
        } else if let Some((spread, low, high)) = widest {
            if !self.discrepant && spread.exceeds(&params.threshold) {
                self.discrepant = true;
                let ((low_source, low_q), (high_source, high_q)) = (quotes[low], quotes[high]);
                evaluation.discrepancy = Some(PriceDiscrepancy {
                    asset: asset.clone(),
                    sources: [low_source.to_string(), high_source.to_string()],
                    prices: [low_q.price.to_string(), high_q.price.to_string()],
                    percent: spread.percent(),
                });
            } else if self.discrepant && spread.below(&params.clear) {
                self.discrepant = false;
            }
        }

        let best = self
            .latest
            .iter()
            .min_by(|a, b| {
                params
                    .rank(a.0)
                    .cmp(&params.rank(b.0))
                    .then_with(|| b.1.publish_ms.cmp(&a.1.publish_ms))
                    .then_with(|| a.0.cmp(b.0))
            })
            .map(|(source, q)| Fused {
                source: source.clone(),
                price: q.price,
                publish_ms: q.publish_ms,
            });
        if best != self.fused {
            self.fused = best.clone();
            evaluation.fused = best;
        }
        evaluation
    }
}

/// `(high − low) / low`, kept as an exact ratio of aligned integers.
struct Spread {
    diff: i128,
    low: i128,
}

impl Spread {
    /// Orders spreads by size, exactly: a/b vs c/d as a·d vs c·b.
    fn cmp(&self, other: &Spread) -> Ordering {
        match (
            self.diff.checked_mul(other.low),
            other.diff.checked_mul(self.low),
        ) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.percent().cmp_value(&other.percent()),
        }
    }

    fn of(low: &Decimal, high: &Decimal) -> Spread {
        let expo = low.expo.min(high.expo);
        match (low.scaled_to(expo), high.scaled_to(expo)) {
            (Some(l), Some(h)) if l > 0 => Spread {
                diff: h - l,
                low: l,
            },
            // Non-positive prices are refused at parse; treat them as agreeing.
            _ => Spread { diff: 0, low: 1 },
        }
    }

    /// diff × 100 vs threshold × low, exactly.
    fn compare(&self, threshold: &Decimal) -> Ordering {
        let lhs = (self.diff, 2);
        let rhs_mantissa = i128::from(threshold.mantissa).checked_mul(self.low);
        match rhs_mantissa {
            Some(rhs) => compare_scaled(lhs.0, lhs.1, rhs, threshold.expo),
            None => Ordering::Less,
        }
    }

    fn exceeds(&self, threshold: &Decimal) -> bool {
        self.compare(threshold) == Ordering::Greater
    }

    fn below(&self, threshold: &Decimal) -> bool {
        self.compare(threshold) == Ordering::Less
    }

    /// The spread in percent, truncated to 4 decimals.
    fn percent(&self) -> Decimal {
        let scaled = self
            .diff
            .checked_mul(1_000_000)
            .map(|d| d / self.low)
            .unwrap_or(i128::from(i64::MAX));
        Decimal::new(i64::try_from(scaled).unwrap_or(i64::MAX), -4)
    }
}

/// Compares `a × 10^ea` with `b × 10^eb` exactly, for non-negative `a` and `b`. A side that
/// overflows i128 once scaled is the larger one.
fn compare_scaled(a: i128, ea: i32, b: i128, eb: i32) -> Ordering {
    let shift = ea - eb;
    let pow = |n: i32| 10i128.checked_pow(n.unsigned_abs());
    if shift >= 0 {
        match pow(shift).and_then(|f| a.checked_mul(f)) {
            Some(a) => a.cmp(&b),
            None => Ordering::Greater,
        }
    } else {
        match pow(shift).and_then(|f| b.checked_mul(f)) {
            Some(b) => a.cmp(&b),
            None => Ordering::Less,
        }
    }
}

mod display_string {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::model::Asset;

    pub fn serialize<S: Serializer>(asset: &Asset, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(asset)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Asset, D::Error> {
        let text = String::deserialize(d)?;
        Ok(Asset::named(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tick(price: i64, expo: i32, publish_ms: i64, source: PriceSource) -> PricePoint {
        PricePoint {
            asset: Asset::named("X"),
            source,
            price: Decimal::new(price, expo),
            publish_ms,
            change_24h: None,
            chain: None,
        }
    }

    #[test]
    fn discrepancy_fires_on_crossing_with_hysteresis() {
        let p = FusionParams::for_tests();
        let asset = Asset::named("X");
        let mut f = AssetFusion::default();
        f.offer(&tick(100, 0, 0, PriceSource::Birdeye));
        f.offer(&tick(102, 0, 0, PriceSource::Dexscreener));
        assert!(
            f.evaluate(&asset, 10, &p).discrepancy.is_none(),
            "exactly 2 % is not more than 2 %"
        );
        f.offer(&tick(1021, -1, 1, PriceSource::Dexscreener));
        let e = f.evaluate(&asset, 10, &p).discrepancy.unwrap();
        assert_eq!(e.sources, ["birdeye".to_owned(), "dexscreener".to_owned()]);
        assert_eq!(e.percent, Decimal::new(21000, -4));
        // Still apart, or back between the two levels: no new event.
        f.offer(&tick(1018, -1, 2, PriceSource::Dexscreener));
        assert!(f.evaluate(&asset, 10, &p).discrepancy.is_none());
        f.offer(&tick(1016, -1, 3, PriceSource::Dexscreener));
        assert!(f.evaluate(&asset, 10, &p).discrepancy.is_none());
        // Back under the clear level, then apart again: a new event.
        f.offer(&tick(1010, -1, 4, PriceSource::Dexscreener));
        assert!(f.evaluate(&asset, 10, &p).discrepancy.is_none());
        f.offer(&tick(1030, -1, 5, PriceSource::Dexscreener));
        assert!(f.evaluate(&asset, 10, &p).discrepancy.is_some());
    }

    #[test]
    fn stale_prices_drop_out_and_the_fused_price_follows_the_order() {
        let p = FusionParams::for_tests();
        let asset = Asset::named("X");
        let mut f = AssetFusion::default();
        f.offer(&tick(100, 0, 0, PriceSource::Dexscreener));
        f.offer(&tick(101, 0, 0, PriceSource::Hermes));
        let e = f.evaluate(&asset, 1_000, &p);
        assert_eq!(e.fused.unwrap().source, PriceSource::Hermes);
        assert_eq!(e.next_expiry, Some(60_001));
        // Hermes is fresh for 60 s, DEX Screener for 120 s.
        let e = f.evaluate(&asset, 60_001, &p);
        assert_eq!(e.fused.unwrap().source, PriceSource::Dexscreener);
        assert_eq!(e.next_expiry, Some(120_001));
        let e = f.evaluate(&asset, 120_001, &p);
        assert_eq!(e.fused, None);
        assert!(f.fused().is_none());
        assert!(f.is_empty());
    }

    #[test]
    fn older_publish_times_never_replace_newer() {
        let mut f = AssetFusion::default();
        assert!(f.offer(&tick(100, 0, 10, PriceSource::Birdeye)));
        assert!(!f.offer(&tick(200, 0, 9, PriceSource::Birdeye)));
        assert!(!f.offer(&tick(100, 0, 10, PriceSource::Birdeye)));
        assert_eq!(f.latest().next().unwrap().1.price, Decimal::new(100, 0));
    }

    #[test]
    fn mesh_origins_are_separate_sources() {
        let p = FusionParams::for_tests();
        let asset = Asset::named("X");
        let mut f = AssetFusion::default();
        f.offer(&tick(100, 0, 5, PriceSource::Mesh(Arc::from("aa"))));
        f.offer(&tick(110, 0, 6, PriceSource::Mesh(Arc::from("bb"))));
        let e = f.evaluate(&asset, 10, &p);
        assert_eq!(
            e.discrepancy.unwrap().sources,
            ["mesh:aa".to_owned(), "mesh:bb".to_owned()]
        );
        // Within the mesh family the newest publish wins.
        assert_eq!(e.fused.unwrap().source, PriceSource::Mesh(Arc::from("bb")));
    }
}
