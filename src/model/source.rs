//! Where bytes come from: the five sources (each with its own watermark) and their endpoints.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A source of envelopes. Each source has exactly one watermark: its promise that no envelope
/// with an earlier ingest time follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// DEX Screener polls (boost ranks, token pairs).
    Dexscreener,
    /// Birdeye polls (prices).
    Birdeye,
    /// Pyth Hermes (SSE stream and REST fallback).
    Hermes,
    /// The signed peer-to-peer price mesh.
    Mesh,
    /// Reads of the on-chain oracle (the keeper's targets).
    Chain,
}

impl Source {
    /// Every source, in index order.
    pub const ALL: [Source; 5] = [
        Source::Dexscreener,
        Source::Birdeye,
        Source::Hermes,
        Source::Mesh,
        Source::Chain,
    ];

    /// A dense index (0..5), stable across versions: it is written into recordings.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The source with a dense index.
    pub fn from_index(index: usize) -> Option<Source> {
        Source::ALL.get(index).copied()
    }

    /// The snake_case name used in configs, journals and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Source::Dexscreener => "dexscreener",
            Source::Birdeye => "birdeye",
            Source::Hermes => "hermes",
            Source::Mesh => "mesh",
            Source::Chain => "chain",
        }
    }

    /// The source named `name`.
    pub fn from_name(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of payload an envelope carries: one per upstream endpoint (or our own schema).
///
/// The `context` of an envelope completes what the bytes alone do not say; see each variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// DEX Screener `GET /token-boosts/top/v1`: a bare array, in boost-rank order.
    DexscreenerBoosts,
    /// DEX Screener `GET /tokens/v1/{chain}/{addresses}`: a bare array of pairs.
    /// Context: the `{chain}` of the request path.
    DexscreenerTokens,
    /// Birdeye `GET /defi/multi_price`. Context: the `x-chain` header.
    BirdeyeMultiPrice,
    /// Birdeye `GET /defi/price`. Context: `<x-chain>/<address>` (the body omits the address).
    BirdeyePrice,
    /// One Hermes SSE event's `data`. Context: the SSE event type (empty for updates, `error`).
    HermesStream,
    /// The body of Hermes `GET /v2/updates/price/latest`.
    HermesLatest,
    /// A signed mesh price message (our own versioned JSON schema).
    MeshPrice,
    /// One round of on-chain oracle reads (our own JSON schema; see `model::parse::chain`).
    ChainRead,
    /// One thing the keeper did or saw happen to its transactions (our own JSON schema; see
    /// `model::parse::chain_tx`).
    ChainTx,
}

impl Endpoint {
    /// Every endpoint, in code order.
    pub const ALL: [Endpoint; 9] = [
        Endpoint::DexscreenerBoosts,
        Endpoint::DexscreenerTokens,
        Endpoint::BirdeyeMultiPrice,
        Endpoint::BirdeyePrice,
        Endpoint::HermesStream,
        Endpoint::HermesLatest,
        Endpoint::MeshPrice,
        Endpoint::ChainRead,
        Endpoint::ChainTx,
    ];

    /// The source that owns this endpoint (and its watermark).
    pub const fn source(self) -> Source {
        match self {
            Endpoint::DexscreenerBoosts | Endpoint::DexscreenerTokens => Source::Dexscreener,
            Endpoint::BirdeyeMultiPrice | Endpoint::BirdeyePrice => Source::Birdeye,
            Endpoint::HermesStream | Endpoint::HermesLatest => Source::Hermes,
            Endpoint::MeshPrice => Source::Mesh,
            Endpoint::ChainRead | Endpoint::ChainTx => Source::Chain,
        }
    }

    /// The byte written into recordings. Stable: never renumber.
    pub const fn code(self) -> u8 {
        match self {
            Endpoint::DexscreenerBoosts => 1,
            Endpoint::DexscreenerTokens => 2,
            Endpoint::BirdeyeMultiPrice => 3,
            Endpoint::BirdeyePrice => 4,
            Endpoint::HermesStream => 5,
            Endpoint::HermesLatest => 6,
            Endpoint::MeshPrice => 7,
            Endpoint::ChainRead => 8,
            Endpoint::ChainTx => 9,
        }
    }

    /// The endpoint with a recording code.
    pub fn from_code(code: u8) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.code() == code)
    }

    /// The snake_case name used in journals, dumps and the `import` command.
    pub const fn name(self) -> &'static str {
        match self {
            Endpoint::DexscreenerBoosts => "dexscreener_boosts",
            Endpoint::DexscreenerTokens => "dexscreener_tokens",
            Endpoint::BirdeyeMultiPrice => "birdeye_multi_price",
            Endpoint::BirdeyePrice => "birdeye_price",
            Endpoint::HermesStream => "hermes_stream",
            Endpoint::HermesLatest => "hermes_latest",
            Endpoint::MeshPrice => "mesh_price",
            Endpoint::ChainRead => "chain_read",
            Endpoint::ChainTx => "chain_tx",
        }
    }

    /// The endpoint named `name`.
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == name)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
