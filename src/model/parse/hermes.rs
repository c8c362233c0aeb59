//! Pyth Hermes: `PriceUpdate` documents, from one SSE event's `data` or the body of
//! `/v2/updates/price/latest`. This is the hot path of ingest.
//!
//! A document decodes in one pass into borrowed views (strings point into the envelope's
//! bytes, unknown fields such as `ema_price` and `metadata` are skipped unread), and each feed
//! becomes a tick whose `update_data` is a zero-copy slice of the envelope. Only when that pass
//! fails does a slower one decode feed by feed, so that one bad feed costs one invalid record
//! with its path while the other feeds still come out.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::scan::{Cursor, decode_hex_into, parse_digits, parse_digits_u64};
use super::support::{
    Text, check_not_ahead, decode_object, first_byte, join, seconds_to_ms, slice_of,
};
use super::{ParseContext, invalid};
use crate::model::ids::truncate_for_error;
use crate::model::{
    Decimal, Envelope, FeedId, Instrument, Location, PriceSource, PriceTick, Record, SourceNotice,
};

/// Exponents a price may carry; beyond these no real feed goes, and exact comparisons of
/// decimals stay inside i128.
const EXPO_RANGE: std::ops::RangeInclusive<i32> = -30..=30;

/// Plain-text bodies Hermes answers REST requests with instead of JSON (HTTP 404).
const TEXT_ERRORS: [&str; 2] = ["Price ids not found", "Update data not found"];

/// Longest plain-text error kept as a reason: the id list in it can be long.
const MAX_TEXT_ERROR: usize = 1000;

#[derive(Deserialize)]
struct UpdateWire<'a> {
    #[serde(borrow)]
    binary: Option<BinaryWire<'a>>,
    /// Absent when the request said `parsed=false`.
    #[serde(borrow)]
    parsed: Option<Vec<FeedWire<'a>>>,
}

#[derive(Deserialize)]
struct BinaryWire<'a> {
    #[serde(borrow)]
    encoding: Text<'a>,
    #[serde(borrow)]
    data: Vec<Text<'a>>,
}

#[derive(Deserialize)]
struct FeedWire<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    price: PriceWire<'a>,
}

#[derive(Deserialize)]
struct PriceWire<'a> {
    /// An i64 as a string, so JavaScript clients keep every digit.
    #[serde(borrow)]
    price: Text<'a>,
    /// A u64 as a string.
    #[serde(borrow)]
    conf: Text<'a>,
    expo: i32,
    /// Seconds.
    publish_time: i64,
}

/// The document with its parts left undecoded, for decoding them one at a time.
#[derive(Deserialize)]
struct LooseUpdate<'a> {
    #[serde(borrow)]
    binary: Option<&'a RawValue>,
    #[serde(borrow)]
    parsed: Option<Vec<&'a RawValue>>,
}

/// Parses one SSE event's `data`. The envelope's context is the event type: empty (or
/// `message`) for price updates, `error` for the server's own messages, such as the
/// `Connection timeout reached (24h)` that ends every stream.
pub fn parse_stream_event(env: &Envelope, ctx: &ParseContext<'_>, out: &mut Vec<Record>) {
    match env.context.as_str() {
        "" | "message" => parse_update(env, ctx, out),
        "error" => out.push(Record::Notice(SourceNotice {
            endpoint: env.endpoint,
            text: String::from_utf8_lossy(&env.raw).into_owned(),
        })),
        other => out.push(invalid(
            env,
            format!("unexpected SSE event type {:?}", truncate_for_error(other)),
            Location::Offset(0),
        )),
    }
}

/// Parses a `/v2/updates/price/latest` body, including the plain-text 404 Hermes sends for
/// unknown ids.
pub fn parse_latest(env: &Envelope, ctx: &ParseContext<'_>, out: &mut Vec<Record>) {
    if first_byte(&env.raw) != Some(b'{')
        && let Some(text) = text_error(&env.raw)
    {
        out.push(invalid(env, text, Location::Offset(0)));
        return;
    }
    parse_update(env, ctx, out);
}

/// The message of a plain-text Hermes error body, if `raw` is one.
fn text_error(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    if !TEXT_ERRORS.iter().any(|prefix| text.starts_with(prefix)) {
        return None;
    }
    let mut end = text.len().min(MAX_TEXT_ERROR);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).map(str::to_owned)
}

fn parse_update(env: &Envelope, ctx: &ParseContext<'_>, out: &mut Vec<Record>) {
    let first = out.len();
    if parse_compact(env, ctx, out).is_some() {
        return;
    }
    out.truncate(first);
    parse_update_general(env, ctx, out);
}

/// Any document, with serde: the path for everything the compact reader does not take.
fn parse_update_general(env: &Envelope, ctx: &ParseContext<'_>, out: &mut Vec<Record>) {
    if first_byte(&env.raw) == Some(b'{')
        && let Ok(update) = serde_json::from_slice::<UpdateWire<'_>>(&env.raw)
    {
        let feeds = update.parsed.unwrap_or_default();
        let blobs = Blobs::new(env, update.binary.as_ref(), feeds.len(), out);
        for (i, feed) in feeds.iter().enumerate() {
            emit(env, ctx, i, feed, &blobs, out);
        }
        return;
    }
    parse_update_slowly(env, ctx, out);
}

/// Decodes the document part by part, to report each bad part where it is.
fn parse_update_slowly(env: &Envelope, ctx: &ParseContext<'_>, out: &mut Vec<Record>) {
    let update: LooseUpdate<'_> = match decode_object(&env.raw) {
        Ok(update) => update,
        Err(err) => {
            out.push(invalid(env, err.reason(), err.location("")));
            return;
        }
    };
    let feeds = update.parsed.unwrap_or_default();
    let binary;
    let blobs = match update
        .binary
        .map(|raw| decode_object::<BinaryWire<'_>>(raw.get().as_bytes()))
    {
        None => Blobs::new(env, None, feeds.len(), out),
        Some(Ok(decoded)) => {
            binary = decoded;
            Blobs::new(env, Some(&binary), feeds.len(), out)
        }
        // Reported here; the prices do not depend on it.
        Some(Err(err)) => {
            out.push(invalid(env, err.reason(), err.location("binary")));
            Blobs::Absent
        }
    };
    for (i, raw) in feeds.iter().enumerate() {
        match decode_object::<FeedWire<'_>>(raw.get().as_bytes()) {
            Ok(feed) => emit(env, ctx, i, &feed, &blobs, out),
            Err(err) => out.push(invalid(
                env,
                err.reason(),
                err.location(&format!("parsed[{i}]")),
            )),
        }
    }
}

/// Which `binary.data` element carries which feed.
enum Blobs<'b> {
    /// No usable update data: feeds still get prices, without `update_data`.
    Absent,
    /// One blob carries every feed of the document (what Hermes sends in practice).
    Shared(Bytes),
    /// Element `i` carries feed `i`.
    PerFeed(&'b [Text<'b>]),
}

impl<'b> Blobs<'b> {
    fn new(
        env: &Envelope,
        binary: Option<&'b BinaryWire<'b>>,
        feed_count: usize,
        out: &mut Vec<Record>,
    ) -> Self {
        let Some(binary) = binary else {
            out.push(invalid(
                env,
                "missing binary update data",
                Location::Path("binary".into()),
            ));
            return Blobs::Absent;
        };
        match &*binary.encoding {
            "hex" => {}
            // Valid, but an on-chain update needs hex; the prices are as good as ever.
            "base64" => return Blobs::Absent,
            other => {
                let reason = format!("unsupported encoding {:?}", truncate_for_error(other));
                out.push(invalid(
                    env,
                    reason,
                    Location::Path("binary.encoding".into()),
                ));
                return Blobs::Absent;
            }
        }
        let data = binary.data.as_slice();
        if data.len() == feed_count {
            Blobs::PerFeed(data)
        } else if data.len() == 1 {
            blob(env, data, 0, out).map_or(Blobs::Absent, Blobs::Shared)
        } else {
            Blobs::Absent
        }
    }

    fn for_feed(&self, env: &Envelope, i: usize, out: &mut Vec<Record>) -> Option<Bytes> {
        match self {
            Blobs::Absent => None,
            Blobs::Shared(bytes) => Some(bytes.clone()),
            Blobs::PerFeed(data) => blob(env, data, i, out),
        }
    }
}

/// Element `i` of `binary.data` as bytes of the envelope, after checking it is hex.
fn blob(env: &Envelope, data: &[Text<'_>], i: usize, out: &mut Vec<Record>) -> Option<Bytes> {
    let text: &str = data.get(i)?;
    let is_hex = !text.is_empty()
        && text.len().is_multiple_of(2)
        // Not `all`: without the early exit the check vectorizes, and blobs are kilobytes.
        && text.bytes().fold(true, |ok, b| ok & b.is_ascii_hexdigit());
    if !is_hex {
        let at = Location::Path(format!("binary.data[{i}]"));
        out.push(invalid(env, "update data is not hex", at));
        return None;
    }
    // An escaped string is not in the envelope's bytes; legal JSON, so copy it.
    Some(slice_of(&env.raw, text).unwrap_or_else(|| Bytes::copy_from_slice(text.as_bytes())))
}

fn emit(
    env: &Envelope,
    ctx: &ParseContext<'_>,
    i: usize,
    feed: &FeedWire<'_>,
    blobs: &Blobs<'_>,
    out: &mut Vec<Record>,
) {
    match feed_tick(env, ctx, feed) {
        Ok(mut tick) => {
            tick.update_data = blobs.for_feed(env, i, out);
            out.push(Record::Price(tick));
        }
        Err((reason, field)) => {
            let at = Location::Path(join(&format!("parsed[{i}]"), field));
            out.push(invalid(env, reason, at));
        }
    }
}

/// The tick for one feed (without its update data), or why not and the field at fault.
fn feed_tick(
    env: &Envelope,
    ctx: &ParseContext<'_>,
    feed: &FeedWire<'_>,
) -> Result<PriceTick, (String, &'static str)> {
    let id: FeedId = feed
        .id
        .parse()
        .map_err(|e: crate::model::FeedIdError| (e.to_string(), "id"))?;
    let wire = &feed.price;
    let mantissa: i64 = wire
        .price
        .parse()
        .map_err(|_| (not_integer("i64", &wire.price), "price.price"))?;
    if mantissa <= 0 {
        return Err((format!("price {mantissa} is not positive"), "price.price"));
    }
    let conf: u64 = wire
        .conf
        .parse()
        .map_err(|_| (not_integer("u64", &wire.conf), "price.conf"))?;
    if !EXPO_RANGE.contains(&wire.expo) {
        return Err((format!("exponent {} out of range", wire.expo), "price.expo"));
    }
    let publish_ms = seconds_to_ms(wire.publish_time).map_err(|e| (e, "price.publish_time"))?;
    check_not_ahead(publish_ms, env.t_ms, ctx).map_err(|e| (e, "price.publish_time"))?;
    let instrument = Instrument::Feed(id);
    Ok(PriceTick {
        asset: ctx.assets.resolve(&instrument),
        instrument,
        price: Decimal::new(mantissa, wire.expo),
        conf,
        publish_ms,
        source: PriceSource::Hermes,
        change_24h: None,
        update_data: None,
    })
}

/// Reads the compact form Hermes writes — keys in its order, no whitespace, no escapes — with
/// a byte cursor instead of a general JSON parser: the hot path. Gives up (`None`, with some
/// records possibly pushed, which the caller removes) on anything else or anything invalid,
/// so the general parser decides every document this does not accept whole.
fn parse_compact(env: &Envelope, ctx: &ParseContext<'_>, out: &mut Vec<Record>) -> Option<()> {
    let raw: &[u8] = &env.raw;
    let mut c = Cursor::new(raw);
    c.eat(br#"{"binary":{"encoding":"hex","data":["#)?;
    let mut blobs: Vec<std::ops::Range<usize>> = Vec::new();
    if !c.eat_byte(b']') {
        loop {
            let text = c.hex_string()?;
            if text.is_empty() || !text.len().is_multiple_of(2) {
                return None;
            }
            let start = text.as_ptr().addr().checked_sub(raw.as_ptr().addr())?;
            blobs.push(start..start + text.len());
            if c.eat_byte(b']') {
                break;
            }
            c.eat(b",")?;
        }
    }
    c.eat(br#"},"parsed":["#)?;
    let first = out.len();
    if !c.eat_byte(b']') {
        loop {
            c.eat(br#"{"id":"#)?;
            let mut id = [0u8; 32];
            decode_hex_into(c.short_string()?, &mut id)?;
            c.eat(br#","price":{"price":"#)?;
            let mantissa = parse_digits(c.short_string()?).filter(|m| *m > 0)?;
            c.eat(br#","conf":"#)?;
            let conf = parse_digits_u64(c.short_string()?)?;
            c.eat(br#","expo":"#)?;
            let expo = i32::try_from(c.int()?)
                .ok()
                .filter(|e| EXPO_RANGE.contains(e))?;
            c.eat(br#","publish_time":"#)?;
            let publish_ms = c.int()?.checked_mul(1000)?;
            c.eat(b"}")?;
            // `ema_price`, `metadata` and anything else in the feed: not needed.
            while c.eat_byte(b',') {
                c.short_string()?;
                c.eat(b":")?;
                c.skip_value()?;
            }
            c.eat(b"}")?;
            check_not_ahead(publish_ms, env.t_ms, ctx).ok()?;
            let instrument = Instrument::Feed(FeedId(id));
            out.push(Record::Price(PriceTick {
                asset: ctx.assets.resolve(&instrument),
                instrument,
                price: Decimal::new(mantissa, expo),
                conf,
                publish_ms,
                source: PriceSource::Hermes,
                change_24h: None,
                update_data: None,
            }));
            if c.eat_byte(b']') {
                break;
            }
            c.eat(b",")?;
        }
    }
    c.eat(b"}")?;
    if !c.at_end() {
        return None;
    }
    let ticks = &mut out[first..];
    let shared = match blobs.len() {
        n if n == ticks.len() => None,
        1 => Some(env.raw.slice(blobs[0].clone())),
        // The general parser decides what such a document means.
        _ => return None,
    };
    for (i, record) in ticks.iter_mut().enumerate() {
        if let Record::Price(tick) = record {
            tick.update_data = match &shared {
                Some(blob) => Some(blob.clone()),
                None => Some(env.raw.slice(blobs[i].clone())),
            };
        }
    }
    Some(())
}

fn not_integer(kind: &str, text: &str) -> String {
    format!(
        "not an {kind} integer string: {:?}",
        truncate_for_error(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Asset, AssetMap, Endpoint};

    /// The compact reader, where it accepts a document, says exactly what serde says.
    #[test]
    fn the_compact_reader_agrees_with_serde() {
        use proptest::prelude::*;
        let feed = (
            any::<[u8; 32]>(),
            -5i64..2_000_000_000_000,
            0u64..9_999_999,
            -12i32..3,
            1_795_247_000i64..1_795_249_000,
            any::<bool>(),
        );
        let docs = (
            proptest::collection::vec(feed, 0..6),
            0usize..3,
            any::<bool>(),
        );
        proptest!(|((feeds, blob_mode, uppercase) in docs)| {
            let parsed: Vec<String> = feeds.iter().map(|(id, price, conf, expo, t, meta_null)| {
                let mut id = hex::encode(id);
                if uppercase { id = id.to_uppercase(); }
                let meta = if *meta_null { "null".to_owned() } else { "1".to_owned() };
                format!(r#"{{"id":"{id}","price":{{"price":"{price}","conf":"{conf}","expo":{expo},"publish_time":{t}}},"ema_price":{{"price":"1","conf":"2","expo":{expo},"publish_time":{t}}},"metadata":{{"slot":{meta},"proof_available_time":{meta},"prev_publish_time":{t}}}}}"#)
            }).collect();
            let blobs: Vec<String> = match blob_mode {
                0 => feeds.iter().map(|(id, ..)| format!("\"{}\"", hex::encode(id))).collect(),
                1 => vec!["\"504e4155\"".to_owned()],
                _ => vec![],
            };
            let doc = format!(r#"{{"binary":{{"encoding":"hex","data":[{}]}},"parsed":[{}]}}"#, blobs.join(","), parsed.join(","));
            let e = Envelope {
                endpoint: Endpoint::HermesStream,
                t_ms: 1_795_248_010_000,
                context: String::new(),
                raw: bytes::Bytes::from(doc.clone()),
                seq: 0,
            };
            let assets = AssetMap::default();
            let ctx = ParseContext { assets: &assets, max_future_skew_ms: 5_000 };
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            let accepted = parse_compact(&e, &ctx, &mut fast).is_some();
            parse_update_general(&e, &ctx, &mut general);
            if accepted {
                prop_assert_eq!(&fast, &general);
            }
            // Everything valid and compact is taken by the fast reader.
            let all_valid = feeds.iter().all(|(_, p, _, _, t, _)| *p > 0 && *t * 1000 <= 1_795_248_015_000);
            if all_valid && blob_mode == 0 {
                prop_assert!(accepted, "{}", doc);
            }
        });
    }

    /// A compact document with bytes overwritten: whatever the compact reader still accepts
    /// is JSON, and reads as the general parser reads it.
    #[test]
    fn the_compact_reader_refuses_what_is_not_json() {
        use proptest::prelude::*;
        let doc = format!(
            r#"{{"binary":{{"encoding":"hex","data":["504e4155"]}},"parsed":[{{"id":"{BTC}","price":{{"price":"9712345678901","conf":"7","expo":-8,"publish_time":1795248000}},"ema_price":{{"price":"1","conf":"1","expo":-8,"publish_time":1795248000}},"metadata":{{"slot":279842122,"proof_available_time":null,"prev_publish_time":[1.5e3,true,{{}}]}}}}]}}"#
        );
        let assets = AssetMap::default();
        let ctx = ParseContext {
            assets: &assets,
            max_future_skew_ms: 5_000,
        };
        let parse = |raw: Vec<u8>| {
            let e = Envelope {
                endpoint: Endpoint::HermesStream,
                t_ms: 1_795_248_010_000,
                context: String::new(),
                raw: bytes::Bytes::from(raw),
                seq: 0,
            };
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            let accepted = parse_compact(&e, &ctx, &mut fast).is_some();
            parse_update_general(&e, &ctx, &mut general);
            (accepted, fast, general)
        };
        assert!(
            parse(doc.clone().into_bytes()).0,
            "the unmutated document is compact"
        );
        let bytes = [
            b'\0', b'\n', b' ', 0x0c, 0xff, b',', b':', b'}', b']', b'"', b'x', b'0',
        ];
        let edits = proptest::collection::vec(
            (
                any::<proptest::sample::Index>(),
                proptest::sample::select(bytes.to_vec()),
            ),
            1..4,
        );
        proptest!(|(edits in edits)| {
            let mut raw = doc.clone().into_bytes();
            for (at, byte) in edits {
                let i = at.index(raw.len());
                raw[i] = byte;
            }
            let (accepted, fast, general) = parse(raw.clone());
            if accepted {
                prop_assert!(
                    serde_json::from_slice::<serde::de::IgnoredAny>(&raw).is_ok(),
                    "accepted, not JSON: {}",
                    String::from_utf8_lossy(&raw)
                );
                prop_assert_eq!(fast, general);
            }
        });
    }

    const BTC: &str = "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43";
    const ETH: &str = "ff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace";

    fn feed(id: &str, price: &str, publish_time: i64) -> String {
        format!(
            r#"{{"id":"{id}","price":{{"price":"{price}","conf":"7","expo":-8,"publish_time":{publish_time}}},
               "ema_price":{{"price":"1","conf":"1","expo":-8,"publish_time":1}},
               "metadata":{{"slot":null,"proof_available_time":null,"prev_publish_time":null}}}}"#
        )
    }

    fn update(data: &[&str], feeds: &[String]) -> String {
        let data: Vec<String> = data.iter().map(|d| format!("\"{d}\"")).collect();
        format!(
            r#"{{"binary":{{"encoding":"hex","data":[{}]}},"parsed":[{}]}}"#,
            data.join(","),
            feeds.join(",")
        )
    }

    fn run_with(endpoint: Endpoint, context: &str, raw: bytes::Bytes) -> Vec<Record> {
        let env = Envelope {
            endpoint,
            t_ms: 1_795_248_010_000,
            context: context.into(),
            raw,
            seq: 3,
        };
        let mut assets = AssetMap::default();
        assets.insert(Instrument::Feed(BTC.parse().unwrap()), Asset::named("BTC"));
        let ctx = ParseContext {
            assets: &assets,
            max_future_skew_ms: 5_000,
        };
        let mut out = Vec::new();
        super::super::parse_envelope(&env, &ctx, &mut out);
        out
    }

    fn run(raw: &str) -> Vec<Record> {
        run_with(
            Endpoint::HermesStream,
            "",
            bytes::Bytes::from(raw.to_owned()),
        )
    }

    fn summary(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| match r {
                Record::Price(p) => format!(
                    "{} {} {} {}",
                    p.asset,
                    p.price,
                    p.publish_ms,
                    p.update_data
                        .as_ref()
                        .map_or("-".into(), |d| String::from_utf8_lossy(d).into_owned())
                ),
                Record::Invalid(i) => format!("invalid {}: {}", i.at, i.reason),
                Record::Notice(n) => format!("notice {}", n.text),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn one_shared_blob_serves_every_feed_without_copying() {
        let raw = bytes::Bytes::from(update(
            &["504e4155"],
            &[
                feed(BTC, "9712345678901", 1795248000),
                feed(ETH, "341234567890", 1795248001),
            ],
        ));
        let out = run_with(Endpoint::HermesLatest, "", raw.clone());
        assert_eq!(
            summary(&out),
            [
                "BTC 97123.45678901 1795248000000 504e4155".to_owned(),
                format!("pyth:{ETH} 3412.34567890 1795248001000 504e4155"),
            ]
        );
        let Record::Price(tick) = &out[0] else {
            panic!()
        };
        let data = tick.update_data.as_ref().unwrap();
        let start = raw.as_ptr().addr();
        assert!(
            (start..start + raw.len()).contains(&data.as_ptr().addr()),
            "update data was copied"
        );
        assert_eq!(tick.conf, 7);
        assert_eq!(tick.price, Decimal::new(9712345678901, -8));
    }

    #[test]
    fn blobs_pair_with_feeds_by_position() {
        let feeds = [feed(BTC, "1", 1), feed(ETH, "2", 1)];
        let out = run(&update(&["aa", "bb"], &feeds));
        assert!(summary(&out)[0].ends_with(" aa") && summary(&out)[1].ends_with(" bb"));
        let out = run(&update(&["aa", "bb", "cc"], &feeds));
        assert!(summary(&out).iter().all(|s| s.ends_with(" -")));
        let out = run(&update(&["aa", "zz"], &feeds));
        assert_eq!(
            summary(&out)[1],
            "invalid binary.data[1]: update data is not hex"
        );
        assert!(summary(&out)[2].ends_with(" -"));
        let base64 = update(&["UE5BVQ=="], &feeds).replace("\"hex\"", "\"base64\"");
        assert!(
            summary(&run(&base64))
                .iter()
                .all(|s| !s.starts_with("invalid") && s.ends_with(" -"))
        );
        let escaped = update(&["\\u0061a"], &feeds[..1]);
        assert!(summary(&run(&escaped))[0].ends_with(" aa"));
    }

    #[test]
    fn one_bad_feed_costs_one_record() {
        let mut bad_type = feed(ETH, "2", 1795248000);
        bad_type = bad_type.replace("\"expo\":-8", "\"expo\":\"-8\"");
        let feeds = [
            feed(BTC, "1", 1795248000),
            feed(ETH, "12x", 1795248000),
            bad_type,
            feed(ETH, "-5", 1795248000),
            feed(
                "0xFF61491A931112DDF1BD8147CD1B641375F79F5825126D665480874634FD0ACE",
                "3",
                1795248000,
            ),
            feed("ff", "4", 1795248000),
            feed(ETH, "5", 1795248016),
            feed(ETH, "99999999999999999999", 1795248000),
        ];
        let out = run(&update(&["00"], &feeds));
        assert_eq!(
            summary(&out),
            [
                "BTC 0.00000001 1795248000000 00".to_owned(),
                "invalid parsed[1].price.price: not an i64 integer string: \"12x\"".into(),
                "invalid parsed[2].price.expo: invalid type: string \"-8\", expected i32".into(),
                "invalid parsed[3].price.price: price -5 is not positive".into(),
                format!("pyth:{ETH} 0.00000003 1795248000000 00"),
                "invalid parsed[5].id: not a 32-byte hex feed id: \"ff\"".into(),
                "invalid parsed[6].price.publish_time: publish time 6000 ms ahead of ingest".into(),
                "invalid parsed[7].price.price: not an i64 integer string: \"99999999999999999999\"".into(),
            ]
        );
    }

    #[test]
    fn unparsed_updates_and_missing_parts() {
        assert!(run(r#"{"binary":{"encoding":"hex","data":["00"]}}"#).is_empty());
        assert!(run(r#"{"binary":{"encoding":"hex","data":["00"]},"parsed":null}"#).is_empty());
        assert_eq!(
            summary(&run("{}")),
            ["invalid binary: missing binary update data"]
        );
        let out = run(&format!(
            r#"{{"binary":{{"encoding":"hex","data":"00"}},"parsed":[{}]}}"#,
            feed(BTC, "1", 1)
        ));
        assert_eq!(
            summary(&out)[0],
            "invalid binary.data: invalid type: string \"00\", expected a sequence"
        );
        assert!(summary(&out)[1].starts_with("BTC"));
        let out = run(&format!(
            r#"{{"binary":{{"encoding":"gzip","data":["00"]}},"parsed":[{}]}}"#,
            feed(BTC, "1", 1)
        ));
        assert_eq!(
            summary(&out)[0],
            "invalid binary.encoding: unsupported encoding \"gzip\""
        );
    }

    #[test]
    fn documents_that_are_not_updates() {
        let out = run(r#"{"parsed":{}}"#);
        assert_eq!(
            summary(&out),
            ["invalid parsed: invalid type: map, expected a sequence"]
        );
        let out = run(r#"{"binary":"#);
        assert!(
            matches!(&out[..], [Record::Invalid(i)] if i.at == Location::Offset(9)),
            "{out:?}"
        );
        let out = run("[1,2]");
        assert_eq!(
            summary(&out),
            ["invalid byte 0: expected a JSON object, found an array"]
        );
    }

    #[test]
    fn stream_errors_are_notices() {
        let raw = bytes::Bytes::from_static(b"Connection timeout reached (24h)");
        let out = run_with(Endpoint::HermesStream, "error", raw.clone());
        assert_eq!(summary(&out), ["notice Connection timeout reached (24h)"]);
        let out = run_with(Endpoint::HermesStream, "ping", raw);
        assert_eq!(
            summary(&out),
            ["invalid byte 0: unexpected SSE event type \"ping\""]
        );
    }

    #[test]
    fn text_404_bodies_become_their_reason() {
        let text =
            "Price ids not found: 0000000000000000000000000000000000000000000000000000000000000001";
        let out = run_with(
            Endpoint::HermesLatest,
            "",
            bytes::Bytes::from_static(text.as_bytes()),
        );
        assert_eq!(summary(&out), [format!("invalid byte 0: {text}")]);
        let out = run_with(
            Endpoint::HermesLatest,
            "",
            bytes::Bytes::from_static(b"Price ids n"),
        );
        assert!(summary(&out)[0].starts_with("invalid byte 0: not valid JSON"));
    }
}
