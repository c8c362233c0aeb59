//! Settings of live ingest: the HTTP layer every poller shares, each upstream API, and the
//! operations server.

use serde::{Deserialize, Serialize};

use super::Secret;

type Problem = (&'static str, String);

/// The one HTTP layer every source goes through.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Timeout of one request, connect to last byte (ms).
    pub timeout_ms: u64,
    /// First retry delay (ms); each next one is `retry_factor` times longer, with jitter.
    pub retry_base_ms: u64,
    /// Growth of the retry delay.
    pub retry_factor: f32,
    /// Longest retry delay (ms).
    pub retry_max_ms: u64,
    /// Attempts per request, the first included.
    pub retry_attempts: usize,
    /// Consecutive failures after which an endpoint's breaker opens.
    pub circuit_breaker_failure_threshold: u32,
    /// How long an open breaker waits before letting one probe through (s).
    pub circuit_breaker_cooldown_secs: u64,
    /// While an endpoint fails, its last good response is served (marked stale) up to this
    /// age (s).
    pub max_stale_cache_age_secs: u64,
}

impl HttpConfig {
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        if self.timeout_ms == 0 {
            return Err(("timeout_ms", "must be at least 1".into()));
        }
        if self.retry_attempts == 0 {
            return Err((
                "retry_attempts",
                "must be at least 1 (the first attempt)".into(),
            ));
        }
        if !(self.retry_factor.is_finite() && self.retry_factor >= 1.0) {
            return Err((
                "retry_factor",
                format!("must be at least 1, got {}", self.retry_factor),
            ));
        }
        if self.retry_max_ms < self.retry_base_ms {
            return Err(("retry_max_ms", "must not be below retry_base_ms".into()));
        }
        if self.circuit_breaker_failure_threshold == 0 {
            return Err((
                "circuit_breaker_failure_threshold",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// DEX Screener: boost ranks and pair prices.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DexscreenerConfig {
    /// API root (the venue's `<url>/dexscreener` in tests).
    pub base_url: String,
    /// Optional API key (`DEX_SCREENER_API_KEY`); the public API needs none.
    #[serde(default)]
    pub api_key: Secret,
    /// How often `/token-boosts/top/v1` is polled (s).
    pub polling_interval_secs: u64,
    /// How often the tracked tokens' pairs are priced via `/tokens/v1/{chain}/{addresses}` (s).
    pub pairs_interval_secs: u64,
    /// Requests per minute on the boost/profile endpoints (DEX Screener allows 60).
    pub boosts_per_minute: u32,
    /// Requests per minute on the pair/token endpoints (DEX Screener allows 300).
    pub pairs_per_minute: u32,
    /// Trending ranks beyond this are not priced (the tracker keeps the top ranks).
    pub price_top_ranks: u32,
    /// A poll older than this means the source is stale (`/health` says so) (s).
    pub stale_after_secs: u64,
}

/// Birdeye: token prices, by `multi_price`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BirdeyeConfig {
    /// API root.
    pub base_url: String,
    /// API key (`BIRDEYE_API_KEY`), sent as `X-API-KEY`.
    #[serde(default)]
    pub api_key: Secret,
    /// Chain (`x-chain` header).
    pub chain: String,
    /// How often prices are fetched (s).
    pub poll_interval_secs: u64,
    /// Requests per second the account's tier allows.
    pub requests_per_second: u32,
    /// Addresses always priced, besides configured assets' tokens on `chain`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Also price the tokens currently trending on `chain`.
    pub include_trending: bool,
    /// A poll older than this means the source is stale (s).
    pub stale_after_secs: u64,
}

/// Pyth Hermes: the SSE stream, with REST polling while it is down.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HermesConfig {
    /// API root (Pyth's 2026 upgrade moved it; the venue's `<url>/hermes` in tests).
    pub base_url: String,
    /// Bearer token (`HERMES_API_KEY`).
    #[serde(default)]
    pub api_key: Secret,
    /// Feed ids to stream; empty means the debounce's feeds and the assets' feeds.
    #[serde(default)]
    pub feeds: Vec<String>,
    /// First reconnect delay (ms), doubling with jitter up to `reconnect_max_ms`.
    pub reconnect_initial_ms: u64,
    /// Longest reconnect delay (ms).
    pub reconnect_max_ms: u64,
    /// No event (or keep-alive) for this long means the stream is dead: reconnect (s).
    pub watchdog_secs: u64,
    /// While the stream is down, `/v2/updates/price/latest` is polled this often (ms).
    pub fallback_poll_ms: u64,
    /// Requests per 10 s (the public endpoint allows 30, then refuses for 60 s).
    pub requests_per_10s: u32,
    /// No price for this long means the source is stale (s).
    pub stale_after_secs: u64,
}

/// Live sources in general.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// A live source advances its watermark with the clock this often, so timers fire in
    /// silence (ms).
    pub watermark_interval_ms: u64,
}

/// The operations server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Listen address (loopback by default).
    pub listen: String,
    /// Trending tokens listed on `/status`.
    pub status_top: usize,
}

impl DexscreenerConfig {
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        check_url("base_url", &self.base_url)?;
        if self.polling_interval_secs == 0 || self.pairs_interval_secs == 0 {
            return Err((
                "polling_interval_secs",
                "intervals must be at least 1 s".into(),
            ));
        }
        if self.boosts_per_minute == 0 || self.pairs_per_minute == 0 {
            return Err(("boosts_per_minute", "rate limits must be at least 1".into()));
        }
        Ok(())
    }
}

impl BirdeyeConfig {
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        check_url("base_url", &self.base_url)?;
        if self.poll_interval_secs == 0 {
            return Err(("poll_interval_secs", "must be at least 1".into()));
        }
        if self.requests_per_second == 0 {
            return Err(("requests_per_second", "must be at least 1".into()));
        }
        Ok(())
    }
}

impl HermesConfig {
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        check_url("base_url", &self.base_url)?;
        if self.requests_per_10s == 0 {
            return Err(("requests_per_10s", "must be at least 1".into()));
        }
        if self.fallback_poll_ms == 0 || self.watchdog_secs == 0 {
            return Err((
                "fallback_poll_ms",
                "fallback_poll_ms and watchdog_secs must be positive".into(),
            ));
        }
        for feed in &self.feeds {
            feed.parse::<crate::model::FeedId>()
                .map_err(|e| ("feeds", e.to_string()))?;
        }
        Ok(())
    }
}

impl ServeConfig {
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map(|_| ())
            .map_err(|e| {
                (
                    "listen",
                    format!("{:?} is not host:port ({e})", self.listen),
                )
            })
    }
}

fn check_url(key: &'static str, url: &str) -> Result<(), Problem> {
    let ok = (url.starts_with("http://") || url.starts_with("https://")) && !url.ends_with('/');
    if ok {
        Ok(())
    } else {
        Err((
            key,
            format!("{url:?} must be an http(s) URL without a trailing slash"),
        ))
    }
}
