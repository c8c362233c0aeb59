//! What a failed HTTP call reports: its category, and a text that is safe to print anywhere
//! (no API key, no URL query).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::config::REDACTED;

/// Why a call failed. Its name is the `outcome` label of `http_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorCategory {
    /// HTTP 429, or a call refused locally because the provider is paused after one.
    #[serde(rename = "rate_limited")]
    RateLimited,
    /// No complete response within the request timeout.
    #[serde(rename = "timeout")]
    Timeout,
    /// The connection could not be made or broke mid-request.
    #[serde(rename = "connect")]
    Connect,
    /// HTTP 5xx.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// HTTP 4xx other than 429 (and any other non-success status, such as an unfollowed
    /// redirect): the request itself is wrong, so it is never retried.
    #[serde(rename = "http_4xx")]
    Http4xx,
    /// The body arrived but the caller could not decode it.
    #[serde(rename = "decode")]
    Decode,
    /// The endpoint's circuit breaker is open: nothing was sent.
    #[serde(rename = "breaker_open")]
    BreakerOpen,
    /// The only data available is too old for the caller.
    #[serde(rename = "stale")]
    Stale,
    /// The request could not be built (bad path, header or bucket name): a caller bug.
    #[serde(rename = "request")]
    Request,
}

impl ErrorCategory {
    /// The name used in metrics, logs and status pages.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCategory::RateLimited => "rate_limited",
            ErrorCategory::Timeout => "timeout",
            ErrorCategory::Connect => "connect",
            ErrorCategory::Http5xx => "http_5xx",
            ErrorCategory::Http4xx => "http_4xx",
            ErrorCategory::Decode => "decode",
            ErrorCategory::BreakerOpen => "breaker_open",
            ErrorCategory::Stale => "stale",
            ErrorCategory::Request => "request",
        }
    }

    /// Whether another attempt may succeed: 429, 5xx, timeouts and connection failures.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCategory::RateLimited
                | ErrorCategory::Timeout
                | ErrorCategory::Connect
                | ErrorCategory::Http5xx
        )
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed call. Its `Display` names the provider, the endpoint (its name, never its URL),
/// the category, the status and a short detail that has had every configured secret and
/// every URL query removed.
#[derive(Clone, Debug)]
pub struct FetchError {
    provider: &'static str,
    endpoint: String,
    category: ErrorCategory,
    status: Option<u16>,
    detail: String,
    retry_after: Option<Duration>,
}

impl FetchError {
    /// An error of `category` for `endpoint` of `provider`. `detail` is cleaned of URL
    /// queries here; callers must not put secrets in it.
    pub fn new(
        provider: &'static str,
        endpoint: &str,
        category: ErrorCategory,
        detail: &str,
    ) -> Self {
        FetchError {
            provider,
            endpoint: endpoint.to_owned(),
            category,
            status: None,
            detail: Redactor::default().clean(detail),
            retry_after: None,
        }
    }

    /// A decoding failure, for callers that parse the body.
    pub fn decode(provider: &'static str, endpoint: &str, detail: &str) -> Self {
        Self::new(provider, endpoint, ErrorCategory::Decode, detail)
    }

    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    pub(crate) fn with_clean_detail(mut self, detail: String) -> Self {
        self.detail = detail;
        self
    }

    /// The provider (`dexscreener`, `birdeye`, `hermes`).
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The endpoint name the call was made under.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Why it failed.
    pub fn category(&self) -> ErrorCategory {
        self.category
    }

    /// The HTTP status, when a response arrived.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The cleaned detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// How long the upstream (or the open breaker, or the provider pause) says to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.provider, self.endpoint, self.category)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if let Some(wait) = self.retry_after {
            write!(f, "; retry after {} ms", wait.as_millis())?;
        }
        Ok(())
    }
}

impl std::error::Error for FetchError {}

/// The longest detail kept: enough for an upstream's error message, short enough for a log
/// line.
const MAX_DETAIL_CHARS: usize = 160;

/// Removes secrets and URL queries from text that is about to be printed (error details, upstream
/// error bodies, transport error messages).
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    /// Exact strings never to print: each secret header value, and its last word
    /// (`Bearer <token>` → `<token>`) since an upstream may echo the token alone.
    needles: Vec<String>,
}

impl Redactor {
    /// A redactor for these secret header values.
    pub(crate) fn new<'a>(secret_values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles = Vec::new();
        for value in secret_values {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            needles.push(value.to_owned());
            if let Some((_scheme, token)) = value.rsplit_once(char::is_whitespace)
                && !token.is_empty()
            {
                needles.push(token.to_owned());
            }
        }
        // Longest first, so a token inside a longer value does not leave the rest behind.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Redactor { needles }
    }

    /// `text` with secrets replaced by `<redacted>`, each URL query cut to `?…`, control
    /// characters turned to spaces, and at most [`MAX_DETAIL_CHARS`] characters.
    pub(crate) fn clean(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for needle in &self.needles {
            if text.contains(needle.as_str()) {
                text = text.replace(needle.as_str(), REDACTED);
            }
        }
        let mut out = String::with_capacity(text.len().min(MAX_DETAIL_CHARS + 8));
        let mut chars = 0;
        for word in text.split_inclusive(char::is_whitespace) {
            // A query may carry a token (Hermes accepts `?ACCESS_TOKEN=`): keep only the part
            // before it.
            let word = match word.split_once('?') {
                Some((before, _query)) => {
                    let ending = if word.ends_with(char::is_whitespace) {
                        " "
                    } else {
                        ""
                    };
                    format!("{before}?…{ending}")
                }
                None => word.to_owned(),
            };
            for c in word.chars() {
                if chars >= MAX_DETAIL_CHARS {
                    out.push('…');
                    return out.trim_end().to_owned();
                }
                out.push(if c.is_control() { ' ' } else { c });
                chars += 1;
            }
        }
        out.trim_end().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_queries_never_survive_cleaning() {
        let r = Redactor::new(["Bearer tok-123456", "KEY-abcdef"]);
        let cleaned = r.clean(
            "bad key KEY-abcdef and tok-123456 at https://x.test/v1/a?ACCESS_TOKEN=zzz&b=1 now\n",
        );
        assert!(!cleaned.contains("KEY-abcdef"), "{cleaned}");
        assert!(!cleaned.contains("tok-123456"), "{cleaned}");
        assert!(!cleaned.contains("zzz"), "{cleaned}");
        assert!(cleaned.contains("https://x.test/v1/a?…"), "{cleaned}");
        assert!(cleaned.ends_with("now"), "{cleaned}");
        let long = r.clean(&"x".repeat(500));
        assert_eq!(long.chars().count(), MAX_DETAIL_CHARS + 1);
    }

    #[test]
    fn display_is_short_and_labelled() {
        let e = FetchError::new("birdeye", "birdeye_multi_price", ErrorCategory::Http5xx, "")
            .with_status(503)
            .with_retry_after(Some(Duration::from_millis(1500)));
        assert_eq!(
            e.to_string(),
            "birdeye birdeye_multi_price: http_5xx (HTTP 503); retry after 1500 ms"
        );
        assert_eq!(
            serde_json::to_string(&ErrorCategory::Http5xx)
                .ok()
                .as_deref(),
            Some("\"http_5xx\"")
        );
    }
}
