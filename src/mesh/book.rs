//! What a node knows of the mesh's prices: the latest price per (asset, origin), and per origin
//! when it was last heard and how long its last message took to arrive. Times are passed in.

use std::collections::BTreeMap;

use serde::Serialize;

use super::node::AcceptedPrice;

/// One asset's latest price from one origin.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BookPrice {
    /// `SOL`, `<chain>:<address>`.
    pub asset: String,
    /// The publisher's key.
    pub origin: String,
    /// Price mantissa (the price is `mantissa × 10^expo`).
    pub mantissa: i64,
    /// Price exponent.
    pub expo: i32,
    /// Publish time (ms).
    pub publish_ms: i64,
    /// 24-hour change in percent, as sent.
    pub change_24h: Option<String>,
    /// When this node accepted it (ms).
    pub received_ms: i64,
}

/// An origin as this node sees it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct OriginView {
    /// The publisher's key.
    pub origin: String,
    /// When its last message was accepted here (ms).
    pub last_seen_ms: i64,
    /// Publish-to-acceptance time of that message (ms).
    pub propagation_latency_ms: i64,
}

/// Data freshness, as the seed words it.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub enum Freshness {
    /// Under ten seconds old.
    Fresh,
    /// Seconds old.
    SecondsAgo(u64),
    /// Minutes old.
    MinutesAgo(u64),
    /// Hours old.
    HoursAgo(u64),
}

impl Freshness {
    /// The freshness of data `age_ms` old.
    pub fn of_age(age_ms: i64) -> Freshness {
        let secs = (age_ms.max(0) / 1000) as u64;
        match secs {
            0..10 => Freshness::Fresh,
            10..60 => Freshness::SecondsAgo(secs),
            60..3600 => Freshness::MinutesAgo(secs / 60),
            _ => Freshness::HoursAgo(secs / 3600),
        }
    }
}

/// The latest prices and origins.
#[derive(Debug, Default)]
pub struct PriceBook {
    prices: BTreeMap<(String, String), BookPrice>,
    origins: BTreeMap<String, OriginView>,
}

impl PriceBook {
    /// Takes in a price accepted at `now_ms`; an older publish time never replaces a newer.
    pub fn accept(&mut self, price: &AcceptedPrice, now_ms: i64) {
        let msg = &price.msg;
        let key = (msg.asset.clone(), msg.origin.to_ascii_lowercase());
        let newer = self
            .prices
            .get(&key)
            .is_none_or(|p| p.publish_ms <= msg.publish_ms);
        if newer {
            self.prices.insert(
                key.clone(),
                BookPrice {
                    asset: key.0,
                    origin: key.1.clone(),
                    mantissa: msg.mantissa,
                    expo: msg.expo,
                    publish_ms: msg.publish_ms,
                    change_24h: msg.change_24h.clone(),
                    received_ms: now_ms,
                },
            );
        }
        self.origins.insert(
            key.1.clone(),
            OriginView {
                origin: key.1,
                last_seen_ms: now_ms,
                propagation_latency_ms: price.latency_ms,
            },
        );
    }

    /// Every latest price, by asset then origin; only `asset`'s when given.
    pub fn prices(&self, asset: Option<&str>) -> Vec<BookPrice> {
        self.prices
            .values()
            .filter(|p| asset.is_none_or(|a| p.asset == a))
            .cloned()
            .collect()
    }

    /// Origins heard from at or after `since_ms`.
    pub fn origins(&self, since_ms: i64) -> Vec<OriginView> {
        self.origins
            .values()
            .filter(|o| o.last_seen_ms >= since_ms)
            .cloned()
            .collect()
    }

    /// When the newest price arrived, if any did.
    pub fn last_update_ms(&self) -> Option<i64> {
        self.prices.values().map(|p| p.received_ms).max()
    }

    /// Sets the gauges this book is the truth of, as of `now_ms`:
    /// `mesh_network_active_providers` (origins whose prices were accepted within
    /// `active_within_ms`, what `/api/mesh/network/status` lists) and
    /// `mesh_cache_data_age_seconds` (age of the newest price; left alone before the first).
    /// The node calls it on every accepted price and on a timer, so the gauges move (and fall)
    /// whether or not anyone asks the API.
    pub fn export_gauges(&self, now_ms: i64, active_within_ms: i64) {
        let active = self
            .origins
            .values()
            .filter(|o| o.last_seen_ms >= now_ms.saturating_sub(active_within_ms))
            .count();
        metrics::gauge!("mesh_network_active_providers").set(active as f64);
        if let Some(t) = self.last_update_ms() {
            metrics::gauge!("mesh_cache_data_age_seconds")
                .set(now_ms.saturating_sub(t).max(0) as f64 / 1000.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse::mesh::MeshPriceMessage;

    fn accepted(publish_ms: i64, mantissa: i64) -> AcceptedPrice {
        AcceptedPrice {
            wire: bytes::Bytes::new(),
            msg: MeshPriceMessage {
                v: 1,
                asset: "SOL".into(),
                mantissa,
                expo: -2,
                chain: None,
                publish_ms,
                change_24h: None,
                origin: "AB".into(),
                seq: 0,
            },
            latency_ms: 7,
        }
    }

    #[test]
    fn newest_wins_and_freshness_reads_like_the_seed() {
        let mut book = PriceBook::default();
        book.accept(&accepted(2_000, 5), 2_010);
        book.accept(&accepted(1_000, 4), 2_020);
        let prices = book.prices(Some("SOL"));
        assert_eq!(prices.len(), 1);
        assert_eq!((prices[0].mantissa, prices[0].origin.as_str()), (5, "ab"));
        assert!(book.prices(Some("BTC")).is_empty());
        assert_eq!(book.origins(2_020)[0].propagation_latency_ms, 7);
        assert_eq!(Freshness::of_age(9_999), Freshness::Fresh);
        assert_eq!(Freshness::of_age(42_000), Freshness::SecondsAgo(42));
        assert_eq!(Freshness::of_age(125_000), Freshness::MinutesAgo(2));
        assert_eq!(Freshness::of_age(7_300_000), Freshness::HoursAgo(2));
    }
}
