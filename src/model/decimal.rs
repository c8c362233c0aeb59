//! Exact decimal numbers for money: an integer mantissa and a power-of-ten exponent, never f64.
//!
//! Prices arrive as decimal strings (DEX Screener), integer strings with a separate exponent
//! (Hermes) or JSON floats (Birdeye). All of them become a [`Decimal`] once, at parse time, and
//! every comparison afterwards is exact integer arithmetic after aligning exponents.
//!
//! ```
//! use sluice::model::Decimal;
//! let p = Decimal::parse("0.00001585").unwrap();
//! assert_eq!((p.mantissa, p.expo), (1585, -8));
//! assert_eq!(p.to_string(), "0.00001585");
//! // JSON floats keep at most `FLOAT_DIGITS` significant digits, rounded half to even.
//! let f = Decimal::parse_rounded("142.37118820455194", Decimal::FLOAT_DIGITS).unwrap();
//! assert_eq!(f.to_string(), "142.371188204552");
//! ```

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `mantissa × 10^expo`, exactly.
///
/// Equality and hashing are on the representation (`1e0` and `10e-1` differ); compare values
/// with [`Decimal::cmp_value`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Decimal {
    /// The integer significand.
    pub mantissa: i64,
    /// The power of ten the mantissa is scaled by.
    pub expo: i32,
}

/// Why a string is not a decimal we can represent exactly.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not a decimal number (empty, stray characters, `NaN`, `inf`, ...).
    #[error("not a decimal number: {0:?}")]
    Syntax(String),
    /// More significant digits than an i64 mantissa holds.
    #[error("too many significant digits for an exact price: {0:?}")]
    Overflow(String),
    /// The exponent is outside the supported range.
    #[error("exponent out of range: {0:?}")]
    Exponent(String),
}

/// Exponents outside this range are refused: no real price needs them and they keep the
/// aligned comparisons inside i128.
const MAX_ABS_EXPO: i32 = 30;

impl Decimal {
    /// Significant digits kept when a price arrives as a binary float (Birdeye). An f64 holds
    /// 15–17 significant decimal digits; beyond 15 the digits are artefacts of the binary form.
    pub const FLOAT_DIGITS: u32 = 15;

    /// Zero with exponent zero.
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        expo: 0,
    };

    /// A decimal from its parts.
    pub const fn new(mantissa: i64, expo: i32) -> Self {
        Decimal { mantissa, expo }
    }

    /// Parses a decimal literal exactly (`"-12.5"`, `"0.00001585"`, `"1.4e-05"`, `"3"`).
    ///
    /// Fails if more than 18 significant digits would be needed.
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        Self::parse_with(text, None)
    }

    /// Parses a decimal literal keeping at most `max_digits` significant digits, rounding
    /// half to even. Used for values that were binary floats at the source.
    pub fn parse_rounded(text: &str, max_digits: u32) -> Result<Self, DecimalError> {
        Self::parse_with(text, Some(max_digits.clamp(1, 18)))
    }

    fn parse_with(text: &str, max_digits: Option<u32>) -> Result<Self, DecimalError> {
        let syntax = || DecimalError::Syntax(text.to_owned());
        let bytes = text.as_bytes();
        let (negative, rest) = match bytes.first() {
            Some(b'-') => (true, &bytes[1..]),
            Some(b'+') => (false, &bytes[1..]),
            _ => (false, bytes),
        };
        let (body, exp_part) = match rest.iter().position(|b| *b == b'e' || *b == b'E') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (int_part, frac_part) = match body.iter().position(|b| *b == b'.') {
            Some(i) => (&body[..i], &body[i + 1..]),
            None => (body, &body[body.len()..]),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(syntax());
        }
        if !int_part.iter().chain(frac_part).all(u8::is_ascii_digit) {
            return Err(syntax());
        }
        let mut expo: i64 = match exp_part {
            None => 0,
            Some(e) => parse_exponent(e).ok_or_else(syntax)?,
        };
        expo -= frac_part.len() as i64;
        // All digits, leading zeros removed; trailing zeros folded into the exponent.
        let digits: Vec<u8> = int_part.iter().chain(frac_part).copied().collect();
        let first = digits.iter().position(|d| *d != b'0');
        let Some(first) = first else {
            return Ok(Decimal::ZERO);
        };
        let mut significant = &digits[first..];
        while let Some((&b'0', head)) = significant.split_last() {
            significant = head;
            expo += 1;
        }
        let limit = max_digits.unwrap_or(18) as usize;
        let mut mantissa: i128 = 0;
        let kept = significant.len().min(limit);
        if significant.len() > limit && max_digits.is_none() {
            return Err(DecimalError::Overflow(text.to_owned()));
        }
        for d in &significant[..kept] {
            mantissa = mantissa * 10 + i128::from(d - b'0');
        }
        if kept < significant.len() {
            expo += (significant.len() - kept) as i64;
            let dropped = &significant[kept..];
            let round_up = match dropped[0].cmp(&b'5') {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal => dropped[1..].iter().any(|d| *d != b'0') || mantissa % 2 == 1,
            };
            if round_up {
                mantissa += 1;
            }
            while mantissa % 10 == 0 && mantissa != 0 {
                mantissa /= 10;
                expo += 1;
            }
        }
        if !(-i64::from(MAX_ABS_EXPO)..=i64::from(MAX_ABS_EXPO)).contains(&expo) {
            return Err(DecimalError::Exponent(text.to_owned()));
        }
        let mantissa =
            i64::try_from(mantissa).map_err(|_| DecimalError::Overflow(text.to_owned()))?;
        Ok(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            expo: expo as i32,
        })
    }

    /// True when the value is strictly positive.
    pub fn is_positive(&self) -> bool {
        self.mantissa > 0
    }

    /// The value as an integer count of `10^expo` units, if it is exactly representable.
    pub fn scaled_to(&self, expo: i32) -> Option<i128> {
        let shift = self.expo.checked_sub(expo)?;
        if shift >= 0 {
            let factor = pow10(shift as u32)?;
            i128::from(self.mantissa).checked_mul(factor)
        } else {
            let factor = pow10((-shift) as u32)?;
            let m = i128::from(self.mantissa);
            (m % factor == 0).then_some(m / factor)
        }
    }

    /// Compares the values exactly, whatever the exponents.
    pub fn cmp_value(&self, other: &Decimal) -> Ordering {
        let expo = self.expo.min(other.expo);
        match (self.scaled_to(expo), other.scaled_to(expo)) {
            (Some(a), Some(b)) => a.cmp(&b),
            // Exponents are bounded, so alignment cannot overflow i128; keep a total order anyway.
            _ => (self.mantissa.signum(), self.expo, self.mantissa).cmp(&(
                other.mantissa.signum(),
                other.expo,
                other.mantissa,
            )),
        }
    }

    /// The same value with trailing zeros of the mantissa folded into the exponent.
    pub fn normalized(&self) -> Decimal {
        if self.mantissa == 0 {
            return Decimal::ZERO;
        }
        let (mut m, mut e) = (self.mantissa, self.expo);
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        Decimal::new(m, e)
    }
}

/// Serde helpers writing a [`Decimal`] as its plain decimal string (`"0.00001585"`), the form
/// journals and stored records use: exact, and readable.
pub mod as_string {
    use super::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the decimal as a string.
    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    /// Reads a decimal string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Decimal::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `10^n` as i128, if it fits.
pub fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

fn parse_exponent(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 6 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    Some(if negative { -value } else { value })
}

impl fmt::Display for Decimal {
    /// Plain decimal notation, no exponent: `0.00001585`, `-12.5`, `1500`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let negative = self.mantissa < 0;
        let digits = self.mantissa.unsigned_abs().to_string();
        if negative {
            f.write_str("-")?;
        }
        if self.expo >= 0 {
            f.write_str(&digits)?;
            for _ in 0..self.expo {
                f.write_str("0")?;
            }
            return Ok(());
        }
        let frac = (-self.expo) as usize;
        if digits.len() > frac {
            let (int, rest) = digits.split_at(digits.len() - frac);
            write!(f, "{int}.{rest}")
        } else {
            f.write_str("0.")?;
            for _ in 0..frac - digits.len() {
                f.write_str("0")?;
            }
            f.write_str(&digits)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_strings() {
        assert_eq!(Decimal::parse("142.41").unwrap(), Decimal::new(14241, -2));
        assert_eq!(
            Decimal::parse("0.0000001113").unwrap(),
            Decimal::new(1113, -10)
        );
        assert_eq!(Decimal::parse("1500").unwrap(), Decimal::new(15, 2));
        assert_eq!(Decimal::parse("-2.310").unwrap(), Decimal::new(-231, -2));
        assert_eq!(
            Decimal::parse("1.41203118e-05").unwrap(),
            Decimal::new(141203118, -13)
        );
        assert_eq!(Decimal::parse("1E+3").unwrap(), Decimal::new(1, 3));
        assert_eq!(Decimal::parse("0").unwrap(), Decimal::ZERO);
        assert_eq!(Decimal::parse(".5").unwrap(), Decimal::new(5, -1));
    }

    #[test]
    fn refuses_non_numbers() {
        for bad in [
            "",
            "-",
            ".",
            "abc",
            "1.2.3",
            "NaN",
            "inf",
            "1e",
            "1e+",
            "1,5",
            "0x10",
            "1e9999999",
        ] {
            assert!(Decimal::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            Decimal::parse("1234567890123456789012"),
            Err(DecimalError::Overflow(_))
        ));
        assert!(matches!(
            Decimal::parse("1e45"),
            Err(DecimalError::Exponent(_))
        ));
    }

    #[test]
    fn rounds_floats_half_to_even() {
        let d = Decimal::parse_rounded("142.37118820455194", 15).unwrap();
        assert_eq!(d, Decimal::new(142371188204552, -12));
        assert_eq!(
            Decimal::parse_rounded("2.5", 1).unwrap(),
            Decimal::new(2, 0)
        );
        assert_eq!(
            Decimal::parse_rounded("3.5", 1).unwrap(),
            Decimal::new(4, 0)
        );
        assert_eq!(
            Decimal::parse_rounded("2.51", 1).unwrap(),
            Decimal::new(3, 0)
        );
        assert_eq!(
            Decimal::parse_rounded("9.99", 2).unwrap(),
            Decimal::new(1, 1)
        );
    }

    #[test]
    fn compares_across_exponents() {
        let a = Decimal::new(10, -1);
        let b = Decimal::new(1, 0);
        assert_eq!(a.cmp_value(&b), Ordering::Equal);
        assert_eq!(
            Decimal::new(-5, 0).cmp_value(&Decimal::new(1, -9)),
            Ordering::Less
        );
        assert_eq!(
            Decimal::new(9712345678901, -8).cmp_value(&Decimal::new(97123, 0)),
            Ordering::Greater
        );
    }

    #[test]
    fn displays_plainly() {
        assert_eq!(Decimal::new(1585, -8).to_string(), "0.00001585");
        assert_eq!(Decimal::new(-125, -1).to_string(), "-12.5");
        assert_eq!(Decimal::new(15, 2).to_string(), "1500");
        assert_eq!(Decimal::new(14241, -2).to_string(), "142.41");
    }

    proptest::proptest! {
        #[test]
        fn display_round_trips(m in proptest::num::i64::ANY, e in -18i32..=12) {
            let d = Decimal::new(m, e);
            let back = Decimal::parse(&d.to_string());
            if let Ok(back) = back {
                proptest::prop_assert_eq!(back.cmp_value(&d), Ordering::Equal);
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = Decimal::parse(&s);
            let _ = Decimal::parse_rounded(&s, 15);
        }
    }
}
