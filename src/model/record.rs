//! Parsed, validated records: what parsing turns envelopes into, and what the computations consume.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Asset, Decimal, Endpoint, FeedId, TokenRef};

/// Where a price came from. Fusion keeps the latest fresh price per (asset, source).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PriceSource {
    /// Pyth Hermes (stream or REST).
    Hermes,
    /// A DEX Screener pair's `priceUsd`.
    Dexscreener,
    /// Birdeye `value`.
    Birdeye,
    /// A mesh peer; the operator key (hex) that signed the message.
    Mesh(Arc<str>),
}

impl PriceSource {
    /// The source's family name (`mesh` for every mesh origin), as used in configuration.
    pub fn family(&self) -> &'static str {
        match self {
            PriceSource::Hermes => "hermes",
            PriceSource::Dexscreener => "dexscreener",
            PriceSource::Birdeye => "birdeye",
            PriceSource::Mesh(_) => "mesh",
        }
    }
}

impl fmt::Display for PriceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriceSource::Mesh(origin) => write!(f, "mesh:{origin}"),
            other => f.write_str(other.family()),
        }
    }
}

impl fmt::Debug for PriceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// The identifier a source used for what it priced.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Instrument {
    /// A Pyth price feed.
    Feed(FeedId),
    /// A token on a chain.
    Token(TokenRef),
    /// An asset named by a mesh message.
    Symbol(Arc<str>),
}

impl fmt::Display for Instrument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instrument::Feed(id) => write!(f, "{id}"),
            Instrument::Token(t) => write!(f, "{t}"),
            Instrument::Symbol(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for Instrument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrument({self})")
    }
}

/// One price observation, exact: `price` and `conf` share `price.expo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTick {
    /// What is priced, as the configuration maps it.
    pub asset: Asset,
    /// The source's own identifier for it.
    pub instrument: Instrument,
    /// The price.
    pub price: Decimal,
    /// Confidence interval in units of `10^price.expo`; 0 when the source gives none.
    pub conf: u64,
    /// When the source says the price was published, in ms since the epoch.
    pub publish_ms: i64,
    /// Who said so.
    pub source: PriceSource,
    /// 24-hour change in percent, when the source gives one.
    pub change_24h: Option<Decimal>,
    /// For Hermes: the hex of the `binary.data` element that carries this feed (what an
    /// on-chain update needs). Shared by every feed of the event when Hermes sends one blob.
    pub update_data: Option<Bytes>,
}

/// A price reduced to what fusion and the store keep: what is priced, by whom, how much and
/// when — without the source's identifier or update data, so it is cheap to copy around.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricePoint {
    /// What is priced.
    pub asset: Asset,
    /// Who said so.
    pub source: PriceSource,
    /// The price.
    pub price: Decimal,
    /// Publish time (ms).
    pub publish_ms: i64,
    /// 24-hour change in percent, when the source gives one.
    pub change_24h: Option<Decimal>,
    /// The chain of a token's price.
    pub chain: Option<Arc<str>>,
}

impl From<PriceTick> for PricePoint {
    fn from(tick: PriceTick) -> Self {
        let chain = match tick.instrument {
            Instrument::Token(token) => Some(token.chain),
            Instrument::Feed(_) | Instrument::Symbol(_) => None,
        };
        PricePoint {
            asset: tick.asset,
            source: tick.source,
            price: tick.price,
            publish_ms: tick.publish_ms,
            change_24h: tick.change_24h,
            chain,
        }
    }
}

/// One token in a boost-rank list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoostEntry {
    /// The token.
    pub token: TokenRef,
    /// Position in the response, 1-based.
    pub rank: u32,
    /// Total active boost amount.
    pub total_amount: Decimal,
}

/// A complete boost-rank list as one poll returned it: a trending snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoostSnapshot {
    /// Valid entries in rank order (invalid ones are reported separately and skipped).
    pub entries: Vec<BoostEntry>,
}

/// A price as the oracle contract stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnChainPrice {
    /// Mantissa.
    pub price: i64,
    /// Confidence, same exponent.
    pub conf: u64,
    /// Exponent.
    pub expo: i32,
    /// Publish time in seconds.
    pub publish_time: i64,
}

/// What the chain observer read for one feed: the keeper's target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainTarget {
    /// The feed.
    pub feed: FeedId,
    /// The stored price, or `None` when the feed was never pushed (`PriceFeedNotFound`).
    pub price: Option<OnChainPrice>,
    /// Block the read was made at, when known.
    pub block: Option<u64>,
}

/// Where in a payload a problem was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// A byte offset into the payload.
    Offset(u64),
    /// A path to the offending field, like `parsed[2].price.price`.
    Path(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Offset(o) => write!(f, "byte {o}"),
            Location::Path(p) => write!(f, "{p}"),
        }
    }
}

/// A payload (or part of one) that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidInput {
    /// The endpoint the bytes came from.
    pub endpoint: Endpoint,
    /// The envelope's position in its source (see [`super::Envelope::seq`]).
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
    /// Where.
    pub at: Location,
}

/// A message a source sent about itself rather than about prices (Hermes `event: error`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceNotice {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The text, as sent.
    pub text: String,
}

/// What the keeper did, or saw happen to its transactions (a `chain_tx` envelope): one of
/// [`crate::model::parse::chain_tx::KINDS`], journaled as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainTx {
    /// The event's kind, e.g. `tx_submitted`.
    pub kind: String,
    /// The whole event as one canonical JSON object: `kind` first, then the other fields in
    /// key order.
    pub json: String,
}

/// Everything parsing produces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A price.
    Price(PriceTick),
    /// A boost-rank snapshot.
    Boosts(BoostSnapshot),
    /// An on-chain observation.
    Target(ChainTarget),
    /// Bad input, with its location.
    Invalid(InvalidInput),
    /// A source's own message.
    Notice(SourceNotice),
    /// A keeper outcome.
    ChainTx(ChainTx),
}
