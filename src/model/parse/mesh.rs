//! Mesh price messages: our own signed, versioned JSON schema for the prices peers gossip.
//!
//! Wire form, version 1 (one JSON object per message):
//!
//! ```text
//! {"msg":{"v":1,"asset":"SOL","mantissa":14237123456,"expo":-8,"chain":"solana",
//!         "publish_ms":1795248000123,"change_24h":"-2.31","origin":"<64 hex>","seq":42},
//!  "sig":"<128 hex>"}
//! ```
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `msg.v` | integer | schema version; only `1` is understood, anything else is refused whole |
//! | `msg.asset` | string | `<chain>:<address>` for a token (validated like DEX Screener's), otherwise a symbol of 1–64 printable ASCII characters (`SOL`, `BTC/USD`) |
//! | `msg.mantissa` | integer (i64) | price mantissa, > 0 |
//! | `msg.expo` | integer | price exponent, −30..=30: the price is `mantissa × 10^expo` |
//! | `msg.chain` | string, optional | the chain the publisher observed the price on; informational |
//! | `msg.publish_ms` | integer | publish time, ms since the epoch (at most the configured skew ahead of ingest) |
//! | `msg.change_24h` | decimal string or null, optional | 24-hour change in percent |
//! | `msg.origin` | 64 hex | the publisher's ed25519 public key; the tick's source is `mesh:<origin>` (lower-case) |
//! | `msg.seq` | integer (u64) | the publisher's message counter |
//! | `sig` | 128 hex | ed25519 signature over the exact bytes of `msg` as sent |
//!
//! Unknown fields inside `msg` are tolerated (they are covered by the signature all the same).
//! Signatures are verified by the network layer before an envelope exists; this parser only
//! requires one to be present and well-formed. A signer serializes with
//! [`MeshPriceMessage::to_json`], signs those bytes, and sends [`to_wire`]; a verifier takes the
//! signed bytes back out of a wire message with [`split_wire`].

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::support::{Text, check_not_ahead, decode_object, is_hex_of_len, push_json_str};
use super::{ParseContext, invalid};
use crate::model::{
    Decimal, Envelope, Instrument, Location, PriceSource, PriceTick, Record, TokenRef,
};

/// The only schema version this build understands.
pub const MESH_VERSION: u32 = 1;

/// Exponents a mesh price may carry (the range [`Decimal`] parses exactly).
const EXPO_RANGE: std::ops::RangeInclusive<i32> = -30..=30;

/// Longest symbol an `asset` may be when it is not a token.
const MAX_SYMBOL_LEN: usize = 64;

/// The signed part of a mesh price message (`msg`), version 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshPriceMessage {
    /// Schema version ([`MESH_VERSION`]).
    pub v: u32,
    /// `<chain>:<address>` or a symbol.
    pub asset: String,
    /// Price mantissa.
    pub mantissa: i64,
    /// Price exponent.
    pub expo: i32,
    /// The chain the publisher observed the price on (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// Publish time, ms since the epoch.
    pub publish_ms: i64,
    /// 24-hour change in percent, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_24h: Option<String>,
    /// The publisher's ed25519 public key, 64 hex digits.
    pub origin: String,
    /// The publisher's message counter.
    pub seq: u64,
}

impl MeshPriceMessage {
    /// The message as compact JSON: the exact bytes a signer signs and [`to_wire`] embeds.
    ///
    /// Written by hand rather than through serde_json so it cannot fail; it produces the same
    /// text as `serde_json::to_string`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(192);
        out.push_str("{\"v\":");
        out.push_str(&self.v.to_string());
        out.push_str(",\"asset\":");
        push_json_str(&mut out, &self.asset);
        out.push_str(",\"mantissa\":");
        out.push_str(&self.mantissa.to_string());
        out.push_str(",\"expo\":");
        out.push_str(&self.expo.to_string());
        if let Some(chain) = &self.chain {
            out.push_str(",\"chain\":");
            push_json_str(&mut out, chain);
        }
        out.push_str(",\"publish_ms\":");
        out.push_str(&self.publish_ms.to_string());
        if let Some(change) = &self.change_24h {
            out.push_str(",\"change_24h\":");
            push_json_str(&mut out, change);
        }
        out.push_str(",\"origin\":");
        push_json_str(&mut out, &self.origin);
        out.push_str(",\"seq\":");
        out.push_str(&self.seq.to_string());
        out.push('}');
        out
    }
}

/// A wire message: `{"msg": <msg.to_json()>, "sig": "<sig_hex>"}`.
pub fn to_wire(msg: &MeshPriceMessage, sig_hex: &str) -> String {
    let mut out = String::from("{\"msg\":");
    out.push_str(&msg.to_json());
    out.push_str(",\"sig\":");
    push_json_str(&mut out, sig_hex);
    out.push('}');
    out
}

/// A wire message split into what was signed and the signature, without interpreting either.
#[derive(Debug)]
pub struct SignedParts<'a> {
    /// The exact bytes of `msg` as sent: what the signature covers.
    pub msg: &'a RawValue,
    /// The signature as sent (hex, unchecked).
    pub sig: Cow<'a, str>,
}

/// Splits a wire message into its signed bytes and its signature.
pub fn split_wire(wire: &[u8]) -> Result<SignedParts<'_>, String> {
    let parts: WireView<'_> =
        decode_object(wire).map_err(|e| format!("{} at {}", e.reason(), e.location("")))?;
    let sig = parts.sig.ok_or("missing signature at sig")?;
    Ok(SignedParts {
        msg: parts.msg,
        sig: sig.0,
    })
}

#[derive(Deserialize)]
struct WireView<'a> {
    #[serde(borrow)]
    msg: &'a RawValue,
    #[serde(borrow)]
    sig: Option<Text<'a>>,
}

/// Just enough of `msg` to know whether the rest can be read.
#[derive(Deserialize)]
struct VersionView {
    v: u64,
}

/// Parses one mesh message into a tick, or one invalid record.
pub fn parse(env: &Envelope, ctx: &ParseContext<'_>, out: &mut Vec<Record>) {
    match message_tick(env, ctx) {
        Ok(tick) => out.push(Record::Price(tick)),
        Err((reason, at)) => out.push(invalid(env, reason, at)),
    }
}

fn message_tick(env: &Envelope, ctx: &ParseContext<'_>) -> Result<PriceTick, (String, Location)> {
    let at = |field: &str| Location::Path(field.to_owned());
    let wire: WireView<'_> = decode_object(&env.raw).map_err(|e| (e.reason(), e.location("")))?;
    let msg_json = wire.msg.get().as_bytes();
    let version: VersionView =
        decode_object(msg_json).map_err(|e| (e.reason(), e.location("msg")))?;
    if version.v != u64::from(MESH_VERSION) {
        let reason = format!("unsupported mesh message version {}", version.v);
        return Err((reason, at("msg.v")));
    }
    let sig = wire
        .sig
        .ok_or_else(|| ("missing signature".to_owned(), at("sig")))?;
    if !is_hex_of_len(&sig, 128) {
        return Err(("signature must be 128 hex digits".to_owned(), at("sig")));
    }
    let msg: MeshPriceMessage =
        decode_object(msg_json).map_err(|e| (e.reason(), e.location("msg")))?;
    msg_tick(&msg, env.t_ms, ctx).map_err(|(reason, field)| (reason, at(&format!("msg.{field}"))))
}

/// The tick a message states, or why not and the `msg` field at fault.
fn msg_tick(
    msg: &MeshPriceMessage,
    ingest_ms: u64,
    ctx: &ParseContext<'_>,
) -> Result<PriceTick, (String, &'static str)> {
    let instrument = instrument_of(&msg.asset).map_err(|e| (e, "asset"))?;
    if msg.mantissa <= 0 {
        return Err((
            format!("price mantissa {} is not positive", msg.mantissa),
            "mantissa",
        ));
    }
    if !EXPO_RANGE.contains(&msg.expo) {
        return Err((format!("exponent {} out of range", msg.expo), "expo"));
    }
    check_not_ahead(msg.publish_ms, ingest_ms, ctx).map_err(|e| (e, "publish_ms"))?;
    let change_24h = match &msg.change_24h {
        Some(text) => Some(Decimal::parse(text).map_err(|e| (e.to_string(), "change_24h"))?),
        None => None,
    };
    if !is_hex_of_len(&msg.origin, 64) {
        return Err(("origin must be 64 hex digits".to_owned(), "origin"));
    }
    Ok(PriceTick {
        asset: ctx.assets.resolve(&instrument),
        instrument,
        price: Decimal::new(msg.mantissa, msg.expo),
        conf: 0,
        publish_ms: msg.publish_ms,
        // One key, one source, however a peer cases its hex.
        source: PriceSource::Mesh(Arc::from(msg.origin.to_ascii_lowercase())),
        change_24h,
        update_data: None,
    })
}

/// `<chain>:<address>` is a token; anything else is a symbol.
///
/// Something that looks like a token reference but fails its chain's address rules is refused
/// rather than kept as a symbol: as a symbol it would print exactly like the token it failed
/// to be.
fn instrument_of(asset: &str) -> Result<Instrument, String> {
    if let Some((chain, address)) = asset.split_once(':')
        && looks_like_chain(chain)
    {
        return TokenRef::parse(chain, address)
            .map(Instrument::Token)
            .map_err(|e| e.to_string());
    }
    let printable = asset.bytes().all(|b| b.is_ascii_graphic());
    if asset.is_empty() || asset.len() > MAX_SYMBOL_LEN || !printable {
        return Err(format!(
            "asset symbol must be 1 to {MAX_SYMBOL_LEN} printable ASCII characters"
        ));
    }
    Ok(Instrument::Symbol(Arc::from(asset)))
}

/// A DEX Screener chain slug's shape: lower-case letters, digits and dashes.
fn looks_like_chain(chain: &str) -> bool {
    !chain.is_empty()
        && chain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Asset, AssetMap, Endpoint};

    const ORIGIN: &str = "7d4f2a0c9e8b1a3f5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b";

    fn message() -> MeshPriceMessage {
        MeshPriceMessage {
            v: 1,
            asset: "SOL".into(),
            mantissa: 14_237_123_456,
            expo: -8,
            chain: Some("solana".into()),
            publish_ms: 1_795_248_000_123,
            change_24h: Some("-2.31".into()),
            origin: ORIGIN.into(),
            seq: 42,
        }
    }

    fn run(raw: &str) -> Vec<Record> {
        let env = Envelope {
            endpoint: Endpoint::MeshPrice,
            t_ms: 1_795_248_010_000,
            context: String::new(),
            raw: bytes::Bytes::from(raw.to_owned()),
            seq: 0,
        };
        let mut assets = AssetMap::default();
        assets.insert(Instrument::Symbol("SOL".into()), Asset::named("SOL"));
        let ctx = ParseContext {
            assets: &assets,
            max_future_skew_ms: 5_000,
        };
        let mut out = Vec::new();
        super::super::parse_envelope(&env, &ctx, &mut out);
        out
    }

    fn rejection(raw: &str) -> (String, String) {
        match run(raw).as_slice() {
            [Record::Invalid(i)] => (i.at.to_string(), i.reason.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wire_round_trips() {
        let sig = "ab".repeat(64);
        let wire = to_wire(&message(), &sig);
        assert_eq!(
            message().to_json(),
            serde_json::to_string(&message()).unwrap()
        );
        let parts = split_wire(wire.as_bytes()).unwrap();
        assert_eq!(parts.msg.get(), message().to_json());
        assert_eq!(parts.sig, sig);
        let out = run(&wire);
        let [Record::Price(tick)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(tick.asset, Asset::named("SOL"));
        assert_eq!(tick.price, Decimal::new(14_237_123_456, -8));
        assert_eq!(tick.publish_ms, 1_795_248_000_123);
        assert_eq!(tick.change_24h, Some(Decimal::new(-231, -2)));
        assert_eq!(tick.source.to_string(), format!("mesh:{ORIGIN}"));
    }

    #[test]
    fn tokens_and_symbols() {
        let mut msg = message();
        msg.asset = "solana:So11111111111111111111111111111111111111112".into();
        msg.change_24h = None;
        msg.chain = None;
        let out = run(&to_wire(&msg, &"0".repeat(128)));
        assert!(
            matches!(&out[0], Record::Price(p) if matches!(p.instrument, Instrument::Token(_)))
        );
        msg.asset = "solana:nope".into();
        assert_eq!(rejection(&to_wire(&msg, &"0".repeat(128))).0, "msg.asset");
        msg.asset = "BTC:USD".into();
        let out = run(&to_wire(&msg, &"0".repeat(128)));
        assert!(
            matches!(&out[0], Record::Price(p) if p.instrument == Instrument::Symbol("BTC:USD".into()))
        );
        for bad in ["", "has space", &"X".repeat(65)] {
            msg.asset = bad.into();
            assert_eq!(rejection(&to_wire(&msg, &"0".repeat(128))).0, "msg.asset");
        }
    }

    #[test]
    fn every_rule_has_its_path() {
        let sig = "0".repeat(128);
        type Breakage = Box<dyn Fn(&mut MeshPriceMessage)>;
        let cases: Vec<(Breakage, &str)> = vec![
            (Box::new(|m| m.mantissa = 0), "msg.mantissa"),
            (Box::new(|m| m.expo = 31), "msg.expo"),
            (
                Box::new(|m| m.publish_ms = 1_795_248_015_001),
                "msg.publish_ms",
            ),
            (
                Box::new(|m| m.change_24h = Some("1,5".into())),
                "msg.change_24h",
            ),
            (Box::new(|m| m.origin = "ab".into()), "msg.origin"),
        ];
        for (break_it, path) in cases {
            let mut msg = message();
            break_it(&mut msg);
            assert_eq!(rejection(&to_wire(&msg, &sig)).0, path);
        }
        assert_eq!(rejection(&to_wire(&message(), "abc")).0, "sig");
        let no_sig = format!(r#"{{"msg":{}}}"#, message().to_json());
        assert_eq!(
            rejection(&no_sig),
            ("sig".into(), "missing signature".into())
        );
        let neg_seq = to_wire(&message(), &sig).replace("\"seq\":42", "\"seq\":-1");
        assert_eq!(rejection(&neg_seq).0, "msg.seq");
    }

    #[test]
    fn other_versions_are_refused_whole() {
        let wire = r#"{"msg":{"v":2,"whatever":true},"sig":"00"}"#;
        assert_eq!(
            rejection(wire),
            ("msg.v".into(), "unsupported mesh message version 2".into())
        );
        assert_eq!(rejection(r#"{"msg":{},"sig":"00"}"#).0, "msg");
        assert_eq!(rejection(r#"{"msg":{"v":"1"},"sig":"00"}"#).0, "msg.v");
    }

    #[test]
    fn null_change_is_no_change() {
        let wire = to_wire(&message(), &"0".repeat(128)).replace("\"-2.31\"", "null");
        assert!(matches!(&run(&wire)[0], Record::Price(p) if p.change_24h.is_none()));
    }
}
