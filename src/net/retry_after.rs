//! Parsing of the `Retry-After` header: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest pause taken from a `Retry-After` header. A broken or hostile header
/// (`Retry-After: 999999999`) must not stop a provider for years; past this the layer
/// retries anyway, and the upstream can answer 429 again.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// The delay a `Retry-After` value asks for, seen at `now`, capped at [`MAX_RETRY_AFTER`].
/// A date in the past means "now" (zero). `None` when the value is neither form.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Some(seconds) = parse_seconds(value) {
        seconds
    } else {
        let at = parse_http_date(value)?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Delay-seconds. The RFC allows only a non-negative integer; fractional values are accepted
/// too because some servers send them and their meaning is unambiguous.
fn parse_seconds(value: &str) -> Option<Duration> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    if let Ok(whole) = value.parse::<u64>() {
        return Some(Duration::from_secs(whole.min(MAX_RETRY_AFTER.as_secs())));
    }
    let seconds = value.parse::<f64>().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64())))
}

/// An HTTP-date in any of the three forms a recipient must accept: IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
/// (`Sun Nov  6 08:49:37 1994`).
pub(crate) fn parse_http_date(value: &str) -> Option<SystemTime> {
    let (year, month, day, clock) = match value.split_once(',') {
        Some((_weekday, rest)) => {
            let mut parts = rest.split_whitespace();
            let first = parts.next()?;
            if first.contains('-') {
                // RFC 850: 06-Nov-94 08:49:37 GMT
                let mut date = first.split('-');
                let day = date.next()?;
                let month = date.next()?;
                let year = two_digit_year(date.next()?)?;
                let clock = parts.next()?;
                expect_gmt(parts.next())?;
                (year, month_number(month)?, number(day)?, clock)
            } else {
                // IMF-fixdate: 06 Nov 1994 08:49:37 GMT
                let month = month_number(parts.next()?)?;
                let year = number(parts.next()?)?;
                let clock = parts.next()?;
                expect_gmt(parts.next())?;
                (year, month, number(first)?, clock)
            }
        }
        None => {
            // asctime: Sun Nov  6 08:49:37 1994
            let mut parts = value.split_whitespace();
            let _weekday = parts.next()?;
            let month = month_number(parts.next()?)?;
            let day = number(parts.next()?)?;
            let clock = parts.next()?;
            let year = number(parts.next()?)?;
            if parts.next().is_some() {
                return None;
            }
            (year, month, day, clock)
        }
    };
    let mut hms = clock.split(':');
    let hour = number(hms.next()?)?;
    let minute = number(hms.next()?)?;
    let second = number(hms.next()?)?;
    if hms.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = u64::try_from(days).ok()? * 86_400 + hour * 3_600 + minute * 60 + second;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

fn expect_gmt(zone: Option<&str>) -> Option<()> {
    (zone == Some("GMT")).then_some(())
}

fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// RFC 850's two-digit year; RFC 9110 says to read one that looks more than 50 years in the
/// future as the past, which for any date this code will see means 19xx for 70..=99.
fn two_digit_year(text: &str) -> Option<u64> {
    let yy = number(text)?;
    match yy {
        0..=69 => Some(2000 + yy),
        70..=99 => Some(1900 + yy),
        _ => None,
    }
}

fn month_number(name: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS
        .iter()
        .position(|m| *m == name)
        .and_then(|i| u64::try_from(i + 1).ok())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> i64 {
    let (year, month, day) = (year as i64, month as i64, day as i64);
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUN_1994: u64 = 784_111_777;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn all_three_date_forms_parse_to_the_same_instant() {
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(text), Some(at(SUN_1994)), "{text}");
        }
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(UNIX_EPOCH)
        );
        assert_eq!(
            parse_http_date("Sat, 29 Feb 2020 12:00:00 GMT"),
            Some(at(1_582_977_600))
        );
    }

    #[test]
    fn seconds_and_dates_become_delays() {
        let now = at(SUN_1994);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(parse_retry_after("99999999999", now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn garbage_is_refused() {
        let now = at(SUN_1994);
        for text in [
            "",
            "-1",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "1e3",
        ] {
            assert_eq!(parse_retry_after(text, now), None, "{text:?}");
        }
    }
}
