//! Plumbing the parsers share: path-aware JSON decoding, number literals, time and hex checks.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use bytes::Bytes;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_json::error::Category;
use serde_json::value::RawValue;

use super::{ParseContext, error_offset};
use crate::model::ids::truncate_for_error;
use crate::model::{Decimal, Location};

/// A JSON string, borrowed from the payload unless it contained escapes.
///
/// serde's own `Cow<str>` always allocates once it sits inside a `Vec` or an `Option`; this one
/// borrows wherever the input allows, which is what keeps the Hermes hot path allocation-free.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Text<'a>(pub(super) Cow<'a, str>);

impl Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(TextVisitor(PhantomData))
    }
}

/// Why a JSON document (or one part of it) did not decode into the expected shape.
#[derive(Debug)]
pub(super) struct DecodeError {
    /// Path inside the decoded part, empty at its root.
    path: String,
    /// serde_json's message, without its line/column suffix (a path or offset replaces it).
    message: String,
    /// The bytes are not JSON at all, as opposed to JSON of the wrong shape.
    syntax: bool,
    /// Byte offset of the error inside the decoded part.
    offset: u64,
}

impl DecodeError {
    fn from_json(err: &serde_json::Error, path: String, json: &[u8]) -> Self {
        let mut message = err.to_string();
        if err.line() != 0
            && let Some(cut) = message.rfind(" at line ")
        {
            message.truncate(cut);
        }
        DecodeError {
            path,
            message,
            syntax: matches!(
                err.classify(),
                Category::Syntax | Category::Eof | Category::Io
            ),
            offset: error_offset(json, err),
        }
    }

    fn shape(message: impl Into<String>) -> Self {
        DecodeError {
            path: String::new(),
            message: message.into(),
            syntax: false,
            offset: 0,
        }
    }

    /// What went wrong, for an invalid record.
    pub(super) fn reason(&self) -> String {
        if self.syntax {
            format!("not valid JSON: {}", self.message)
        } else {
            self.message.clone()
        }
    }

    /// Where it went wrong, for a part decoded at `prefix` (empty for the whole payload).
    ///
    /// The whole payload gets a byte offset when the problem is its syntax or its top level;
    /// anything deeper gets a field path, which says more than an offset into a sub-slice.
    pub(super) fn location(&self, prefix: &str) -> Location {
        if prefix.is_empty() && (self.syntax || self.path.is_empty()) {
            Location::Offset(self.offset)
        } else {
            Location::Path(join(prefix, &self.path))
        }
    }
}

/// Decodes `json` as a `T`, remembering the path to the first problem.
pub(super) fn decode<'de, T: Deserialize<'de>>(json: &'de [u8]) -> Result<T, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        DecodeError::from_json(err.inner(), path, json)
    })?;
    de.end()
        .map_err(|err| DecodeError::from_json(&err, String::new(), json))?;
    Ok(value)
}

/// Like [`decode`], but only from a JSON object.
///
/// serde would also build a struct from an array of its fields in order, which no API here
/// sends; accepting it would let positional garbage through as data.
pub(super) fn decode_object<'de, T: Deserialize<'de>>(json: &'de [u8]) -> Result<T, DecodeError> {
    let found = match first_byte(json) {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        // An object, or not JSON at all: serde says what is wrong and where.
        _ => return decode(json),
    };
    // Broken JSON is reported as such before its shape is.
    decode::<de::IgnoredAny>(json)?;
    Err(DecodeError::shape(format!(
        "expected a JSON object, found {found}"
    )))
}

/// The first byte that is not JSON whitespace.
pub(super) fn first_byte(json: &[u8]) -> Option<u8> {
    json.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// `prefix` and `sub` as one field path (`parsed[1]` + `price.price`, `` + `[3]`).
pub(super) fn join(prefix: &str, sub: &str) -> String {
    if prefix.is_empty() {
        sub.to_owned()
    } else if sub.is_empty() {
        prefix.to_owned()
    } else if sub.starts_with('[') {
        format!("{prefix}{sub}")
    } else {
        format!("{prefix}.{sub}")
    }
}

/// A map key as a path segment, shortened so a huge key cannot make a huge record.
pub(super) fn key_segment(key: &str) -> String {
    truncate_for_error(key)
}

/// The literal text of a JSON number, refusing anything else (strings, booleans, objects).
fn number_text(raw: &RawValue) -> Result<&str, String> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => Ok(text),
        _ => Err(format!(
            "expected a number, found {}",
            truncate_for_error(text)
        )),
    }
}

/// A JSON number that was a binary float at the source, kept to the digits a float carries.
pub(super) fn float_decimal(raw: &RawValue) -> Result<Decimal, String> {
    let text = number_text(raw)?;
    Decimal::parse_rounded(text, Decimal::FLOAT_DIGITS).map_err(|e| e.to_string())
}

/// A JSON number kept with every digit its literal has (up to what an i64 mantissa holds), so
/// comparisons between two literals are exact.
pub(super) fn literal_decimal(raw: &RawValue) -> Result<Decimal, String> {
    let text = number_text(raw)?;
    Decimal::parse_rounded(text, 18).map_err(|e| e.to_string())
}

/// Seconds since the epoch as milliseconds, if that fits.
pub(super) fn seconds_to_ms(seconds: i64) -> Result<i64, String> {
    seconds
        .checked_mul(1000)
        .ok_or_else(|| format!("publish time {seconds} s is out of range"))
}

/// Refuses a publish time too far after the ingest time: a clock that runs ahead would
/// otherwise win every freshness comparison downstream.
pub(super) fn check_not_ahead(
    publish_ms: i64,
    ingest_ms: u64,
    ctx: &ParseContext<'_>,
) -> Result<(), String> {
    let ahead = i128::from(publish_ms) - i128::from(ingest_ms);
    if ahead > i128::from(ctx.max_future_skew_ms) {
        Err(format!("publish time {ahead} ms ahead of ingest"))
    } else {
        Ok(())
    }
}

/// The ingest time as a publish time, for sources that give none.
pub(super) fn ingest_ms_signed(ingest_ms: u64) -> i64 {
    i64::try_from(ingest_ms).unwrap_or(i64::MAX)
}

/// True when `text` is exactly `len` hex digits.
pub(super) fn is_hex_of_len(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `text` as a slice of `raw` without copying, when `text` lies inside `raw`.
pub(super) fn slice_of(raw: &Bytes, text: &str) -> Option<Bytes> {
    let start = raw.as_ptr().addr();
    let sub = text.as_ptr().addr();
    // `Bytes::slice_ref` panics on a foreign slice; an escaped JSON string is one.
    let inside = sub >= start && sub.checked_add(text.len())? <= start.checked_add(raw.len())?;
    inside.then(|| raw.slice_ref(text.as_bytes()))
}

/// Appends `s` to `out` as a JSON string literal.
pub(super) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_borrows_unless_escaped() {
        let plain: Vec<Text<'_>> = serde_json::from_str(r#"["abc"]"#).unwrap();
        assert!(matches!(plain[0].0, Cow::Borrowed("abc")));
        let escaped: Vec<Text<'_>> = serde_json::from_str(r#"["a\"c"]"#).unwrap();
        assert!(matches!(&escaped[0].0, Cow::Owned(s) if s == "a\"c"));
    }

    #[test]
    fn decode_reports_paths_and_offsets() {
        #[derive(serde::Deserialize, Debug)]
        struct Inner {
            #[allow(dead_code)]
            x: u32,
        }
        #[derive(serde::Deserialize, Debug)]
        struct Outer {
            #[allow(dead_code)]
            items: Vec<Inner>,
        }
        let err = decode::<Outer>(br#"{"items":[{"x":1},{"x":"no"}]}"#).unwrap_err();
        assert_eq!(err.location(""), Location::Path("items[1].x".into()));
        assert!(
            err.reason().starts_with("invalid type: string"),
            "{}",
            err.reason()
        );
        let err = decode::<Outer>(br#"{"items":[{"x":1}"#).unwrap_err();
        assert_eq!(err.location(""), Location::Offset(16));
        assert!(err.reason().starts_with("not valid JSON"));
        assert_eq!(err.location("[2]"), Location::Path("[2].items".into()));
        let err = decode::<Outer>(br#"{"items":[]} x"#).unwrap_err();
        assert_eq!(err.location(""), Location::Offset(13));
    }

    #[test]
    fn decode_object_refuses_positional_structs() {
        #[derive(serde::Deserialize, Debug)]
        struct Pair {
            #[allow(dead_code)]
            a: u32,
        }
        assert!(decode_object::<Pair>(b" {\"a\":1}").is_ok());
        let err = decode_object::<Pair>(b"[1]").unwrap_err();
        assert_eq!(err.reason(), "expected a JSON object, found an array");
        assert_eq!(err.location(""), Location::Offset(0));
        let err = decode_object::<Pair>(b"\"s\"").unwrap_err();
        assert_eq!(err.reason(), "expected a JSON object, found a string");
        let err = decode_object::<Pair>(b"[1,").unwrap_err();
        assert!(
            err.reason().starts_with("not valid JSON"),
            "{}",
            err.reason()
        );
    }

    #[test]
    fn numbers_come_from_their_literal_text() {
        let raw: Box<RawValue> = serde_json::from_str("142.37118820455194").unwrap();
        assert_eq!(
            float_decimal(&raw).unwrap(),
            Decimal::new(142371188204552, -12)
        );
        assert_eq!(
            literal_decimal(&raw).unwrap(),
            Decimal::new(14237118820455194, -14)
        );
        let raw: Box<RawValue> = serde_json::from_str("\"1.5\"").unwrap();
        assert!(
            float_decimal(&raw)
                .unwrap_err()
                .contains("expected a number")
        );
        let raw: Box<RawValue> = serde_json::from_str("1e999999").unwrap();
        assert!(float_decimal(&raw).is_err());
    }

    #[test]
    fn slices_only_inside_the_buffer() {
        let raw = Bytes::from_static(b"hello world");
        let text = std::str::from_utf8(&raw[6..]).unwrap();
        assert_eq!(slice_of(&raw, text).unwrap(), Bytes::from_static(b"world"));
        assert!(slice_of(&raw, &String::from("world")).is_none());
    }

    #[test]
    fn json_strings_escape_what_they_must() {
        let mut out = String::new();
        push_json_str(&mut out, "a\"b\\c\n\u{1}é");
        assert_eq!(out, r#""a\"b\\c\n\u0001é""#);
        assert_eq!(
            serde_json::from_str::<String>(&out).unwrap(),
            "a\"b\\c\n\u{1}é"
        );
    }
}
