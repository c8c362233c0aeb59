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

/// A Birdeye account tier (docs.birdeye.so, rate limiting): the per-account limits it
/// allows, used as the defaults of `birdeye.requests_per_second` and
/// `birdeye.requests_per_minute`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BirdeyeTier {
    /// Free: 1 request per second.
    #[default]
    Standard,
    /// 15 requests per second.
    Starter,
    /// 50 requests per second, 1000 per minute.
    Premium,
    /// 100 requests per second, 1500 per minute.
    Business,
    /// Custom limits: `requests_per_second` must be set.
    Enterprise,
}

impl BirdeyeTier {
    /// The tier's (requests per second, requests per minute); `None` where it has no such
    /// limit, or sets none of its own (enterprise).
    pub fn limits(self) -> (Option<u32>, Option<u32>) {
        match self {
            BirdeyeTier::Standard => (Some(1), None),
            BirdeyeTier::Starter => (Some(15), None),
            BirdeyeTier::Premium => (Some(50), Some(1000)),
            BirdeyeTier::Business => (Some(100), Some(1500)),
            BirdeyeTier::Enterprise => (None, None),
        }
    }
}

/// `[birdeye]` as written: the rate limits may be left to the tier.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BirdeyeConfigFile {
    base_url: String,
    #[serde(default)]
    api_key: Secret,
    chain: String,
    poll_interval_secs: u64,
    #[serde(default)]
    tier: BirdeyeTier,
    requests_per_second: Option<u32>,
    requests_per_minute: Option<u32>,
    #[serde(default)]
    addresses: Vec<String>,
    include_trending: bool,
    stale_after_secs: u64,
}

impl TryFrom<BirdeyeConfigFile> for BirdeyeConfig {
    type Error = String;

    fn try_from(file: BirdeyeConfigFile) -> Result<Self, String> {
        let (tier_rps, tier_rpm) = file.tier.limits();
        // An explicit limit wins over the tier's (an account with a negotiated limit, or a
        // deliberately lower pace to save compute units).
        let requests_per_second = file.requests_per_second.or(tier_rps).ok_or_else(|| {
            format!(
                "birdeye.tier = {:?} has no preset limits: set birdeye.requests_per_second",
                file.tier
            )
        })?;
        Ok(BirdeyeConfig {
            base_url: file.base_url,
            api_key: file.api_key,
            chain: file.chain,
            poll_interval_secs: file.poll_interval_secs,
            tier: file.tier,
            requests_per_second,
            requests_per_minute: file.requests_per_minute.or(tier_rpm),
            addresses: file.addresses,
            include_trending: file.include_trending,
            stale_after_secs: file.stale_after_secs,
        })
    }
}

/// Birdeye: token prices, by `multi_price`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "BirdeyeConfigFile")]
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
    /// The account's tier: the default of the two limits below.
    pub tier: BirdeyeTier,
    /// Requests per second the account allows (default: the tier's).
    pub requests_per_second: u32,
    /// Requests per minute the account allows, if the tier caps them (default: the tier's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
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
        if self.requests_per_minute == Some(0) {
            return Err(("requests_per_minute", "must be at least 1".into()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use figment::value::Value;

    fn birdeye(overrides: &[(&str, Value)]) -> Result<BirdeyeConfig, String> {
        Config::load(None, overrides)
            .map(|config| config.birdeye)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_tier_presets_the_birdeye_limits_and_explicit_ones_win() {
        let default = birdeye(&[]).unwrap();
        assert_eq!(default.tier, BirdeyeTier::Standard);
        assert_eq!(
            (default.requests_per_second, default.requests_per_minute),
            (1, None)
        );

        let premium = birdeye(&[("birdeye.tier", "premium".into())]).unwrap();
        assert_eq!(
            (premium.requests_per_second, premium.requests_per_minute),
            (50, Some(1000))
        );
        let business = birdeye(&[("birdeye.tier", "business".into())]).unwrap();
        assert_eq!(
            (business.requests_per_second, business.requests_per_minute),
            (100, Some(1500))
        );
        let starter = birdeye(&[("birdeye.tier", "starter".into())]).unwrap();
        assert_eq!(
            (starter.requests_per_second, starter.requests_per_minute),
            (15, None)
        );

        let overridden = birdeye(&[
            ("birdeye.tier", "premium".into()),
            ("birdeye.requests_per_second", 20u64.into()),
        ])
        .unwrap();
        assert_eq!(
            (
                overridden.requests_per_second,
                overridden.requests_per_minute
            ),
            (20, Some(1000))
        );

        let error = birdeye(&[("birdeye.tier", "enterprise".into())]).unwrap_err();
        assert!(error.contains("requests_per_second"), "{error}");
        let custom = birdeye(&[
            ("birdeye.tier", "enterprise".into()),
            ("birdeye.requests_per_second", 500u64.into()),
            ("birdeye.requests_per_minute", 20000u64.into()),
        ])
        .unwrap();
        assert_eq!(
            (custom.requests_per_second, custom.requests_per_minute),
            (500, Some(20000))
        );
        assert!(birdeye(&[("birdeye.tier", "platinum".into())]).is_err());
        assert!(birdeye(&[("birdeye.requests_per_minute", 0u64.into())]).is_err());
    }
}
