//! Parsers for every endpoint's real payloads: envelope bytes in, validated records out.
//!
//! Each parser is a pure function. It never panics on any input: malformed parts become
//! [`Record::Invalid`] with a reason and a location (a byte offset, or a field path such as
//! `parsed[2].price.price`), and the rest of the envelope's good data still comes out.
//!
//! ```
//! use sluice::model::{parse, AssetMap, Endpoint, Envelope, Record};
//! let env = Envelope {
//!     endpoint: Endpoint::HermesStream,
//!     t_ms: 1_795_248_002_000,
//!     context: String::new(),
//!     raw: bytes::Bytes::from_static(br#"{"binary":{"encoding":"hex","data":["00"]},"parsed":[
//!         {"id":"e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43",
//!          "price":{"price":"9712346678901","conf":"4512345678","expo":-8,"publish_time":1795248001},
//!          "ema_price":{"price":"1","conf":"1","expo":-8,"publish_time":1795248001},
//!          "metadata":{"slot":null,"proof_available_time":null,"prev_publish_time":null}}]}"#),
//!     seq: 0,
//! };
//! let assets = AssetMap::default();
//! let ctx = parse::ParseContext { assets: &assets, max_future_skew_ms: 5_000 };
//! let mut out = Vec::new();
//! parse::parse_envelope(&env, &ctx, &mut out);
//! assert!(matches!(&out[0], Record::Price(p) if p.price.mantissa == 9712346678901));
//! ```

pub mod birdeye;
pub mod chain;
pub mod chain_tx;
pub mod dexscreener;
pub mod hermes;
pub mod mesh;
mod scan;
mod support;

use super::{AssetMap, Endpoint, Envelope, InvalidInput, Location, Record};

/// What parsers need besides the bytes.
#[derive(Clone, Copy, Debug)]
pub struct ParseContext<'a> {
    /// Maps feed ids and tokens to configured assets.
    pub assets: &'a AssetMap,
    /// A publish time more than this many ms after the envelope's ingest time is refused.
    pub max_future_skew_ms: i64,
}

/// Parses one envelope, appending what it holds to `out`.
pub fn parse_envelope(env: &Envelope, ctx: &ParseContext<'_>, out: &mut Vec<Record>) {
    match env.endpoint {
        Endpoint::DexscreenerBoosts => dexscreener::parse_boosts(env, ctx, out),
        Endpoint::DexscreenerTokens => dexscreener::parse_pairs(env, ctx, out),
        Endpoint::BirdeyeMultiPrice => birdeye::parse_multi_price(env, ctx, out),
        Endpoint::BirdeyePrice => birdeye::parse_price(env, ctx, out),
        Endpoint::HermesStream => hermes::parse_stream_event(env, ctx, out),
        Endpoint::HermesLatest => hermes::parse_latest(env, ctx, out),
        Endpoint::MeshPrice => mesh::parse(env, ctx, out),
        Endpoint::ChainRead => chain::parse(env, ctx, out),
        Endpoint::ChainTx => chain_tx::parse(env, ctx, out),
    }
}

/// An `invalid_input` record for `env`.
pub fn invalid(env: &Envelope, reason: impl Into<String>, at: Location) -> Record {
    Record::Invalid(InvalidInput {
        endpoint: env.endpoint,
        seq: env.seq,
        reason: reason.into(),
        at,
    })
}

/// The byte offset a serde_json error points at, from its line and column.
pub fn error_offset(raw: &[u8], err: &serde_json::Error) -> u64 {
    let (line, column) = (err.line(), err.column());
    if line == 0 {
        return 0;
    }
    let mut offset = 0usize;
    for _ in 1..line {
        match raw[offset..].iter().position(|b| *b == b'\n') {
            Some(i) => offset += i + 1,
            None => return raw.len() as u64,
        }
    }
    (offset + column.saturating_sub(1)).min(raw.len()) as u64
}

/// Parses one envelope of `endpoint` holding `raw` (no assets mapped, 5 s future skew): the
/// parsers' unit tests.
#[cfg(test)]
pub(crate) fn parse_raw(endpoint: crate::model::Endpoint, raw: &str, seq: u64) -> Vec<Record> {
    parse_raw_with(endpoint, "", 1_795_248_010_000, raw, seq)
}

/// As [`parse_raw`], with the envelope's context and ingest time given.
#[cfg(test)]
pub(crate) fn parse_raw_with(
    endpoint: crate::model::Endpoint,
    context: &str,
    t_ms: u64,
    raw: &str,
    seq: u64,
) -> Vec<Record> {
    let env = Envelope {
        endpoint,
        t_ms,
        context: context.into(),
        raw: bytes::Bytes::from(raw.to_owned()),
        seq,
    };
    let assets = crate::model::AssetMap::default();
    let ctx = ParseContext {
        assets: &assets,
        max_future_skew_ms: 5_000,
    };
    let mut out = Vec::new();
    parse_envelope(&env, &ctx, &mut out);
    out
}
