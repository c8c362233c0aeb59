//! Cutting recorded payloads down to what a request asks for: DEX Screener pairs by base token,
//! Birdeye prices by address, Hermes feeds by id.
//!
//! Kept pieces are copied byte for byte ([`RawValue`]), never re-encoded, so numbers keep their
//! recorded spelling; when a request keeps everything, callers serve the recorded bytes as they
//! are. A payload that does not parse (the recording holds malformed ones on purpose) is served
//! unfiltered, as the client that recorded it received it.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// True when two token addresses name the same token: exact for base58 (case matters), and
/// case-insensitive for EVM hex addresses (checksummed or not).
pub(crate) fn same_address(a: &str, b: &str) -> bool {
    if a.starts_with("0x") || a.starts_with("0X") {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Splits a comma-separated address list, dropping empty items and repeats.
pub(crate) fn address_list(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for address in text.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        if !out.iter().any(|known| same_address(known, address)) {
            out.push(address.to_owned());
        }
    }
    out
}

/// A JSON object's members in document order, values unparsed.
struct OrderedObject<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for OrderedObject<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Members<'a> {
            type Value = OrderedObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'a RawValue>()? {
                    members.push(member);
                }
                Ok(OrderedObject(members))
            }
        }
        deserializer.deserialize_map(Members(PhantomData))
    }
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Serializing a &str cannot fail; the fallback keeps the output valid JSON regardless.
    match serde_json::to_vec(text) {
        Ok(quoted) => out.extend_from_slice(&quoted),
        Err(_) => out.extend_from_slice(b"\"\""),
    }
}

/// DEX Screener `/tokens/v1`: the recorded pairs whose `baseToken.address` is requested.
/// `None` means "serve the recorded bytes": every pair is kept, or the payload is not an
/// array of pairs.
pub(crate) fn dex_tokens(raw: &[u8], addresses: &[String]) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Token<'a> {
        #[serde(borrow)]
        address: Option<Cow<'a, str>>,
    }
    #[derive(Deserialize)]
    struct Pair<'a> {
        #[serde(rename = "baseToken", borrow)]
        base_token: Option<Token<'a>>,
    }
    let pairs: Vec<&RawValue> = serde_json::from_slice(raw).ok()?;
    let kept: Vec<&RawValue> = pairs
        .iter()
        .copied()
        .filter(|pair| {
            serde_json::from_str::<Pair<'_>>(pair.get())
                .ok()
                .and_then(|p| p.base_token)
                .and_then(|t| t.address)
                .is_some_and(|base| addresses.iter().any(|a| same_address(a, &base)))
        })
        .collect();
    if kept.len() == pairs.len() {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    out.push(b'[');
    for (i, pair) in kept.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(pair.get().as_bytes());
    }
    out.push(b']');
    Some(out)
}

/// Birdeye `multi_price`: the recorded body with `data` restricted to `addresses`, in request
/// order, unknown ones `null`. `None` means "serve the recorded bytes": not a success body with
/// a `data` object (an error body, a malformed payload).
pub(crate) fn birdeye_multi(raw: &[u8], addresses: &[String]) -> Option<Vec<u8>> {
    let top: OrderedObject<'_> = serde_json::from_slice(raw).ok()?;
    if top
        .0
        .iter()
        .any(|(key, value)| key == "success" && value.get() == "false")
    {
        return None;
    }
    let (_, data) = top.0.iter().find(|(key, _)| key == "data")?;
    let data: OrderedObject<'_> = serde_json::from_str(data.get()).ok()?;
    let mut out = Vec::with_capacity(raw.len());
    out.push(b'{');
    for (i, (key, value)) in top.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_string(&mut out, key);
        out.push(b':');
        if key != "data" {
            out.extend_from_slice(value.get().as_bytes());
            continue;
        }
        out.push(b'{');
        for (j, address) in addresses.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            push_json_string(&mut out, address);
            out.push(b':');
            let price = data.0.iter().find(|(k, _)| same_address(address, k));
            match price {
                Some((_, price)) => out.extend_from_slice(price.get().as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.push(b'}');
    }
    out.push(b'}');
    Some(out)
}

/// Birdeye: the recorded price object of `address` in a `multi_price` body, if it is there
/// and not `null`.
pub(crate) fn birdeye_price_in_multi(raw: &[u8], address: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        data: Option<&'a RawValue>,
    }
    let body: Body<'_> = serde_json::from_slice(raw).ok()?;
    let data: OrderedObject<'_> = serde_json::from_str(body.data?.get()).ok()?;
    let (_, price) = data.0.into_iter().find(|(k, _)| same_address(address, k))?;
    (price.get() != "null").then(|| price.get().to_owned())
}

/// A Hermes feed id as Hermes prints it: lower-case hex without `0x`.
pub(crate) fn normalize_feed_id(id: &str) -> String {
    let id = id.trim();
    let id = id
        .strip_prefix("0x")
        .or_else(|| id.strip_prefix("0X"))
        .unwrap_or(id);
    id.to_ascii_lowercase()
}

/// What a Hermes request wants of each update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HermesRequest {
    /// Requested feed ids (normalized, in request order); empty: every feed.
    pub(crate) ids: Vec<String>,
    /// `encoding=base64` (the recording holds hex).
    pub(crate) base64: bool,
    /// `parsed=true` (the default).
    pub(crate) parsed: bool,
}

impl HermesRequest {
    /// True when the recorded bytes answer the request as they are for any update that holds
    /// only requested feeds.
    fn wants_recorded_form(&self) -> bool {
        !self.base64 && self.parsed
    }
}

/// A Hermes `PriceUpdate` body (an SSE event's data or a `/latest` body), borrowed.
pub(crate) struct HermesUpdate<'a> {
    encoding: Option<String>,
    binary: Option<Vec<&'a RawValue>>,
    /// `(normalized id, raw parsed element)`.
    parsed: Vec<(String, &'a RawValue)>,
}

impl<'a> HermesUpdate<'a> {
    /// Parses an update; `None` when it is not one (malformed, or without `parsed`).
    pub(crate) fn parse(raw: &'a [u8]) -> Option<HermesUpdate<'a>> {
        #[derive(Deserialize)]
        struct Binary<'a> {
            encoding: Option<String>,
            #[serde(borrow, default)]
            data: Vec<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Wire<'a> {
            #[serde(borrow)]
            binary: Option<Binary<'a>>,
            #[serde(borrow)]
            parsed: Option<Vec<&'a RawValue>>,
        }
        #[derive(Deserialize)]
        struct Feed<'a> {
            #[serde(borrow)]
            id: Option<Cow<'a, str>>,
        }
        let wire: Wire<'a> = serde_json::from_slice(raw).ok()?;
        let parsed = wire
            .parsed?
            .into_iter()
            .map(|element| {
                let id = serde_json::from_str::<Feed<'_>>(element.get())
                    .ok()
                    .and_then(|f| f.id)
                    .map(|id| normalize_feed_id(&id))
                    .unwrap_or_default();
                (id, element)
            })
            .collect();
        let (encoding, binary) = match wire.binary {
            Some(b) => (b.encoding, Some(b.data)),
            None => (None, None),
        };
        Some(HermesUpdate {
            encoding,
            binary,
            parsed,
        })
    }

    /// The feed ids it carries.
    pub(crate) fn feeds(&self) -> impl Iterator<Item = &str> {
        self.parsed
            .iter()
            .map(|(id, _)| id.as_str())
            .filter(|id| !id.is_empty())
    }

    /// True when `binary.data` holds one element per feed, in `parsed` order (so feeds can be
    /// cut out of it); otherwise it is one blob for all feeds and is kept whole.
    fn binary_per_feed(&self) -> bool {
        self.binary
            .as_ref()
            .is_some_and(|b| b.len() == self.parsed.len())
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.parsed.iter().position(|(feed, _)| feed == id)
    }

    /// The piece of this update for one feed: its parsed element and binary element.
    fn piece(&self, index: usize) -> Option<Piece<'a>> {
        let (_, parsed) = self.parsed.get(index)?;
        let binary = if self.binary_per_feed() {
            self.binary.as_ref().and_then(|b| b.get(index)).copied()
        } else {
            None
        };
        Some(Piece { parsed, binary })
    }

    /// Renders the feeds at `indices` as one update.
    fn render(&self, indices: &[usize], request: &HermesRequest) -> Vec<u8> {
        let pieces: Vec<Piece<'a>> = indices.iter().filter_map(|i| self.piece(*i)).collect();
        let whole_binary = if self.binary_per_feed() {
            None
        } else {
            self.binary.as_deref()
        };
        render_update(
            self.encoding.as_deref(),
            self.binary.is_some(),
            &pieces,
            whole_binary,
            request,
        )
    }
}

/// One feed's share of an update.
#[derive(Clone, Copy)]
struct Piece<'a> {
    parsed: &'a RawValue,
    binary: Option<&'a RawValue>,
}

/// Writes `{"binary":{"encoding":…,"data":[…]},"parsed":[…]}`.
fn render_update(
    encoding: Option<&str>,
    has_binary: bool,
    pieces: &[Piece<'_>],
    whole_binary: Option<&[&RawValue]>,
    request: &HermesRequest,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(b'{');
    if has_binary {
        let recorded = encoding.unwrap_or("hex");
        let to_base64 = request.base64 && recorded == "hex";
        out.extend_from_slice(b"\"binary\":{\"encoding\":");
        push_json_string(&mut out, if to_base64 { "base64" } else { recorded });
        out.extend_from_slice(b",\"data\":[");
        let elements: Vec<&RawValue> = match whole_binary {
            Some(all) => all.to_vec(),
            None => pieces.iter().filter_map(|p| p.binary).collect(),
        };
        for (i, element) in elements.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match to_base64.then(|| hex_to_base64(element)).flatten() {
                Some(converted) => push_json_string(&mut out, &converted),
                None => out.extend_from_slice(element.get().as_bytes()),
            }
        }
        out.extend_from_slice(b"]}");
    }
    if request.parsed {
        if has_binary {
            out.push(b',');
        }
        out.extend_from_slice(b"\"parsed\":[");
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(piece.parsed.get().as_bytes());
        }
        out.push(b']');
    }
    out.push(b'}');
    out
}

fn hex_to_base64(element: &RawValue) -> Option<String> {
    let text: String = serde_json::from_str(element.get()).ok()?;
    let bytes = hex::decode(text.strip_prefix("0x").unwrap_or(&text)).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// What to send for one recorded Hermes update.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filtered {
    /// The recorded bytes, as they are.
    Recorded,
    /// A cut-down (or re-encoded) update.
    Rendered(Vec<u8>),
    /// None of the requested feeds is in it.
    Nothing,
}

/// One update (an SSE event) cut down to the requested feeds.
pub(crate) fn hermes_update(raw: &[u8], request: &HermesRequest) -> Filtered {
    if request.ids.is_empty() && request.wants_recorded_form() {
        return Filtered::Recorded;
    }
    let Some(update) = HermesUpdate::parse(raw) else {
        return Filtered::Recorded;
    };
    let indices: Vec<usize> = if request.ids.is_empty() {
        (0..update.parsed.len()).collect()
    } else {
        (0..update.parsed.len())
            .filter(|i| {
                update
                    .parsed
                    .get(*i)
                    .is_some_and(|(id, _)| request.ids.contains(id))
            })
            .collect()
    };
    if indices.is_empty() && !request.ids.is_empty() {
        return Filtered::Nothing;
    }
    if indices.len() == update.parsed.len() && request.wants_recorded_form() {
        return Filtered::Recorded;
    }
    Filtered::Rendered(update.render(&indices, request))
}

/// How far `/latest` looks back for feeds missing from the newest update.
const LOOKBACK: usize = 256;

/// `/latest`: the newest value of each requested feed. `newest_first` yields recorded updates
/// from the newest back. Feeds missing from the newest update are taken from earlier ones
/// when every update involved has one binary element per feed (so the answer stays
/// consistent); otherwise the newest update alone answers, cut down to the requested feeds.
/// `None`: nothing recorded yet.
pub(crate) fn hermes_latest<'a>(
    mut newest_first: impl Iterator<Item = &'a [u8]>,
    request: &HermesRequest,
) -> Option<Filtered> {
    let newest_raw = newest_first.next()?;
    let Some(newest) = HermesUpdate::parse(newest_raw) else {
        return Some(Filtered::Recorded);
    };
    let missing: Vec<&String> = request
        .ids
        .iter()
        .filter(|id| newest.position(id).is_none())
        .collect();
    if missing.is_empty() || (newest.binary.is_some() && !newest.binary_per_feed()) {
        return Some(match hermes_update(newest_raw, request) {
            // `/latest` always answers with an update, if an empty one.
            Filtered::Nothing => Filtered::Rendered(newest.render(&[], request)),
            other => other,
        });
    }
    // Per requested id, the piece that answers it (None: not found yet).
    let mut pieces: Vec<Option<Piece<'a>>> = request
        .ids
        .iter()
        .map(|id| newest.position(id).and_then(|i| newest.piece(i)))
        .collect();
    let newest_has_binary = newest.binary.is_some();
    for raw in newest_first.take(LOOKBACK) {
        if pieces.iter().all(Option::is_some) {
            break;
        }
        let Some(older) = HermesUpdate::parse(raw) else {
            continue;
        };
        if older.binary.is_some() != newest_has_binary
            || (newest_has_binary && !older.binary_per_feed())
        {
            continue;
        }
        for (slot, id) in pieces.iter_mut().zip(&request.ids) {
            if slot.is_none() {
                *slot = older.position(id).and_then(|i| older.piece(i));
            }
        }
    }
    let found: Vec<Piece<'a>> = pieces.into_iter().flatten().collect();
    Some(Filtered::Rendered(render_update(
        newest.encoding.as_deref(),
        newest_has_binary,
        &found,
        None,
        request,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ids: &[&str]) -> HermesRequest {
        HermesRequest {
            ids: ids.iter().map(|s| normalize_feed_id(s)).collect(),
            base64: false,
            parsed: true,
        }
    }

    fn update(feeds: &[(&str, i64)], per_feed_binary: bool) -> String {
        let parsed: Vec<String> = feeds
            .iter()
            .map(|(id, p)| format!(r#"{{"id":"{id}","price":{{"price":"{p}","expo":-8}}}}"#))
            .collect();
        let binary: Vec<String> = if per_feed_binary {
            feeds.iter().map(|(id, _)| format!("\"b{id}\"")).collect()
        } else {
            vec!["\"00ff\"".to_owned()]
        };
        format!(
            r#"{{"binary":{{"encoding":"hex","data":[{}]}},"parsed":[{}]}}"#,
            binary.join(","),
            parsed.join(",")
        )
    }

    #[test]
    fn dex_tokens_keep_requested_base_tokens_byte_for_byte() {
        let raw = br#"[{"baseToken":{"address":"AAA"},"priceUsd":"1.50"}, {"baseToken":{"address":"0xAbC"},"priceUsd":"2.0"},{"baseToken":{"address":"CCC"},"fdv":1e-7}]"#;
        let kept = dex_tokens(raw, &address_list("CCC,0xabc")).unwrap();
        assert_eq!(
            String::from_utf8(kept).unwrap(),
            r#"[{"baseToken":{"address":"0xAbC"},"priceUsd":"2.0"},{"baseToken":{"address":"CCC"},"fdv":1e-7}]"#
        );
        assert_eq!(dex_tokens(raw, &address_list("zzz")).unwrap(), b"[]");
        assert_eq!(dex_tokens(raw, &address_list("AAA,0xABC,CCC")), None);
        assert_eq!(dex_tokens(b"<html>", &address_list("AAA")), None);
    }

    #[test]
    fn birdeye_multi_restricts_data_in_request_order() {
        let raw =
            br#"{"success":true,"data":{"So1":{"value":1.5e-5},"USD":{"value":1.0},"X":null}}"#;
        let cut = birdeye_multi(raw, &address_list("USD,nope,So1")).unwrap();
        assert_eq!(
            String::from_utf8(cut).unwrap(),
            r#"{"success":true,"data":{"USD":{"value":1.0},"nope":null,"So1":{"value":1.5e-5}}}"#
        );
        let error = br#"{"success":false,"message":"Too many requests"}"#;
        assert_eq!(birdeye_multi(error, &address_list("USD")), None);
        assert_eq!(
            birdeye_price_in_multi(raw, "So1").as_deref(),
            Some(r#"{"value":1.5e-5}"#)
        );
        assert_eq!(birdeye_price_in_multi(raw, "X"), None);
    }

    #[test]
    fn hermes_updates_are_cut_to_requested_feeds() {
        let raw = update(&[("aa", 1), ("bb", 2), ("cc", 3)], true);
        let all = request(&["0xAA", "bb", "cc"]);
        assert_eq!(hermes_update(raw.as_bytes(), &all), Filtered::Recorded);
        let Filtered::Rendered(cut) = hermes_update(raw.as_bytes(), &request(&["cc", "aa"])) else {
            panic!("expected a cut-down update");
        };
        assert_eq!(
            String::from_utf8(cut).unwrap(),
            r#"{"binary":{"encoding":"hex","data":["baa","bcc"]},"parsed":[{"id":"aa","price":{"price":"1","expo":-8}},{"id":"cc","price":{"price":"3","expo":-8}}]}"#
        );
        assert_eq!(
            hermes_update(raw.as_bytes(), &request(&["dd"])),
            Filtered::Nothing
        );
        // One blob for every feed: kept whole.
        let blob = update(&[("aa", 1), ("bb", 2)], false);
        let Filtered::Rendered(cut) = hermes_update(blob.as_bytes(), &request(&["bb"])) else {
            panic!("expected a cut-down update");
        };
        assert!(
            String::from_utf8(cut)
                .unwrap()
                .contains(r#""data":["00ff"]"#)
        );
    }

    #[test]
    fn hermes_encoding_and_parsed_options() {
        let raw = r#"{"binary":{"encoding":"hex","data":["00ff"]},"parsed":[{"id":"aa"}]}"#;
        let request = HermesRequest {
            ids: vec![],
            base64: true,
            parsed: false,
        };
        assert_eq!(
            hermes_update(raw.as_bytes(), &request),
            Filtered::Rendered(br#"{"binary":{"encoding":"base64","data":["AP8="]}}"#.to_vec())
        );
    }

    #[test]
    fn hermes_latest_fills_missing_feeds_from_earlier_updates() {
        let old = update(&[("aa", 1), ("bb", 2)], true);
        let new = update(&[("aa", 10)], true);
        let raws = [new.as_bytes(), old.as_bytes()];
        let Some(Filtered::Rendered(out)) =
            hermes_latest(raws.iter().copied(), &request(&["bb", "aa"]))
        else {
            panic!("expected a combined update");
        };
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""data":["bbb","baa"]"#), "{text}");
        assert!(text.contains(r#""price":"10""#), "{text}");
        assert!(text.contains(r#""price":"2""#), "{text}");
        assert_eq!(
            hermes_latest(raws.iter().copied(), &request(&["aa"])),
            Some(Filtered::Recorded)
        );
        assert_eq!(hermes_latest(std::iter::empty(), &request(&["aa"])), None);
    }
}
