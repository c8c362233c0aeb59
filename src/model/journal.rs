//! Journal lines: every output event as one canonical JSON object, the audit trail of a run.
//!
//! A line is `{"t":<ms>,"kind":"<snake_case kind>",...}`. Within one completed time lines are
//! sorted by their bytes after `t`; since every event serializes its kind first and its key
//! fields next, that is the order (kind, key). The journal of a replay is therefore the same
//! bytes whatever the worker count, process count or input batching.

use std::io::Write;

use serde::Serialize;

use super::{BoostSnapshot, ChainTarget, InvalidInput, PriceSource, PriceTick};

/// One event, serialized without its time: `{"kind":"…",…}`. Cheap to move between workers;
/// the journal writer adds `"t"` and orders lines within a time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct JournalLine(pub String);

impl JournalLine {
    /// Serializes an event. Events are plain data, so serialization cannot fail; if it ever
    /// did, the line says so instead of vanishing.
    pub fn of<E: Serialize>(event: &E) -> JournalLine {
        match serde_json::to_string(event) {
            Ok(text) => JournalLine(text),
            Err(e) => JournalLine(format!(
                "{{\"kind\":\"serialization_error\",\"error\":{}}}",
                serde_json::Value::String(e.to_string())
            )),
        }
    }

    /// The event's kind, read back from the line.
    pub fn kind(&self) -> &str {
        self.0
            .strip_prefix("{\"kind\":\"")
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("unknown")
    }

    /// Writes `{"t":<t>,<rest of the line>}` and a newline.
    pub fn write_at(&self, t: u64, out: &mut impl Write) -> std::io::Result<()> {
        let body = self.0.strip_prefix('{').unwrap_or(&self.0);
        let mut digits = itoa::Buffer::new();
        out.write_all(b"{\"t\":")?;
        out.write_all(digits.format(t).as_bytes())?;
        if body != "}" {
            out.write_all(b",")?;
        }
        out.write_all(body.as_bytes())?;
        out.write_all(b"\n")
    }
}

/// A normalised price input (`price`, or `mesh_price` for mesh ticks).
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputEvent<'a> {
    /// A price from Hermes, DEX Screener or Birdeye.
    Price(PriceView<'a>),
    /// A price from a mesh peer.
    MeshPrice(PriceView<'a>),
    /// A boost-rank snapshot.
    BoostSnapshot(SnapshotView<'a>),
    /// An on-chain target observation.
    ChainTarget(TargetView<'a>),
    /// Bad input.
    InvalidInput(&'a InvalidInput),
}

impl<'a> InputEvent<'a> {
    /// The input event of a price tick.
    pub fn price(tick: &'a PriceTick) -> Self {
        let view = PriceView {
            asset: tick.asset.to_string(),
            source: &tick.source,
            instrument: tick.instrument.to_string(),
            price: tick.price.to_string(),
            mantissa: tick.price.mantissa,
            expo: tick.price.expo,
            conf: tick.conf,
            publish_ms: tick.publish_ms,
            change_24h: tick.change_24h.map(|c| c.to_string()),
        };
        match tick.source {
            PriceSource::Mesh(_) => InputEvent::MeshPrice(view),
            _ => InputEvent::Price(view),
        }
    }
}

/// How a price appears in the journal.
#[derive(Serialize)]
pub struct PriceView<'a> {
    asset: String,
    #[serde(serialize_with = "crate::model::journal::display")]
    source: &'a PriceSource,
    instrument: String,
    price: String,
    mantissa: i64,
    expo: i32,
    conf: u64,
    publish_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    change_24h: Option<String>,
}

/// How a boost snapshot appears in the journal.
#[derive(Serialize)]
pub struct SnapshotView<'a> {
    entries: Vec<SnapshotEntry<'a>>,
}

#[derive(Serialize)]
struct SnapshotEntry<'a> {
    rank: u32,
    chain: &'a str,
    token: &'a str,
    total_amount: String,
}

impl<'a> SnapshotView<'a> {
    /// The view of a snapshot.
    pub fn of(snapshot: &'a BoostSnapshot) -> Self {
        SnapshotView {
            entries: snapshot
                .entries
                .iter()
                .map(|e| SnapshotEntry {
                    rank: e.rank,
                    chain: &e.token.chain,
                    token: &e.token.address,
                    total_amount: e.total_amount.to_string(),
                })
                .collect(),
        }
    }
}

/// How a chain observation appears in the journal.
#[derive(Serialize)]
pub struct TargetView<'a> {
    feed: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    block: Option<u64>,
    #[serde(flatten)]
    price: Option<&'a super::OnChainPrice>,
    found: bool,
}

impl<'a> TargetView<'a> {
    /// The view of an observation.
    pub fn of(target: &'a ChainTarget) -> Self {
        TargetView {
            feed: target.feed.to_string(),
            block: target.block,
            price: target.price.as_ref(),
            found: target.price.is_some(),
        }
    }
}

/// Serializes a value through its `Display`.
pub(crate) fn display<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Asset, Decimal, FeedId, Instrument};

    #[test]
    fn lines_carry_kind_first_and_time_in_front() {
        let tick = PriceTick {
            asset: Asset::named("BTC"),
            instrument: Instrument::Feed(FeedId([1; 32])),
            price: Decimal::new(9712345678901, -8),
            conf: 4512345678,
            publish_ms: 1_795_248_000_000,
            source: PriceSource::Hermes,
            change_24h: None,
            update_data: None,
        };
        let line = JournalLine::of(&InputEvent::price(&tick));
        assert_eq!(line.kind(), "price");
        let mut out = Vec::new();
        line.write_at(1_795_248_000_010, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "{\"t\":1795248000010,\"kind\":\"price\",\"asset\":\"BTC\",\"source\":\"hermes\""
            ),
            "{text}"
        );
        assert!(text.contains("\"price\":\"97123.45678901\""), "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["mantissa"], 9712345678901i64);
    }
}
