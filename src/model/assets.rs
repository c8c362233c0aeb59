//! The configured mapping from source identifiers (feed ids, token mints) to assets.

use rustc_hash::FxHashMap;

use super::{Asset, Instrument};

/// Maps what sources call things to the assets the configuration names.
///
/// ```
/// use sluice::model::{Asset, AssetMap, FeedId, Instrument};
/// let btc: FeedId = "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43".parse().unwrap();
/// let mut map = AssetMap::default();
/// map.insert(Instrument::Feed(btc), Asset::named("BTC"));
/// assert_eq!(map.resolve(&Instrument::Feed(btc)).to_string(), "BTC");
/// let other = FeedId([7; 32]);
/// assert_eq!(map.resolve(&Instrument::Feed(other)), Asset::Feed(other));
/// ```
#[derive(Clone, Debug, Default)]
pub struct AssetMap {
    by_instrument: FxHashMap<Instrument, Asset>,
}

impl AssetMap {
    /// Maps `instrument` to `asset`.
    pub fn insert(&mut self, instrument: Instrument, asset: Asset) {
        self.by_instrument.insert(instrument, asset);
    }

    /// The asset an instrument prices: the configured one, or the instrument itself.
    pub fn resolve(&self, instrument: &Instrument) -> Asset {
        if let Some(asset) = self.by_instrument.get(instrument) {
            return asset.clone();
        }
        match instrument {
            Instrument::Feed(id) => Asset::Feed(*id),
            Instrument::Token(t) => Asset::Token(t.clone()),
            Instrument::Symbol(s) => Asset::Named(s.clone()),
        }
    }

    /// Every configured (instrument, asset) pair.
    pub fn iter(&self) -> impl Iterator<Item = (&Instrument, &Asset)> {
        self.by_instrument.iter()
    }

    /// Number of configured mappings.
    pub fn len(&self) -> usize {
        self.by_instrument.len()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.by_instrument.is_empty()
    }
}
