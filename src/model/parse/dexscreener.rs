//! DEX Screener: boost-rank snapshots and USD prices of pairs' base tokens, plus typed views of
//! the endpoints sluice keeps fixtures of but does not ingest (token profiles, orders).
//!
//! The ingesting views name only the fields sluice uses. Everything else a response carries
//! (labels, volumes, fdv, `info` with either social shape, boosts, `openGraph`, icons that are
//! hashes instead of URLs, ...) is skipped unread: a change to a field sluice ignores must not
//! cost the prices.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::support::{
    Text, decode, decode_object, first_byte, float_decimal, ingest_ms_signed, join, literal_decimal,
};
use super::{ParseContext, invalid};
use crate::model::{
    AddressError, BoostEntry, BoostSnapshot, Decimal, Envelope, Instrument, Location, PriceSource,
    PriceTick, Record, TokenRef,
};

/// One item of `/token-boosts/top/v1` or `/token-boosts/latest/v1`, as far as ranking needs it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BoostView<'a> {
    #[serde(borrow)]
    chain_id: Text<'a>,
    #[serde(borrow)]
    token_address: Text<'a>,
    #[serde(borrow)]
    total_amount: &'a RawValue,
}

/// Parses a boost-rank list into one snapshot of its valid entries.
///
/// Ranks are positions in the response, so an invalid item leaves a gap instead of promoting
/// the items after it. A body that is not a list (an error object, say) is a failed poll and
/// yields no snapshot at all: an empty snapshot would claim that nothing is boosted.
pub fn parse_boosts(env: &Envelope, _ctx: &ParseContext<'_>, out: &mut Vec<Record>) {
    let items: Vec<&RawValue> = match decode(&env.raw) {
        Ok(items) => items,
        Err(err) => {
            let reason = format!("expected a JSON array of boosts: {}", err.reason());
            out.push(invalid(env, reason, err.location("")));
            return;
        }
    };
    let mut entries = Vec::with_capacity(items.len());
    let mut seen = HashSet::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match boost_entry(i, item) {
            Ok(entry) if seen.contains(&entry.token) => out.push(invalid(
                env,
                "duplicate token in boost list",
                Location::Path(format!("[{i}].tokenAddress")),
            )),
            Ok(entry) => {
                seen.insert(entry.token.clone());
                entries.push(entry);
            }
            Err((reason, at)) => out.push(invalid(env, reason, at)),
        }
    }
    out.push(Record::Boosts(BoostSnapshot { entries }));
}

fn boost_entry(i: usize, item: &RawValue) -> Result<BoostEntry, (String, Location)> {
    let prefix = format!("[{i}]");
    let at = |field: &str| Location::Path(join(&prefix, field));
    let boost: BoostView<'_> =
        decode_object(item.get().as_bytes()).map_err(|e| (e.reason(), e.location(&prefix)))?;
    let token = TokenRef::parse(&boost.chain_id, &boost.token_address).map_err(|e| {
        let field = match e {
            AddressError::Chain(_) => "chainId",
            _ => "tokenAddress",
        };
        (e.to_string(), at(field))
    })?;
    let total_amount = float_decimal(boost.total_amount).map_err(|e| (e, at("totalAmount")))?;
    if total_amount.mantissa < 0 {
        return Err(("negative boost amount".to_owned(), at("totalAmount")));
    }
    Ok(BoostEntry {
        token,
        rank: u32::try_from(i + 1).unwrap_or(u32::MAX),
        total_amount,
    })
}

/// The `/latest/dex/*` wrapper: `{schemaVersion, pairs: [...] | null, pair?}`.
#[derive(Deserialize)]
struct PairsObject<'a> {
    /// Outer `None`: no `pairs` field at all (not the API's shape); inner `None`: `null` (no
    /// pairs found, a normal answer).
    #[serde(borrow, default, deserialize_with = "present")]
    pairs: Option<Option<Vec<&'a RawValue>>>,
    /// Legacy duplicate of `pairs[0]`, used only when `pairs` is missing.
    #[serde(borrow)]
    pair: Option<&'a RawValue>,
}

/// Marks a field as present (even when `null`), so that a missing one can be told apart.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A pair, as far as pricing its base token needs it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PairView<'a> {
    #[serde(borrow)]
    chain_id: Text<'a>,
    #[serde(borrow)]
    base_token: TokenView<'a>,
    #[serde(borrow)]
    price_usd: Option<Text<'a>>,
    #[serde(borrow)]
    liquidity: Option<LiquidityView<'a>>,
    #[serde(borrow)]
    price_change: Option<PriceChangeView<'a>>,
}

#[derive(Deserialize)]
struct TokenView<'a> {
    #[serde(borrow)]
    address: Text<'a>,
}

#[derive(Deserialize)]
struct LiquidityView<'a> {
    #[serde(borrow)]
    usd: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct PriceChangeView<'a> {
    #[serde(borrow)]
    h24: Option<&'a RawValue>,
}

/// A priced pair waiting for the liquidity comparison with its base token's other pairs.
struct Candidate {
    token: TokenRef,
    price: Decimal,
    liquidity: Option<Decimal>,
    change_24h: Option<Decimal>,
}

/// Parses pairs (a bare array, or the `{schemaVersion, pairs, pair}` object) into one USD
/// price per base token.
///
/// A token traded in several pairs is priced by its most liquid one: thin pools lag and are
/// easy to push around. Pairs without `priceUsd` have no USD route and are skipped silently.
/// DEX Screener gives no publish time, so the ingest time stands in for it.
pub fn parse_pairs(env: &Envelope, ctx: &ParseContext<'_>, out: &mut Vec<Record>) {
    let (items, prefix): (Vec<&RawValue>, &str) = if first_byte(&env.raw) == Some(b'{') {
        match decode::<PairsObject<'_>>(&env.raw) {
            Ok(PairsObject {
                pairs: Some(Some(pairs)),
                ..
            }) => (pairs, "pairs"),
            Ok(PairsObject {
                pair: Some(pair), ..
            }) => (vec![pair], "pair"),
            Ok(PairsObject {
                pairs: Some(None), ..
            }) => (Vec::new(), ""),
            Ok(PairsObject { pairs: None, .. }) => {
                out.push(invalid(
                    env,
                    "an object without `pairs`: not a pairs response",
                    Location::Path("pairs".into()),
                ));
                return;
            }
            Err(err) => {
                out.push(invalid(env, err.reason(), err.location("")));
                return;
            }
        }
    } else {
        match decode(&env.raw) {
            Ok(items) => (items, ""),
            Err(err) => {
                let reason = format!("expected a JSON array of pairs: {}", err.reason());
                out.push(invalid(env, reason, err.location("")));
                return;
            }
        }
    };
    let mut best: Vec<Candidate> = Vec::new();
    let mut slot_of: HashMap<TokenRef, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = if prefix == "pair" {
            "pair".to_owned()
        } else {
            format!("{prefix}[{i}]")
        };
        let candidate = match pair_candidate(&item_path, item) {
            Ok(Some(candidate)) => candidate,
            Ok(None) => continue,
            Err((reason, at)) => {
                out.push(invalid(env, reason, at));
                continue;
            }
        };
        match slot_of.get(&candidate.token) {
            Some(&slot) => {
                if let Some(held) = best.get_mut(slot)
                    && more_liquid(candidate.liquidity.as_ref(), held.liquidity.as_ref())
                {
                    *held = candidate;
                }
            }
            None => {
                slot_of.insert(candidate.token.clone(), best.len());
                best.push(candidate);
            }
        }
    }
    let publish_ms = ingest_ms_signed(env.t_ms);
    for candidate in best {
        let instrument = Instrument::Token(candidate.token);
        out.push(Record::Price(PriceTick {
            asset: ctx.assets.resolve(&instrument),
            instrument,
            price: candidate.price,
            conf: 0,
            publish_ms,
            source: PriceSource::Dexscreener,
            change_24h: candidate.change_24h,
            update_data: None,
        }));
    }
}

/// Missing liquidity ranks below any reported one; equal liquidity keeps the earlier pair.
fn more_liquid(new: Option<&Decimal>, held: Option<&Decimal>) -> bool {
    match (new, held) {
        (Some(new), Some(held)) => new.cmp_value(held).is_gt(),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn pair_candidate(prefix: &str, item: &RawValue) -> Result<Option<Candidate>, (String, Location)> {
    let at = |field: &str| Location::Path(join(prefix, field));
    let pair: PairView<'_> =
        decode_object(item.get().as_bytes()).map_err(|e| (e.reason(), e.location(prefix)))?;
    let Some(price_usd) = &pair.price_usd else {
        return Ok(None);
    };
    let token = TokenRef::parse(&pair.chain_id, &pair.base_token.address).map_err(|e| {
        let field = match e {
            AddressError::Chain(_) => "chainId",
            _ => "baseToken.address",
        };
        (e.to_string(), at(field))
    })?;
    let price = Decimal::parse(price_usd).map_err(|e| (e.to_string(), at("priceUsd")))?;
    if !price.is_positive() {
        return Err((format!("price {price} is not positive"), at("priceUsd")));
    }
    let liquidity = match pair.liquidity.as_ref().and_then(|l| l.usd) {
        Some(raw) => Some(literal_decimal(raw).map_err(|e| (e, at("liquidity.usd")))?),
        None => None,
    };
    let change_24h = match pair.price_change.as_ref().and_then(|c| c.h24) {
        Some(raw) => Some(float_decimal(raw).map_err(|e| (e, at("priceChange.h24")))?),
        None => None,
    };
    Ok(Some(Candidate {
        token,
        price,
        liquidity,
        change_24h,
    }))
}

/// A link on a token profile or boost: `type` (twitter, telegram, ...) or `label` (Website).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The kind of social link, when it is one.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The label of a website link, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Where it points.
    pub url: String,
}

/// One item of `/token-profiles/latest/v1` (also `/token-profiles/recent-updates/v1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenProfile {
    /// The token's DEX Screener page.
    #[serde(default)]
    pub url: Option<String>,
    /// Chain slug.
    pub chain_id: String,
    /// Token address as DEX Screener spells it.
    pub token_address: String,
    /// Icon URL (sometimes a bare image hash).
    #[serde(default)]
    pub icon: Option<String>,
    /// Header image URL.
    #[serde(default)]
    pub header: Option<String>,
    /// Open Graph image URL (undocumented, observed).
    #[serde(default)]
    pub open_graph: Option<String>,
    /// Free-text description.
    #[serde(default)]
    pub description: Option<String>,
    /// Website and social links.
    #[serde(default)]
    pub links: Option<Vec<Link>>,
    /// Community takeover (undocumented, observed).
    #[serde(default)]
    pub cto: Option<bool>,
}

/// One item of `/orders/v1/{chainId}/{tokenAddress}`: a paid order for the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// What was ordered (`tokenProfile`, `tokenAd`, `communityTakeover`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Where the order stands (`processing`, `approved`, `rejected`, ...).
    pub status: String,
    /// Payment time, ms since the epoch.
    pub payment_timestamp: i64,
}

/// Parses a `/token-profiles/latest/v1` body.
pub fn parse_token_profiles(raw: &[u8]) -> Result<Vec<TokenProfile>, String> {
    decode_list(raw)
}

/// Parses an `/orders/v1/...` body.
pub fn parse_orders(raw: &[u8]) -> Result<Vec<Order>, String> {
    decode_list(raw)
}

fn decode_list<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<Vec<T>, String> {
    decode::<Vec<T>>(raw).map_err(|e| format!("{} at {}", e.reason(), e.location("")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    const SOL: &str = "So11111111111111111111111111111111111111112";
    const BONK: &str = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263";

    fn run(endpoint: Endpoint, raw: &str) -> Vec<Record> {
        super::super::parse_raw_with(endpoint, "solana", 1_795_248_010_000, raw, 0)
    }

    fn invalid_at(records: &[Record]) -> Vec<(String, String)> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Invalid(i) => Some((i.at.to_string(), i.reason.clone())),
                _ => None,
            })
            .collect()
    }

    fn boosts(records: &[Record]) -> &BoostSnapshot {
        records
            .iter()
            .find_map(|r| match r {
                Record::Boosts(b) => Some(b),
                _ => None,
            })
            .expect("a snapshot")
    }

    fn prices(records: &[Record]) -> Vec<&PriceTick> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Price(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    fn pair(base: &str, price: Option<&str>, extra: &str) -> String {
        let price = price
            .map(|p| format!(r#""priceUsd":"{p}","#))
            .unwrap_or_default();
        format!(
            r#"{{"chainId":"solana","dexId":"x","pairAddress":"p","baseToken":{{"address":"{base}","name":"n","symbol":"s"}},
               "quoteToken":{{"address":"{SOL}","name":"n","symbol":"s"}},"priceNative":"1",{price}"txns":{{}}{extra}}}"#
        )
    }

    #[test]
    fn boost_ranks_keep_gaps_and_first_duplicates() {
        let raw = format!(
            r#"[{{"chainId":"solana","tokenAddress":"{SOL}","totalAmount":500,"icon":"68aebe7e163f17e377ac9678ac31a76132b01e010f6c1801b45a7c90445fdd42","links":[{{"type":"twitter","url":"u"}},{{"label":"Website","url":"w"}}]}},
                {{"chainId":"solana","tokenAddress":"not-base58!","totalAmount":400}},
                {{"chainId":"solana","tokenAddress":"{BONK}","amount":10,"totalAmount":300.5,"description":null,"header":null,"links":null,"openGraph":"x"}},
                {{"chainId":"solana","tokenAddress":"{SOL}","totalAmount":100}}]"#
        );
        let out = run(Endpoint::DexscreenerBoosts, &raw);
        let snap = boosts(&out);
        let ranks: Vec<u32> = snap.entries.iter().map(|e| e.rank).collect();
        assert_eq!(ranks, [1, 3]);
        assert_eq!(&*snap.entries[1].token.address, BONK);
        assert_eq!(snap.entries[1].total_amount, Decimal::new(3005, -1));
        let bad = invalid_at(&out);
        assert_eq!(bad[0].0, "[1].tokenAddress");
        assert_eq!(
            bad[1],
            (
                "[3].tokenAddress".into(),
                "duplicate token in boost list".into()
            )
        );
    }

    #[test]
    fn boost_error_bodies_are_not_snapshots() {
        let out = run(Endpoint::DexscreenerBoosts, r#"{"error":"rate limited"}"#);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Record::Invalid(i) if i.at == Location::Offset(0)));
        let out = run(Endpoint::DexscreenerBoosts, " [] ");
        assert_eq!(boosts(&out).entries.len(), 0);
    }

    #[test]
    fn boost_items_of_the_wrong_kind_are_reported() {
        let raw = format!(
            r#"[["solana","{SOL}",5],{{"chainId":"solana","tokenAddress":"{SOL}","totalAmount":"5"}}]"#
        );
        let out = run(Endpoint::DexscreenerBoosts, &raw);
        let bad = invalid_at(&out);
        assert_eq!(
            bad[0],
            (
                "[0]".into(),
                "expected a JSON object, found an array".into()
            )
        );
        assert_eq!(bad[1].0, "[1].totalAmount");
        assert!(boosts(&out).entries.is_empty());
    }

    #[test]
    fn most_liquid_pair_prices_the_token() {
        let raw = format!(
            "[{},{},{},{},{}]",
            pair(
                BONK,
                Some("0.00001411"),
                r#","liquidity":{"usd":702331.18}"#
            ),
            pair(
                BONK,
                Some("0.00001412"),
                r#","liquidity":{"usd":3910442.27},"priceChange":{"h24":4.12}"#
            ),
            pair(BONK, Some("0.00001413"), ""),
            pair(BONK, None, r#","liquidity":{"usd":9e12}"#),
            pair(
                BONK,
                Some("0.00001499"),
                r#","liquidity":{"usd":3910442.270}"#
            ),
        );
        let out = run(Endpoint::DexscreenerTokens, &raw);
        let ticks = prices(&out);
        assert_eq!(ticks.len(), 1, "{out:?}");
        assert_eq!(ticks[0].price, Decimal::new(1412, -8));
        assert_eq!(ticks[0].change_24h, Some(Decimal::new(412, -2)));
        assert_eq!(ticks[0].publish_ms, 1_795_248_010_000);
        assert_eq!(ticks[0].source, PriceSource::Dexscreener);
        assert!(invalid_at(&out).is_empty());
    }

    #[test]
    fn liquidity_is_compared_exactly() {
        // Equal as f64 (both round to 9007199254740992), different as literals.
        let raw = format!(
            "[{},{}]",
            pair(BONK, Some("1"), r#","liquidity":{"usd":9007199254740992}"#),
            pair(BONK, Some("2"), r#","liquidity":{"usd":9007199254740993}"#),
        );
        let ticks_out = run(Endpoint::DexscreenerTokens, &raw);
        assert_eq!(prices(&ticks_out)[0].price, Decimal::new(2, 0));
    }

    #[test]
    fn pair_quirks_are_tolerated() {
        let extra = r#","labels":null,"liquidity":null,"fdv":null,"marketCap":null,"pairCreatedAt":null,
            "volume":{"h24":1},"priceChange":{"h6":1.5},"boosts":{"active":3},
            "info":{"imageUrl":"i","websites":[{"label":"Website","url":"u"}],
                    "socials":[{"type":"twitter","url":"u"},{"platform":"telegram","handle":"h"}]}"#;
        let raw = format!(
            r#"{{"schemaVersion":"1.0.0","pairs":[{}]}}"#,
            pair(SOL, Some("142.37"), extra)
        );
        let out = run(Endpoint::DexscreenerTokens, &raw);
        let ticks = prices(&out);
        assert_eq!(ticks.len(), 1, "{out:?}");
        assert_eq!(ticks[0].change_24h, None);
        for empty in [
            r#"{"schemaVersion":"1.0.0","pairs":null,"pair":null}"#,
            r#"{"pairs":[]}"#,
            "[]",
        ] {
            assert!(
                run(Endpoint::DexscreenerTokens, empty).is_empty(),
                "{empty}"
            );
        }
    }

    #[test]
    fn bad_pairs_do_not_hide_good_ones() {
        let raw = format!(
            r#"{{"pairs":[{},{},{},{}]}}"#,
            pair(SOL, Some("0"), ""),
            pair(BONK, Some("1,5"), ""),
            pair("0xdead", Some("1"), ""),
            pair(BONK, Some("0.5"), r#","liquidity":{"usd":"lots"}"#),
        );
        let out = run(Endpoint::DexscreenerTokens, &raw);
        let bad: Vec<String> = invalid_at(&out).into_iter().map(|(at, _)| at).collect();
        assert_eq!(
            bad,
            [
                "pairs[0].priceUsd",
                "pairs[1].priceUsd",
                "pairs[2].baseToken.address",
                "pairs[3].liquidity.usd"
            ]
        );
        let raw = format!("[{},{}]", pair(SOL, Some("142"), ""), r#"{"chainId":5}"#);
        let out = run(Endpoint::DexscreenerTokens, &raw);
        assert_eq!(prices(&out).len(), 1);
        assert_eq!(invalid_at(&out)[0].0, "[1].chainId");
    }

    #[test]
    fn legacy_pair_is_used_only_without_pairs() {
        let raw = format!(r#"{{"pairs":null,"pair":{}}}"#, pair(SOL, Some("142"), ""));
        assert_eq!(prices(&run(Endpoint::DexscreenerTokens, &raw)).len(), 1);
        let raw = format!(r#"{{"pairs":null,"pair":{}}}"#, pair(SOL, Some("-1"), ""));
        assert_eq!(
            invalid_at(&run(Endpoint::DexscreenerTokens, &raw))[0].0,
            "pair.priceUsd"
        );
    }

    #[test]
    fn profiles_and_orders_parse() {
        let profiles = parse_token_profiles(
            br#"[{"chainId":"solana","tokenAddress":"x","cto":true,"openGraph":"o","links":[{"label":"Website","url":"u"}],"extra":1}]"#,
        )
        .unwrap();
        assert_eq!(profiles[0].cto, Some(true));
        assert_eq!(
            profiles[0].links.as_ref().unwrap()[0].label.as_deref(),
            Some("Website")
        );
        let orders =
            parse_orders(br#"[{"type":"tokenAd","status":"on-hold","paymentTimestamp":1}]"#)
                .unwrap();
        assert_eq!(orders[0].kind, "tokenAd");
        let err =
            parse_orders(br#"[{"type":"tokenAd","status":5,"paymentTimestamp":1}]"#).unwrap_err();
        assert!(err.ends_with("at [0].status"), "{err}");
    }
}
