//! Fusion against a naive recomputation: at every evaluation, the fresh prices, the widest
//! spread, the discrepancy state and the fused price are worked out again from the whole
//! history of offered prices, in plain rational arithmetic, and must match what the
//! incremental `AssetFusion` reports.

use std::sync::Arc;

use proptest::prelude::*;
use sluice::model::{Asset, Decimal, PricePoint, PriceSource};
use sluice::ops::fusion::{AssetFusion, FusionParams};

const STEP_MS: u64 = 250;

fn source(i: usize) -> PriceSource {
    match i {
        0 => PriceSource::Hermes,
        1 => PriceSource::Birdeye,
        2 => PriceSource::Dexscreener,
        3 => PriceSource::Mesh(Arc::from("aa01")),
        _ => PriceSource::Mesh(Arc::from("bb02")),
    }
}

fn params(threshold_tenths: i64, clear_tenths: i64) -> FusionParams {
    FusionParams {
        order: ["mesh", "hermes", "dexscreener", "birdeye"]
            .map(String::from)
            .to_vec(),
        threshold: Decimal::new(threshold_tenths, -1),
        clear: Decimal::new(clear_tenths.min(threshold_tenths), -1),
        staleness_ms: [
            ("hermes", 1_500),
            ("mesh", 3_000),
            ("birdeye", 2_000),
            ("dexscreener", 4_000),
        ]
        .into_iter()
        .map(|(f, s)| (f.to_owned(), s))
        .collect(),
        max_skew_ms: 1_000,
    }
}

/// Per step, the prices offered then: (source, mantissa, expo, age in ms).
type Steps = Vec<Vec<(usize, i64, i32, i64)>>;

fn steps() -> impl Strategy<Value = Steps> {
    let price = (0..5usize, 9_500i64..10_500, 0u32..=2, 0i64..2_500).prop_map(|(s, m, k, age)| {
        // Around 100 whatever the exponent: m × 10^k at 10^-(2 + k).
        (s, m * 10i64.pow(k), -2 - k as i32, age)
    });
    proptest::collection::vec(proptest::collection::vec(price, 0..3), 1..60)
}

fn point(s: usize, mantissa: i64, expo: i32, publish_ms: i64) -> PricePoint {
    PricePoint {
        asset: Asset::named("SOL"),
        source: source(s),
        price: Decimal::new(mantissa, expo),
        publish_ms,
        change_24h: None,
        chain: None,
    }
}

/// `d` as an exact rational `num / 10^den_pow` with both parts in i128.
fn at_expo(d: &Decimal, expo: i32) -> i128 {
    i128::from(d.mantissa) * 10i128.pow((d.expo - expo) as u32)
}

/// What one evaluation should report, recomputed from scratch.
#[derive(Debug, PartialEq)]
struct Expected {
    /// (low source, high source, percent × 10^4) of a discrepancy that begins now.
    discrepancy: Option<(String, String, i128)>,
    /// The fused (source, price, publish) after this evaluation.
    fused: Option<(PriceSource, (i64, i32), i64)>,
}

struct Naive {
    history: Vec<PricePoint>,
    discrepant: bool,
}

impl Naive {
    fn evaluate(&mut self, now: i64, p: &FusionParams) -> Expected {
        // Latest per source by (publish, price value), then fresh ones only.
        let mut fresh: Vec<&PricePoint> = Vec::new();
        for s in 0..5 {
            let src = source(s);
            let latest = self
                .history
                .iter()
                .filter(|q| q.source == src)
                .max_by(|a, b| {
                    a.publish_ms
                        .cmp(&b.publish_ms)
                        .then(a.price.cmp_value(&b.price))
                });
            if let Some(q) = latest
                && q.publish_ms + p.staleness_ms[src.family()] >= now
            {
                fresh.push(q);
            }
        }
        fresh.sort_by(|a, b| a.source.cmp(&b.source));
        // Every pair published close together; the widest spread (first of equals).
        let mut widest: Option<(i128, i128, usize, usize)> = None; // (diff, low, i_low, i_high)
        for i in 0..fresh.len() {
            for j in i + 1..fresh.len() {
                if (fresh[i].publish_ms - fresh[j].publish_ms).abs() > p.max_skew_ms {
                    continue;
                }
                let (a, b) = (at_expo(&fresh[i].price, -8), at_expo(&fresh[j].price, -8));
                let (lo, hi, il, ih) = if a <= b { (a, b, i, j) } else { (b, a, j, i) };
                let wider = widest.is_none_or(|(d, l, _, _)| (hi - lo) * l > d * lo);
                if wider {
                    widest = Some((hi - lo, lo, il, ih));
                }
            }
        }
        // spread% vs a threshold t (tenths of a percent here): diff × 1000 vs t × low.
        let tenths = |d: &Decimal| at_expo(d, -1);
        let mut discrepancy = None;
        if fresh.len() < 2 {
            self.discrepant = false;
        } else if let Some((diff, low, il, ih)) = widest {
            if !self.discrepant && diff * 1000 > tenths(&p.threshold) * low {
                self.discrepant = true;
                discrepancy = Some((
                    fresh[il].source.to_string(),
                    fresh[ih].source.to_string(),
                    diff * 1_000_000 / low,
                ));
            } else if self.discrepant && diff * 1000 < tenths(&p.clear) * low {
                self.discrepant = false;
            }
        }
        let rank = |s: &PriceSource| p.order.iter().position(|f| f == s.family());
        let fused = fresh
            .iter()
            .min_by(|a, b| {
                rank(&a.source)
                    .cmp(&rank(&b.source))
                    .then(b.publish_ms.cmp(&a.publish_ms))
                    .then(a.source.cmp(&b.source))
            })
            .map(|q| {
                (
                    q.source.clone(),
                    (q.price.mantissa, q.price.expo),
                    q.publish_ms,
                )
            });
        Expected { discrepancy, fused }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn incremental_fusion_matches_recomputing_from_all_prices(
        steps in steps(),
        threshold in 5i64..40,
        clear in 1i64..40,
    ) {
        let p = params(threshold, clear);
        let asset = Asset::named("SOL");
        let mut fusion = AssetFusion::default();
        let mut naive = Naive { history: Vec::new(), discrepant: false };
        // A few quiet steps at the end let every price go stale.
        let quiet = 4_000 / STEP_MS as usize + 2;
        for (i, offers) in steps.iter().chain(std::iter::repeat_n(&Vec::new(), quiet)).enumerate() {
            let now = 10_000 + i as u64 * STEP_MS;
            for &(s, mantissa, expo, age) in offers {
                let price = point(s, mantissa, expo, now as i64 - age);
                fusion.offer(&price);
                naive.history.push(price);
            }
            let step = fusion.evaluate(&asset, now, &p);
            let expected = naive.evaluate(now as i64, &p);
            let got = step.discrepancy.map(|d| {
                let [low, high] = d.sources;
                (low, high, i128::from(d.percent.mantissa) * 10i128.pow((d.percent.expo + 4) as u32))
            });
            prop_assert_eq!(got, expected.discrepancy, "discrepancy at {}", now);
            let have = fusion
                .fused()
                .map(|f| (f.source.clone(), (f.price.mantissa, f.price.expo), f.publish_ms));
            if let Some(changed) = &step.fused {
                prop_assert_eq!(Some(changed), fusion.fused(), "a change reported at {}", now);
            }
            prop_assert_eq!(have, expected.fused, "fused price at {}", now);
        }
    }
}
