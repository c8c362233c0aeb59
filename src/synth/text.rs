//! Writing JSON text fast and exactly: integers, fixed-point and significant-digit decimals,
//! float-style literals, hex and UTC timestamps, all straight into a reused byte buffer.
//!
//! Money never passes through an `f64`: a price is an integer mantissa and a power of ten, and
//! is printed from those digits. Where the real API sends JSON floats (Birdeye values, DEX
//! Screener volumes), the literal is written in the shape a float serializer would print.

/// Appends an unsigned integer.
pub(crate) fn push_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends a signed integer.
pub(crate) fn push_i64(buf: &mut Vec<u8>, v: i64) {
    buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends a 128-bit signed integer.
pub(crate) fn push_i128(buf: &mut Vec<u8>, v: i128) {
    buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends text verbatim.
pub(crate) fn push(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(s.as_bytes());
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    for c in s.chars() {
        match c {
            '"' => push(buf, "\\\""),
            '\\' => push(buf, "\\\\"),
            '\n' => push(buf, "\\n"),
            c if u32::from(c) < 0x20 => {
                push(buf, "\\u00");
                push_hex(buf, &[u32::from(c) as u8]);
            }
            c => {
                let mut utf8 = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    buf.push(b'"');
}

/// Appends lower-case hex of `bytes`, no `0x`.
pub(crate) fn push_hex(buf: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    buf.reserve(bytes.len() * 2);
    for b in bytes {
        buf.push(DIGITS[usize::from(b >> 4)]);
        buf.push(DIGITS[usize::from(b & 0x0f)]);
    }
}

/// `10^n` for small `n`.
pub(crate) const fn pow10(n: u32) -> i128 {
    let mut v: i128 = 1;
    let mut i = 0;
    while i < n {
        v *= 10;
        i += 1;
    }
    v
}

/// Number of decimal digits of `v` (1 for 0).
fn digit_count(mut v: u128) -> u32 {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

/// `m × 10^expo` rounded (half up) to at most `sig` significant digits, trailing zeros folded
/// into the exponent. Returns the magnitude's digits as an integer and its exponent.
fn round_sig(m: u128, expo: i32, sig: u32) -> (u128, i32) {
    if m == 0 {
        return (0, 0);
    }
    let (mut m, mut expo) = (m, expo);
    let digits = digit_count(m);
    if digits > sig {
        let drop = digits - sig;
        let div = pow10(drop) as u128;
        m = (m + div / 2) / div;
        expo += drop as i32;
    }
    while m % 10 == 0 {
        m /= 10;
        expo += 1;
    }
    (m, expo)
}

/// Writes `digits × 10^expo` in plain notation (`0.00001585`, `142.37`, `1500`).
fn write_plain(buf: &mut Vec<u8>, digits: u128, expo: i32) {
    let mut itoa_buf = itoa::Buffer::new();
    let text = itoa_buf.format(digits).as_bytes();
    if expo >= 0 {
        buf.extend_from_slice(text);
        buf.extend(std::iter::repeat_n(b'0', expo as usize));
        return;
    }
    let point = text.len() as i64 + i64::from(expo);
    if point > 0 {
        let (int, frac) = text.split_at(point as usize);
        buf.extend_from_slice(int);
        buf.push(b'.');
        buf.extend_from_slice(frac);
    } else {
        push(buf, "0.");
        buf.extend(std::iter::repeat_n(b'0', (-point) as usize));
        buf.extend_from_slice(text);
    }
}

/// Appends `m × 10^expo` in plain decimal notation, rounded to `sig` significant digits.
pub(crate) fn push_decimal(buf: &mut Vec<u8>, m: i128, expo: i32, sig: u32) {
    if m < 0 {
        buf.push(b'-');
    }
    let (digits, expo) = round_sig(m.unsigned_abs(), expo, sig);
    write_plain(buf, digits, expo);
}

/// Appends `m × 10^expo` rounded to `sig` significant digits, shaped like a float serializer's
/// shortest form: plain notation, or `1.41203118e-05` below `1e-4` (as the Birdeye capture
/// shows).
pub(crate) fn push_float(buf: &mut Vec<u8>, m: i128, expo: i32, sig: u32) {
    if m < 0 {
        buf.push(b'-');
    }
    let (digits, expo) = round_sig(m.unsigned_abs(), expo, sig);
    let count = digit_count(digits) as i32;
    // Decimal exponent of the leading digit.
    let lead = count - 1 + expo;
    if digits == 0 || lead >= -4 {
        write_plain(buf, digits, expo);
        return;
    }
    let mut itoa_buf = itoa::Buffer::new();
    let text = itoa_buf.format(digits);
    let (first, rest) = text.split_at(1);
    push(buf, first);
    if !rest.is_empty() {
        buf.push(b'.');
        push(buf, rest);
    }
    push(buf, "e-");
    let e = lead.unsigned_abs();
    if e < 10 {
        buf.push(b'0');
    }
    push_u64(buf, u64::from(e));
}

/// Appends `value / 10^decimals` in plain notation, trailing zeros dropped (`2201667.14`).
pub(crate) fn push_fixed(buf: &mut Vec<u8>, value: i128, decimals: u32) {
    if value < 0 {
        buf.push(b'-');
    }
    let magnitude = value.unsigned_abs();
    if magnitude == 0 {
        buf.push(b'0');
        return;
    }
    let (mut digits, mut expo) = (magnitude, -(decimals as i32));
    while digits % 10 == 0 && expo < 0 {
        digits /= 10;
        expo += 1;
    }
    write_plain(buf, digits, expo);
}

/// Appends `YYYY-MM-DDTHH:MM:SS` for a Unix time in seconds (UTC, no zone: Birdeye's
/// `updateHumanTime`).
pub(crate) fn push_human_time(buf: &mut Vec<u8>, unix_s: i64) {
    let days = unix_s.div_euclid(86_400);
    let secs = unix_s.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let two = |buf: &mut Vec<u8>, v: i64| {
        if v < 10 {
            buf.push(b'0');
        }
        push_i64(buf, v);
    };
    push_i64(buf, y);
    buf.push(b'-');
    two(buf, m);
    buf.push(b'-');
    two(buf, d);
    buf.push(b'T');
    two(buf, secs / 3600);
    buf.push(b':');
    two(buf, secs / 60 % 60);
    buf.push(b':');
    two(buf, secs % 60);
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn decimals_round_and_trim() {
        assert_eq!(s(|b| push_decimal(b, 1585, -8, 4)), "0.00001585");
        assert_eq!(s(|b| push_decimal(b, 14237123456, -8, 5)), "142.37");
        assert_eq!(s(|b| push_decimal(b, 14237500000, -8, 5)), "142.38");
        assert_eq!(s(|b| push_decimal(b, 99999, -3, 3)), "100");
        assert_eq!(s(|b| push_decimal(b, 15, 2, 4)), "1500");
        assert_eq!(s(|b| push_decimal(b, -25, -1, 4)), "-2.5");
        assert_eq!(s(|b| push_decimal(b, 0, -5, 4)), "0");
    }

    #[test]
    fn floats_look_like_floats() {
        assert_eq!(s(|b| push_float(b, 141203118, -13, 15)), "1.41203118e-05");
        assert_eq!(s(|b| push_float(b, 9917, -11, 15)), "9.917e-08");
        assert_eq!(s(|b| push_float(b, 1, -4, 15)), "0.0001");
        assert_eq!(
            s(|b| push_float(b, 14237118820455194, -14, 15)),
            "142.371188204552"
        );
        assert_eq!(s(|b| push_float(b, 1, 0, 15)), "1");
        for text in ["1.41203118e-05", "142.371188204552"] {
            assert!(serde_json::from_str::<f64>(text).is_ok());
        }
    }

    #[test]
    fn fixed_point() {
        assert_eq!(s(|b| push_fixed(b, 220166714, 2)), "2201667.14");
        assert_eq!(s(|b| push_fixed(b, 128000, 2)), "1280");
        assert_eq!(s(|b| push_fixed(b, -1135, 2)), "-11.35");
        assert_eq!(s(|b| push_fixed(b, 5, 2)), "0.05");
        assert_eq!(s(|b| push_fixed(b, 0, 2)), "0");
    }

    #[test]
    fn human_time_is_utc() {
        assert_eq!(
            s(|b| push_human_time(b, 1_795_247_993)),
            "2026-11-21T07:59:53"
        );
        assert_eq!(s(|b| push_human_time(b, 0)), "1970-01-01T00:00:00");
        assert_eq!(
            s(|b| push_human_time(b, 951_782_400)),
            "2000-02-29T00:00:00"
        );
    }

    #[test]
    fn strings_escape() {
        assert_eq!(
            s(|b| push_json_str(b, "a\"b\\\n\u{1}é")),
            r#""a\"b\\\n\u0001é""#
        );
    }
}
