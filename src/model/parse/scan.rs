//! A byte cursor for the one JSON shape a hot path expects, written compactly as the server
//! writes it: it either reads that shape or gives up, leaving the general parser to decide
//! (and to explain any problem).

/// Hex digit values; 0xff marks a byte that is not a hex digit.
const HEX: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes exactly `out.len() * 2` hex digits; `None` on anything else.
pub(super) fn decode_hex_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    let mut bad = 0u8;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (hi, lo) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        bad |= hi | lo;
        *byte = (hi << 4) | (lo & 0x0f);
    }
    // A bad digit is 0xff, which has the high bit set; valid ones never do.
    (bad & 0x80 == 0).then_some(())
}

/// The length of the run of hex digits `text` starts with.
///
/// Checks 32 bytes at a time without early exit (which vectorizes), and looks byte by byte
/// only inside the chunk where the run ends: one pass both finds the end of a hex string and
/// validates it.
pub(super) fn hex_run(text: &[u8]) -> usize {
    let mut chunks = text.chunks_exact(32);
    let mut done = 0;
    for chunk in chunks.by_ref() {
        if !chunk.iter().fold(true, |ok, b| ok & b.is_ascii_hexdigit()) {
            break;
        }
        done += 32;
    }
    done + text[done..]
        .iter()
        .take_while(|b| b.is_ascii_hexdigit())
        .count()
}

/// A position in a payload.
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }

    /// Consumes `literal` if it comes next.
    pub(super) fn eat(&mut self, literal: &[u8]) -> Option<()> {
        let end = self.at.checked_add(literal.len())?;
        (self.bytes.get(self.at..end)? == literal).then(|| self.at = end)
    }

    /// The next byte, without consuming it.
    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Consumes the next byte if it is `b`.
    pub(super) fn eat_byte(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.at += usize::from(hit);
        hit
    }

    /// A short string's contents (an id, a number written as a string): scanned byte by
    /// byte, which beats a vectorized search on a few dozen bytes. Gives up on escapes and on
    /// any byte that is not printable ASCII.
    pub(super) fn short_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b"\"")?;
        let rest = self.bytes.get(self.at..)?;
        let end = rest
            .iter()
            .position(|b| *b == b'"' || *b == b'\\' || !is_plain(*b))?;
        if rest[end] != b'"' {
            return None;
        }
        self.at += end + 1;
        Some(&rest[..end])
    }

    /// A string that must be hex digits (an update blob), found and validated in one pass.
    /// Gives up on anything but hex digits before the closing quote.
    pub(super) fn hex_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b"\"")?;
        let rest = self.bytes.get(self.at..)?;
        let len = hex_run(rest);
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        self.at += len + 1;
        Some(&rest[..len])
    }

    /// An integer literal (optionally negative), as i64.
    pub(super) fn int(&mut self) -> Option<i64> {
        let negative = self.eat_byte(b'-');
        let digits = self.digits()?;
        let value = parse_digits(digits)?;
        if negative {
            value.checked_neg()
        } else {
            Some(value)
        }
    }

    fn digits(&mut self) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.at..)?;
        let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        self.at += len;
        Some(&rest[..len])
    }

    /// Skips one object, array, string, number or literal, checking it is JSON as written
    /// compactly. Gives up on escapes, whitespace and nesting deeper than [`MAX_SKIP_DEPTH`].
    pub(super) fn skip_value(&mut self) -> Option<()> {
        self.skip_value_within(MAX_SKIP_DEPTH)
    }

    fn skip_value_within(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            // Skipped strings are short (prices, times): a byte loop beats a vectorized search.
            b'"' => self.short_string().map(drop),
            b'{' => {
                let depth = depth.checked_sub(1)?;
                self.at += 1;
                if self.eat_byte(b'}') {
                    return Some(());
                }
                loop {
                    self.short_string()?;
                    self.eat(b":")?;
                    self.skip_value_within(depth)?;
                    if self.eat_byte(b'}') {
                        return Some(());
                    }
                    self.eat(b",")?;
                }
            }
            b'[' => {
                let depth = depth.checked_sub(1)?;
                self.at += 1;
                if self.eat_byte(b']') {
                    return Some(());
                }
                loop {
                    self.skip_value_within(depth)?;
                    if self.eat_byte(b']') {
                        return Some(());
                    }
                    self.eat(b",")?;
                }
            }
            b't' => self.eat(b"true"),
            b'f' => self.eat(b"false"),
            b'n' => self.eat(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// A number as JSON writes it: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        self.eat_byte(b'-');
        let int = self.digits()?;
        if int.len() > 1 && int[0] == b'0' {
            return None;
        }
        if self.eat_byte(b'.') {
            self.digits()?;
        }
        if self.eat_byte(b'e') || self.eat_byte(b'E') {
            if !self.eat_byte(b'+') {
                self.eat_byte(b'-');
            }
            self.digits()?;
        }
        Some(())
    }

    /// True when only whitespace is left.
    pub(super) fn at_end(&self) -> bool {
        self.bytes.get(self.at..).is_some_and(|rest| {
            rest.iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        })
    }
}

/// How deep [`Cursor::skip_value`] follows nested objects and arrays before giving up; the
/// fields it skips in real payloads are one or two levels deep.
const MAX_SKIP_DEPTH: usize = 16;

/// A byte a string may hold on the hot path: printable ASCII (JSON forbids control bytes in
/// strings; anything above ASCII is left to the general parser's UTF-8 check).
fn is_plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

/// Digits as a non-negative i64; `None` on overflow or a leading zero that JSON forbids.
pub(super) fn parse_digits(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') || digits.len() > 19 {
        return None;
    }
    let mut value: i64 = 0;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(value)
}

/// Digits as a u64 (no sign).
pub(super) fn parse_digits_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') || digits.len() > 20 {
        return None;
    }
    let mut value: u64 = 0;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_exactly() {
        let mut out = [0u8; 2];
        assert_eq!(decode_hex_into(b"aB0f", &mut out), Some(()));
        assert_eq!(out, [0xab, 0x0f]);
        assert_eq!(decode_hex_into(b"aB0g", &mut out), None);
        assert_eq!(decode_hex_into(b"aB0", &mut out), None);
        assert_eq!(hex_run(b"00ff"), 4);
        assert_eq!(hex_run(b"00 f"), 2);
        assert_eq!(hex_run(b""), 0);
        let long: Vec<u8> = (0..100)
            .map(|i| b"0123456789abcdefABCDEF"[i % 22])
            .collect();
        assert_eq!(hex_run(&long), 100);
        for cut in [0, 1, 31, 32, 33, 64, 99] {
            let mut bad = long.clone();
            bad[cut] = b'"';
            assert_eq!(hex_run(&bad), cut);
        }
    }

    #[test]
    fn the_cursor_reads_the_compact_form_or_gives_up() {
        let mut c = Cursor::new(br#"{"a":"x","b":-12,"c":{"d":[1,2.5e3,null,"y"]}}  "#);
        assert!(c.eat(b"{\"a\":").is_some());
        assert_eq!(c.short_string(), Some(&b"x"[..]));
        assert!(c.eat(b",\"b\":").is_some());
        assert_eq!(c.int(), Some(-12));
        assert!(c.eat(b",\"c\":").is_some());
        assert!(c.skip_value().is_some());
        assert!(c.eat(b"}").is_some());
        assert!(c.at_end());
        assert_eq!(Cursor::new(br#""a\"b""#).short_string(), None);
        assert_eq!(Cursor::new(b"0123").int(), None);
        assert_eq!(Cursor::new(b"99999999999999999999").int(), None);
        assert_eq!(parse_digits_u64(b"18446744073709551615"), Some(u64::MAX));
    }

    /// Whatever `skip_value` and the string readers accept is JSON: the hot path must never
    /// take a document the general parser would call invalid.
    #[test]
    fn the_cursor_accepts_only_json() {
        let skips = |text: &[u8]| {
            let mut c = Cursor::new(text);
            c.skip_value().is_some() && c.at_end()
        };
        for good in [
            &br#"{"a":[1,-2.5e+3,0,0.0,1E9,true,false,null,"",{}],"b":[]}"#[..],
            b"-0",
            br#""~ok""#,
        ] {
            assert!(skips(good), "{}", String::from_utf8_lossy(good));
            assert!(serde_json::from_slice::<serde_json::Value>(good).is_ok());
        }
        for bad in [
            &b"{\"a\":1,}"[..],
            b"{,}",
            b"[1,,2]",
            b"[1:2]",
            b"{\"a\" 1}",
            b"{\"a\":1:2}",
            b"[}",
            b"{1:2}",
            b"tru",
            b"nulx",
            b"1x",
            b"01",
            b"1.",
            b"1e",
            b".5",
            b"+1",
            b"\"a\x00b\"",
            b"\"a\nb\"",
            b"\"\xff\"",
            b"1\x0c",
        ] {
            assert!(!skips(bad), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(Cursor::new(b"\"a\x01\"").short_string(), None);
        assert_eq!(Cursor::new(b"\"\xc3\xa9\"").short_string(), None);
        let nested = format!(
            "{}{}",
            "[".repeat(MAX_SKIP_DEPTH + 1),
            "]".repeat(MAX_SKIP_DEPTH + 1)
        );
        assert!(!skips(nested.as_bytes()));
        let nested = format!(
            "{}{}",
            "[".repeat(MAX_SKIP_DEPTH),
            "]".repeat(MAX_SKIP_DEPTH)
        );
        assert!(skips(nested.as_bytes()));
    }
}
