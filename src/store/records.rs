//! How records become state writes: the key each is kept under and its stored form.

use std::hash::Hash;

use serde::Serialize;

use super::{StateWrite, Tree};
use crate::model::{Asset, PricePoint, PriceSource};

/// A record the store keeps the latest of, per key.
pub trait StateRecord:
    Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static
{
    /// What the record is the latest value of.
    type Key: Hash + Eq + Clone + 'static;

    /// The record's key.
    fn state_key(&self) -> Self::Key;

    /// Which worker keeps the record's key: a stable hash of it.
    fn route(&self) -> u64 {
        crate::dataflow::route(&self.state_key())
    }

    /// Whether `self` replaces `other` when both arrive for the same key at the same time.
    /// Must be a total order, so that the winner never depends on arrival order.
    fn supersedes(&self, other: &Self) -> bool;

    /// The write that stores the record.
    fn to_write(&self) -> StateWrite;
}

/// The stored form of a latest price: the seed's `mesh_price_cache` row.
#[derive(Serialize)]
struct CachedPrice<'a> {
    asset: String,
    price: String,
    mantissa: i64,
    expo: i32,
    chain: &'a str,
    timestamp: i64,
    source: String,
    change_24h: Option<String>,
}

impl StateRecord for PricePoint {
    type Key = (Asset, PriceSource);

    fn state_key(&self) -> Self::Key {
        (self.asset.clone(), self.source.clone())
    }

    fn route(&self) -> u64 {
        // The same hash as the key's, without cloning it.
        crate::dataflow::route(&(&self.asset, &self.source))
    }

    fn supersedes(&self, other: &Self) -> bool {
        (self.publish_ms, self.price) > (other.publish_ms, other.price)
    }

    fn to_write(&self) -> StateWrite {
        let chain = match (&self.chain, &self.asset) {
            (Some(chain), _) => &**chain,
            (None, Asset::Feed(_)) => "pythnet",
            (None, _) => "",
        };
        let row = CachedPrice {
            asset: self.asset.to_string(),
            price: self.price.to_string(),
            mantissa: self.price.mantissa,
            expo: self.price.expo,
            chain,
            timestamp: self.publish_ms,
            source: self.source.to_string(),
            change_24h: self.change_24h.map(|c| c.to_string()),
        };
        StateWrite {
            tree: Tree::Prices,
            key: price_key(&self.asset, &self.source),
            value: serde_json::to_vec(&row).ok(),
            version: Some(self.publish_ms),
        }
    }
}

/// The key of an (asset, source) price row: `<asset>|<source>`.
pub fn price_key(asset: &Asset, source: &PriceSource) -> Vec<u8> {
    format!("{asset}|{source}").into_bytes()
}
