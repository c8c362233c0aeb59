//! Birdeye: token prices from `/defi/multi_price` and `/defi/price`, and the WebSocket
//! messages of its (Business-tier) price stream, a possible future source.
//!
//! Birdeye prices are JSON floats. They are read from the number's literal text and kept to
//! [`FLOAT_DIGITS`](crate::model::Decimal::FLOAT_DIGITS) significant digits, never through an `f64`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::support::{
    Text, check_not_ahead, decode_object, float_decimal, join, key_segment, seconds_to_ms,
};
use super::{ParseContext, invalid};
use crate::model::{
    AddressError, Envelope, Instrument, Location, PriceSource, PriceTick, Record, TokenRef,
};

/// The chain Birdeye assumes when the `x-chain` header is absent.
const DEFAULT_CHAIN: &str = "solana";

/// Every Birdeye REST body: `{success, data}` or `{success: false, message}`.
#[derive(Deserialize)]
struct Response<'a> {
    success: Option<bool>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<Text<'a>>,
}

/// One token's price object.
#[derive(Deserialize)]
struct PriceData<'a> {
    /// Null when no pool has enough liquidity: then there is no price, and no error.
    #[serde(borrow)]
    value: Option<&'a RawValue>,
    /// Seconds.
    #[serde(rename = "updateUnixTime")]
    update_unix_time: Option<i64>,
    #[serde(borrow, rename = "priceChange24h")]
    price_change_24h: Option<&'a RawValue>,
}

/// Parses a `/defi/multi_price` body: one tick per priced token, in address order.
///
/// The chain is the envelope's context (the request's `x-chain` header; empty means solana).
/// A `null` entry is a token Birdeye does not know, which is an answer, not an error.
pub fn parse_multi_price(env: &Envelope, ctx: &ParseContext<'_>, out: &mut Vec<Record>) {
    let Some(data) = open(env, out) else {
        return;
    };
    // A BTreeMap orders by address: JSON object order is not part of the data.
    let entries: BTreeMap<Text<'_>, Option<&RawValue>> = match decode_object(data.get().as_bytes())
    {
        Ok(entries) => entries,
        Err(err) => {
            out.push(invalid(env, err.reason(), err.location("data")));
            return;
        }
    };
    let chain = chain_of(&env.context);
    for (address, entry) in entries {
        let Some(entry) = entry else {
            continue;
        };
        let prefix = join("data", &key_segment(&address));
        match TokenRef::parse(chain, &address) {
            Ok(token) => price_tick(env, ctx, token, entry, &prefix, out),
            Err(err @ AddressError::Chain(_)) => {
                // Every entry would fail alike: say it once.
                out.push(invalid(
                    env,
                    format!("envelope context: {err}"),
                    Location::Offset(0),
                ));
                return;
            }
            Err(err) => out.push(invalid(env, err.to_string(), Location::Path(prefix))),
        }
    }
}

/// Parses a `/defi/price` body. The body has no address: the envelope's context is
/// `<x-chain>/<address>`.
pub fn parse_price(env: &Envelope, ctx: &ParseContext<'_>, out: &mut Vec<Record>) {
    let Some(data) = open(env, out) else {
        return;
    };
    let token = env
        .context
        .split_once('/')
        .ok_or_else(|| "expected <chain>/<address>".to_owned())
        .and_then(|(chain, address)| {
            TokenRef::parse(chain_of(chain), address).map_err(|e| e.to_string())
        });
    match token {
        Ok(token) => price_tick(env, ctx, token, data, "data", out),
        Err(reason) => out.push(invalid(
            env,
            format!(
                "envelope context {:?}: {reason}",
                crate::model::ids::truncate_for_error(&env.context)
            ),
            Location::Offset(0),
        )),
    }
}

/// The `data` of a successful response, or `None` after reporting why there is none to read.
fn open<'a>(env: &'a Envelope, out: &mut Vec<Record>) -> Option<&'a RawValue> {
    let response: Response<'_> = match decode_object(&env.raw) {
        Ok(response) => response,
        Err(err) => {
            out.push(invalid(env, err.reason(), err.location("")));
            return None;
        }
    };
    match (response.success, response.data) {
        (Some(false), _) => {
            let message = response.message.as_deref().unwrap_or("(no message)");
            let reason = format!("birdeye error: {message}");
            out.push(invalid(env, reason, Location::Path("message".into())));
            None
        }
        (_, Some(data)) => Some(data),
        // `data: null` is an unknown token: no price, and no error.
        (Some(true), None) => None,
        (None, None) => {
            out.push(invalid(
                env,
                "neither success nor data in response",
                Location::Offset(0),
            ));
            None
        }
    }
}

fn price_tick(
    env: &Envelope,
    ctx: &ParseContext<'_>,
    token: TokenRef,
    raw: &RawValue,
    prefix: &str,
    out: &mut Vec<Record>,
) {
    let data: PriceData<'_> = match decode_object(raw.get().as_bytes()) {
        Ok(data) => data,
        Err(err) => {
            out.push(invalid(env, err.reason(), err.location(prefix)));
            return;
        }
    };
    let Some(value) = data.value else {
        return;
    };
    let fields = ParsedFields {
        value,
        unix_time: data.update_unix_time,
        change_24h: data.price_change_24h,
    };
    match fields.into_tick(token, env.t_ms, ctx) {
        Ok(tick) => out.push(Record::Price(tick)),
        Err((reason, field)) => out.push(invalid(env, reason, Location::Path(join(prefix, field)))),
    }
}

/// The fields a price needs, however the message named them.
struct ParsedFields<'a> {
    value: &'a RawValue,
    unix_time: Option<i64>,
    change_24h: Option<&'a RawValue>,
}

impl ParsedFields<'_> {
    /// The tick, or why not and the name of the field at fault (REST names).
    fn into_tick(
        self,
        token: TokenRef,
        ingest_ms: u64,
        ctx: &ParseContext<'_>,
    ) -> Result<PriceTick, (String, &'static str)> {
        let price = float_decimal(self.value).map_err(|e| (e, "value"))?;
        if !price.is_positive() {
            return Err((format!("price {price} is not positive"), "value"));
        }
        let seconds = self
            .unix_time
            .ok_or_else(|| ("missing update time".to_owned(), "updateUnixTime"))?;
        let publish_ms = seconds_to_ms(seconds).map_err(|e| (e, "updateUnixTime"))?;
        check_not_ahead(publish_ms, ingest_ms, ctx).map_err(|e| (e, "updateUnixTime"))?;
        let change_24h = match self.change_24h {
            Some(raw) => Some(float_decimal(raw).map_err(|e| (e, "priceChange24h"))?),
            None => None,
        };
        let instrument = Instrument::Token(token);
        Ok(PriceTick {
            asset: ctx.assets.resolve(&instrument),
            instrument,
            price,
            conf: 0,
            publish_ms,
            source: PriceSource::Birdeye,
            change_24h,
            update_data: None,
        })
    }
}

fn chain_of(context: &str) -> &str {
    if context.is_empty() {
        DEFAULT_CHAIN
    } else {
        context
    }
}

/// Any WebSocket message: a `type` and its `data`.
#[derive(Deserialize)]
struct WsMessage<'a> {
    #[serde(borrow, rename = "type")]
    kind: Text<'a>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// The `data` of a `PRICE_DATA` message: one OHLCV candle, as far as a price needs it.
#[derive(Deserialize)]
struct WsPriceData<'a> {
    /// Close price of the candle.
    #[serde(borrow)]
    c: &'a RawValue,
    /// Candle start, seconds.
    #[serde(rename = "unixTime")]
    unix_time: Option<i64>,
    #[serde(borrow)]
    address: Text<'a>,
}

/// Parses one server message of Birdeye's WebSocket price stream.
///
/// A `PRICE_DATA` message becomes a tick priced at the candle's close `c`, published at the
/// candle's `unixTime` (its start: Birdeye sends no other time); other message types are
/// `Ok(None)`. `chain` is the chain of the socket URL (empty means solana) and `ingest_ms` the
/// receive time, against which the publish time is checked.
pub fn parse_ws_message(
    text: &str,
    chain: &str,
    ingest_ms: u64,
    ctx: &ParseContext<'_>,
) -> Result<Option<PriceTick>, String> {
    let message: WsMessage<'_> = decode_object(text.as_bytes())
        .map_err(|e| format!("{} at {}", e.reason(), e.location("")))?;
    if &*message.kind != "PRICE_DATA" {
        return Ok(None);
    }
    let data = message.data.ok_or("PRICE_DATA without data")?;
    let price: WsPriceData<'_> = decode_object(data.get().as_bytes())
        .map_err(|e| format!("{} at {}", e.reason(), e.location("data")))?;
    let token = TokenRef::parse(chain_of(chain), &price.address)
        .map_err(|e| format!("{e} at data.address"))?;
    let fields = ParsedFields {
        value: price.c,
        unix_time: price.unix_time,
        change_24h: None,
    };
    let ws_name = |field: &str| {
        match field {
            "value" => "c",
            "updateUnixTime" => "unixTime",
            other => other,
        }
        .to_owned()
    };
    fields
        .into_tick(token, ingest_ms, ctx)
        .map(Some)
        .map_err(|(reason, field)| format!("{reason} at data.{}", ws_name(field)))
}

/// A client's `SUBSCRIBE_PRICE` (or other `SUBSCRIBE_*`) message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsSubscribe {
    /// `SUBSCRIBE_PRICE`, `UNSUBSCRIBE_PRICE`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// What to subscribe to.
    pub data: WsSubscribeData,
}

/// The body of a subscription: one address (`simple`) or a query over many (`complex`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsSubscribeData {
    /// `simple` or `complex`.
    pub query_type: String,
    /// Candle interval (`1m`, ...), for `simple`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart_type: Option<String>,
    /// Token or pair address, for `simple`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `usd` or `pair`, for `simple`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// `(address = A AND chartType = 1m AND currency = usd) OR (...)`, for `complex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// Parses a subscription message.
pub fn parse_ws_subscribe(text: &str) -> Result<WsSubscribe, String> {
    decode_object(text.as_bytes()).map_err(|e| format!("{} at {}", e.reason(), e.location("")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AssetMap, Decimal, Endpoint};

    const SOL: &str = "So11111111111111111111111111111111111111112";
    const USDC: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";

    fn run(endpoint: Endpoint, context: &str, raw: &str) -> Vec<Record> {
        super::super::parse_raw_with(endpoint, context, 1_795_248_010_000, raw, 0)
    }

    fn summary(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| match r {
                Record::Price(p) => format!("{} {} {}", p.instrument, p.price, p.publish_ms),
                Record::Invalid(i) => format!("invalid {}: {}", i.at, i.reason),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn multi_price_sorts_and_skips_unknowns() {
        let raw = format!(
            r#"{{"success":true,"data":{{"{USDC}":{{"value":0.9999312,"updateUnixTime":1795247990,"priceChange24h":0.0041}},
                "{SOL}":{{"value":142.37118820455194,"updateUnixTime":1795247993}},
                "Eo89Mxv1twGBcKPTqDuJgfUzaouQhuH6uGdkWRwHeYoR":null,
                "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263":{{"value":null,"updateUnixTime":null}}}}}}"#
        );
        let out = run(Endpoint::BirdeyeMultiPrice, "", &raw);
        assert_eq!(
            summary(&out),
            [
                format!("solana:{USDC} 0.9999312 1795247990000"),
                format!("solana:{SOL} 142.371188204552 1795247993000"),
            ]
        );
    }

    #[test]
    fn bad_entries_are_reported_in_place() {
        let raw = format!(
            r#"{{"success":true,"data":{{"{USDC}":{{"value":"1","updateUnixTime":1}},
                "{SOL}":{{"value":0,"updateUnixTime":1}},
                "0xabc":{{"value":1,"updateUnixTime":1}},
                "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263":{{"value":1,"updateUnixTime":1795248099}},
                "Eo89Mxv1twGBcKPTqDuJgfUzaouQhuH6uGdkWRwHeYoR":{{"value":1}}}}}}"#
        );
        let out = run(Endpoint::BirdeyeMultiPrice, "solana", &raw);
        let at: Vec<String> = out
            .iter()
            .map(|r| match r {
                Record::Invalid(i) => i.at.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            at,
            [
                "data.0xabc".to_owned(),
                "data.DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263.updateUnixTime".into(),
                format!("data.{USDC}.value"),
                "data.Eo89Mxv1twGBcKPTqDuJgfUzaouQhuH6uGdkWRwHeYoR.updateUnixTime".into(),
                format!("data.{SOL}.value"),
            ]
        );
        assert!(summary(&out)[1].ends_with("publish time 89000 ms ahead of ingest"));
    }

    #[test]
    fn evm_chains_come_from_the_context() {
        let raw = r#"{"success":true,"data":{"0x940181a94A35A4569E4529A3CDfB74e38FD98631":{"value":0.97,"updateUnixTime":1795247990}}}"#;
        let out = run(Endpoint::BirdeyeMultiPrice, "base", raw);
        assert_eq!(
            summary(&out),
            ["base:0x940181a94a35a4569e4529a3cdfb74e38fd98631 0.97 1795247990000"]
        );
        let out = run(Endpoint::BirdeyeMultiPrice, "Not A Chain", raw);
        assert_eq!(out.len(), 1);
        assert!(summary(&out)[0].starts_with("invalid byte 0: envelope context"));
    }

    #[test]
    fn error_bodies_become_one_invalid_record() {
        let out = run(
            Endpoint::BirdeyeMultiPrice,
            "",
            r#"{"success":false,"message":"Too many requests"}"#,
        );
        assert_eq!(
            summary(&out),
            ["invalid message: birdeye error: Too many requests"]
        );
        let out = run(Endpoint::BirdeyePrice, "solana/x", r#"{"success":false}"#);
        assert_eq!(
            summary(&out),
            ["invalid message: birdeye error: (no message)"]
        );
    }

    #[test]
    fn single_price_takes_its_address_from_the_context() {
        let raw = r#"{"data":{"value":142.37,"updateUnixTime":1795247993,"priceChange24h":-2.310412873301,"liquidity":1e10},"success":true}"#;
        let out = run(Endpoint::BirdeyePrice, &format!("/{SOL}"), raw);
        assert_eq!(
            summary(&out),
            [format!("solana:{SOL} 142.37 1795247993000")]
        );
        let out = run(Endpoint::BirdeyePrice, SOL, raw);
        assert!(summary(&out)[0].contains("expected <chain>/<address>"));
        assert!(
            run(
                Endpoint::BirdeyePrice,
                SOL,
                r#"{"success":true,"data":null}"#
            )
            .is_empty()
        );
    }

    #[test]
    fn websocket_messages() {
        let assets = AssetMap::default();
        let ctx = ParseContext {
            assets: &assets,
            max_future_skew_ms: 5_000,
        };
        let text = format!(
            r#"{{"type":"PRICE_DATA","data":{{"o":1,"c":142.37118,"unixTime":1795247940,"address":"{SOL}"}}}}"#
        );
        let tick = parse_ws_message(&text, "", 1_795_248_000_000, &ctx)
            .unwrap()
            .unwrap();
        assert_eq!(tick.price, Decimal::new(14237118, -5));
        assert_eq!(tick.publish_ms, 1_795_247_940_000);
        assert_eq!(
            parse_ws_message(r#"{"type":"WELCOME"}"#, "", 0, &ctx),
            Ok(None)
        );
        let text =
            format!(r#"{{"type":"PRICE_DATA","data":{{"c":-1,"unixTime":1,"address":"{SOL}"}}}}"#);
        let err = parse_ws_message(&text, "", 0, &ctx).unwrap_err();
        assert!(err.ends_with("at data.c"), "{err}");
        let sub = parse_ws_subscribe(
            r#"{"type":"SUBSCRIBE_PRICE","data":{"queryType":"complex","query":"(a)"}}"#,
        )
        .unwrap();
        assert_eq!(sub.data.query.as_deref(), Some("(a)"));
    }
}
