//! How records become state writes: the key each is kept under and its stored form.

use std::hash::Hash;

use serde::Serialize;

use super::{StateWrite, Tree};
use crate::model::{Asset, Instrument, PriceSource, PriceTick};

/// A record the store keeps the latest of, per key.
pub trait StateRecord:
    Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static
{
    /// What the record is the latest value of.
    type Key: Hash + Eq + Clone + 'static;

    /// The record's key.
    fn state_key(&self) -> Self::Key;

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

impl StateRecord for PriceTick {
    type Key = (Asset, PriceSource);

    fn state_key(&self) -> Self::Key {
        (self.asset.clone(), self.source.clone())
    }

    fn supersedes(&self, other: &Self) -> bool {
        (self.publish_ms, self.price, self.conf) > (other.publish_ms, other.price, other.conf)
    }

    fn to_write(&self) -> StateWrite {
        let chain = match &self.instrument {
            Instrument::Token(t) => &*t.chain,
            Instrument::Feed(_) => "pythnet",
            Instrument::Symbol(_) => "",
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
        }
    }
}

/// The key of an (asset, source) price row: `<asset>|<source>`.
pub fn price_key(asset: &Asset, source: &PriceSource) -> Vec<u8> {
    format!("{asset}|{source}").into_bytes()
}
