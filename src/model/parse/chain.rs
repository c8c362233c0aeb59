//! Chain reads: our own JSON schema for one round of on-chain oracle reads by the chain
//! observer, which become the keeper's targets.
//!
//! Version 1, one JSON object per round:
//!
//! ```text
//! {"v":1,"block":12345,"reads":[
//!   {"id":"<64 hex>","price":"9712345678901","conf":"4512345678","expo":-8,"publish_time":1795248000},
//!   {"id":"<64 hex>","error":"PriceFeedNotFound"}]}
//! ```
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `v` | integer | schema version; only `1` is understood |
//! | `block` | integer or null, optional | block number the round was read at |
//! | `reads[i].id` | 64 hex (`0x` and either case accepted) | the Pyth feed id read |
//! | `reads[i].price` | i64 as a string | stored price mantissa; may be zero or negative: the contract stores what was pushed |
//! | `reads[i].conf` | u64 as a string | stored confidence, same exponent |
//! | `reads[i].expo` | integer | exponent |
//! | `reads[i].publish_time` | integer | stored publish time, seconds |
//! | `reads[i].error` | string | instead of the four price fields: `PriceFeedNotFound` means the feed was never pushed; any other error is a failed read |
//!
//! Integers that may exceed 2^53 are strings, as in Hermes, so JavaScript tools keep every
//! digit. The observer and the synthetic generator write rounds with [`to_json`], so what they
//! write is exactly what [`parse`] reads.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::support::{decode_object, push_json_str};
use super::{ParseContext, invalid};
use crate::model::{ChainTarget, Envelope, FeedId, Location, OnChainPrice, Record};

/// The only schema version this build understands.
pub const CHAIN_READ_VERSION: u32 = 1;

/// The error the oracle contract raises for a feed that was never pushed.
pub const FEED_NOT_FOUND: &str = "PriceFeedNotFound";

/// One round of reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReadRound {
    /// Schema version ([`CHAIN_READ_VERSION`]).
    pub v: u32,
    /// Block the round was read at, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// One entry per feed read.
    pub reads: Vec<ChainRead>,
}

impl ChainReadRound {
    /// A round of the current version.
    pub fn new(block: Option<u64>, reads: Vec<ChainRead>) -> Self {
        ChainReadRound {
            v: CHAIN_READ_VERSION,
            block,
            reads,
        }
    }
}

/// What one read of one feed returned: the four price fields, or an error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainRead {
    /// The feed.
    pub id: FeedId,
    /// Stored price mantissa.
    #[serde(default, with = "int_string", skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
    /// Stored confidence.
    #[serde(default, with = "int_string", skip_serializing_if = "Option::is_none")]
    pub conf: Option<u64>,
    /// Stored exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expo: Option<i32>,
    /// Stored publish time, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_time: Option<i64>,
    /// Why the read returned no price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ChainRead {
    /// A read that returned a stored price.
    pub fn found(id: FeedId, price: OnChainPrice) -> Self {
        ChainRead {
            id,
            price: Some(price.price),
            conf: Some(price.conf),
            expo: Some(price.expo),
            publish_time: Some(price.publish_time),
            error: None,
        }
    }

    /// A read of a feed that was never pushed.
    pub fn not_found(id: FeedId) -> Self {
        ChainRead::failed(id, FEED_NOT_FOUND)
    }

    /// A read that failed with `error`.
    pub fn failed(id: FeedId, error: &str) -> Self {
        ChainRead {
            id,
            price: None,
            conf: None,
            expo: None,
            publish_time: None,
            error: Some(error.to_owned()),
        }
    }

    /// The stored price (`None` for a feed never pushed), or why the read is unusable and the
    /// field at fault.
    pub fn stored_price(&self) -> Result<Option<OnChainPrice>, (String, &'static str)> {
        let has_price_fields = self.price.is_some()
            || self.conf.is_some()
            || self.expo.is_some()
            || self.publish_time.is_some();
        match self.error.as_deref() {
            Some(_) if has_price_fields => Err((
                "a read has either an error or a price, not both".into(),
                "error",
            )),
            Some(FEED_NOT_FOUND) => Ok(None),
            Some(other) => Err((format!("chain read failed: {other}"), "error")),
            None => {
                let missing = |field: &'static str| (format!("missing {field}"), field);
                Ok(Some(OnChainPrice {
                    price: self.price.ok_or_else(|| missing("price"))?,
                    conf: self.conf.ok_or_else(|| missing("conf"))?,
                    expo: self.expo.ok_or_else(|| missing("expo"))?,
                    publish_time: self.publish_time.ok_or_else(|| missing("publish_time"))?,
                }))
            }
        }
    }
}

/// The round as compact JSON, exactly as [`parse`] reads it (and as serde_json would write it).
pub fn to_json(round: &ChainReadRound) -> String {
    let mut out = String::with_capacity(32 + 160 * round.reads.len());
    out.push_str("{\"v\":");
    out.push_str(&round.v.to_string());
    if let Some(block) = round.block {
        out.push_str(",\"block\":");
        out.push_str(&block.to_string());
    }
    out.push_str(",\"reads\":[");
    for (i, read) in round.reads.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":\"");
        out.push_str(&read.id.to_string());
        out.push('"');
        if let Some(price) = read.price {
            out.push_str(&format!(",\"price\":\"{price}\""));
        }
        if let Some(conf) = read.conf {
            out.push_str(&format!(",\"conf\":\"{conf}\""));
        }
        if let Some(expo) = read.expo {
            out.push_str(&format!(",\"expo\":{expo}"));
        }
        if let Some(publish_time) = read.publish_time {
            out.push_str(&format!(",\"publish_time\":{publish_time}"));
        }
        if let Some(error) = &read.error {
            out.push_str(",\"error\":");
            push_json_str(&mut out, error);
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// The round with its reads left undecoded, so each bad read is reported on its own.
#[derive(Deserialize)]
struct RoundView<'a> {
    v: u64,
    block: Option<u64>,
    #[serde(borrow)]
    reads: Vec<&'a RawValue>,
}

/// Parses one round into one target per good read.
///
/// Publish times are not checked against the ingest time: the contract stores whatever was
/// pushed, and the keeper has to see that state as it is.
pub fn parse(env: &Envelope, _ctx: &ParseContext<'_>, out: &mut Vec<Record>) {
    let round: RoundView<'_> = match decode_object(&env.raw) {
        Ok(round) => round,
        Err(err) => {
            out.push(invalid(env, err.reason(), err.location("")));
            return;
        }
    };
    if round.v != u64::from(CHAIN_READ_VERSION) {
        let reason = format!("unsupported chain read version {}", round.v);
        out.push(invalid(env, reason, Location::Path("v".into())));
        return;
    }
    for (i, raw) in round.reads.iter().enumerate() {
        let prefix = format!("reads[{i}]");
        let read: ChainRead = match decode_object(raw.get().as_bytes()) {
            Ok(read) => read,
            Err(err) => {
                out.push(invalid(env, err.reason(), err.location(&prefix)));
                continue;
            }
        };
        match read.stored_price() {
            Ok(price) => out.push(Record::Target(ChainTarget {
                feed: read.id,
                price,
                block: round.block,
            })),
            Err((reason, field)) => {
                out.push(invalid(
                    env,
                    reason,
                    Location::Path(format!("{prefix}.{field}")),
                ));
            }
        }
    }
}

/// Integers carried as JSON strings, so no JSON reader rounds them through a double.
mod int_string {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::super::support::Text;

    pub(super) fn serialize<T: Display, S: Serializer>(
        value: &Option<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.collect_str(value),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, T: FromStr, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<T>, D::Error> {
        let Some(text) = Option::<Text<'de>>::deserialize(deserializer)? else {
            return Ok(None);
        };
        text.parse().map(Some).map_err(|_| {
            let shown = crate::model::ids::truncate_for_error(&text);
            D::Error::custom(format!("expected an integer in a string, found {shown:?}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    const BTC: &str = "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43";
    const ETH: &str = "ff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace";

    fn run(raw: &str) -> Vec<Record> {
        super::super::parse_raw(Endpoint::ChainRead, raw, 0)
    }

    fn feed(hex: &str) -> FeedId {
        hex.parse().unwrap()
    }

    #[test]
    fn documented_example_parses() {
        let raw = format!(
            r#"{{"v":1,"block":12345,"reads":[{{"id":"{BTC}","price":"9712345678901","conf":"4512345678","expo":-8,"publish_time":1795248000}},{{"id":"{ETH}","error":"PriceFeedNotFound"}}]}}"#
        );
        let out = run(&raw);
        assert_eq!(
            out,
            [
                Record::Target(ChainTarget {
                    feed: feed(BTC),
                    price: Some(OnChainPrice {
                        price: 9_712_345_678_901,
                        conf: 4_512_345_678,
                        expo: -8,
                        publish_time: 1_795_248_000
                    }),
                    block: Some(12345),
                }),
                Record::Target(ChainTarget {
                    feed: feed(ETH),
                    price: None,
                    block: Some(12345)
                }),
            ]
        );
    }

    #[test]
    fn to_json_is_what_parse_reads() {
        let price = OnChainPrice {
            price: -5,
            conf: u64::MAX,
            expo: -8,
            publish_time: 1_999_999_999,
        };
        let round = ChainReadRound::new(
            None,
            vec![
                ChainRead::found(feed(BTC), price),
                ChainRead::not_found(feed(ETH)),
            ],
        );
        let text = to_json(&round);
        assert_eq!(text, serde_json::to_string(&round).unwrap());
        assert_eq!(
            serde_json::from_str::<ChainReadRound>(&text).unwrap(),
            round
        );
        let out = run(&text);
        assert!(
            matches!(&out[0], Record::Target(t) if t.price == Some(price) && t.block.is_none())
        );
        assert!(matches!(&out[1], Record::Target(t) if t.price.is_none()));
    }

    #[test]
    fn bad_reads_are_reported_alone() {
        let raw = format!(
            r#"{{"v":1,"block":null,"reads":[{{"id":"{BTC}","error":"execution reverted"}},{{"id":"xyz","error":"PriceFeedNotFound"}},
                {{"id":"{BTC}","price":"1.5","conf":"1","expo":0,"publish_time":1}},{{"id":"{BTC}","conf":"1","expo":0,"publish_time":1}},
                {{"id":"{BTC}","price":"1","conf":"1","expo":0,"publish_time":1,"error":"PriceFeedNotFound"}},
                {{"id":"0x{}","price":"0","conf":"0","expo":-8,"publish_time":0}}]}}"#,
            ETH.to_uppercase()
        );
        let out = run(&raw);
        let at: Vec<String> = out
            .iter()
            .filter_map(|r| match r {
                Record::Invalid(i) => Some(i.at.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(
            at,
            [
                "reads[0].error",
                "reads[1].id",
                "reads[2].price",
                "reads[3].price",
                "reads[4].error"
            ]
        );
        assert!(
            matches!(out.last(), Some(Record::Target(t)) if t.feed == feed(ETH) && t.price.is_some())
        );
    }

    #[test]
    fn other_versions_are_refused() {
        let out = run(r#"{"v":2,"reads":[]}"#);
        assert!(
            matches!(&out[..], [Record::Invalid(i)] if i.reason == "unsupported chain read version 2")
        );
    }
}
