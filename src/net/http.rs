//! The HTTP layer every source goes through: per-provider rate limits with priority classes,
//! a provider-wide pause after a 429, jittered exponential retries that honour `Retry-After`,
//! a circuit breaker per endpoint, a request timeout, and a stale-cache fallback in sled.
//!
//! One [`Api`] per provider (DEX Screener, Birdeye, Hermes). A call names its endpoint (the
//! key of its breaker, metrics and cache), its rate-limit bucket, its path and query, and its
//! priority:
//!
//! ```no_run
//! # async fn demo(api: sluice::net::http::Api) -> Result<(), sluice::net::http::FetchError> {
//! use sluice::net::http::{Call, Priority};
//! let boosts = api
//!     .get(Call::new("dexscreener_boosts", "boosts", "/token-boosts/top/v1").priority(Priority::High))
//!     .await?;
//! if let Some(age) = boosts.stale {
//!     // The upstream is failing: this is the last good list, `age` old. Not a new snapshot.
//!     let _ = age;
//! }
//! # Ok(()) }
//! ```
//!
//! A call marked [`Call::json`] has its 2xx body checked for JSON syntax: one that is not (a
//! proxy's error page, a cut body) is the `decode` outcome, a failure for the breaker, and is
//! never cached, yet it is still returned (see [`Fetched::malformed`]) so that the dataflow
//! reports it as invalid input and a replay sees exactly what the live run saw.
//!
//! What is printed anywhere (errors, logs, metric labels, status) names the provider and the
//! endpoint, never the URL: API keys travel only in headers built from [`Secret`]s, and every
//! detail text is cleaned of those values and of URL queries.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;

use super::breaker::{Breaker, BreakerState};
use super::cache::{CachedResponse, StaleCache, cache_key};
use super::error::Redactor;
use super::limiter::{Bucket, Pause, Refused};
use super::retry_after::parse_retry_after;
use crate::config::{HttpConfig, Secret};
use crate::store::Store;

pub use super::error::{ErrorCategory, FetchError};
pub use super::limiter::{Priority, RateLimit};

/// How much of an error response's body is read into the error detail (before cleaning and
/// shortening).
const ERROR_BODY_PREFIX: usize = 512;

/// The window of the request rate on the status page.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// One upstream provider.
#[derive(Clone, Debug)]
pub struct ProviderSpec {
    /// `dexscreener`, `birdeye` or `hermes`: the `source` label of the metrics.
    pub name: &'static str,
    /// API root without a trailing slash; a call's path is appended to it.
    pub base_url: String,
    /// Named rate-limit buckets, each with its own limit (DEX Screener: `boosts` 60/min and
    /// `pairs` 300/min). Every call names one.
    pub buckets: Vec<(&'static str, RateLimit)>,
    /// Headers carrying secrets, sent on every request: (`X-API-KEY`, key) or
    /// (`Authorization`, `Bearer <token>`, see [`ProviderSpec::bearer`]). Empty secrets are
    /// not sent.
    pub headers: Vec<(String, Secret)>,
    /// How long the whole provider pauses after a 429 without `Retry-After` (Hermes refuses
    /// for 60 s after its limit is exceeded; DEX Screener sends no header).
    pub default_pause_on_429: Duration,
}

impl ProviderSpec {
    /// The value of an `Authorization` header for a bearer `token` (empty when the token is).
    pub fn bearer(token: &Secret) -> Secret {
        if token.is_empty() {
            Secret::default()
        } else {
            Secret::new(format!("Bearer {}", token.expose()))
        }
    }
}

/// The layer's settings as durations; [`HttpConfig`] converts into it. Tests use it directly
/// for millisecond breaker cooldowns and cache ages.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSettings {
    /// Timeout of one request, connect to last byte.
    pub timeout: Duration,
    /// First retry delay (before jitter).
    pub retry_base: Duration,
    /// Growth of the retry delay per retry.
    pub retry_factor: f32,
    /// Longest retry delay; also the longest `Retry-After` or provider pause a call waits
    /// out — beyond it the call fails (and falls back to the stale cache) instead.
    pub retry_max: Duration,
    /// Attempts per call, the first included.
    pub retry_attempts: usize,
    /// Consecutive failed calls that open an endpoint's breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker refuses calls before one probe.
    pub breaker_cooldown: Duration,
    /// The oldest cached response still served as stale.
    pub max_stale_age: Duration,
}

impl From<&HttpConfig> for HttpSettings {
    fn from(config: &HttpConfig) -> Self {
        HttpSettings {
            timeout: Duration::from_millis(config.timeout_ms),
            retry_base: Duration::from_millis(config.retry_base_ms),
            retry_factor: config.retry_factor,
            retry_max: Duration::from_millis(config.retry_max_ms),
            retry_attempts: config.retry_attempts,
            breaker_threshold: config.circuit_breaker_failure_threshold,
            breaker_cooldown: Duration::from_secs(config.circuit_breaker_cooldown_secs),
            max_stale_age: Duration::from_secs(config.max_stale_cache_age_secs),
        }
    }
}

impl HttpSettings {
    fn check(&self) -> Result<(), SetupError> {
        let problem = if self.timeout.is_zero() {
            "timeout must be positive"
        } else if self.retry_attempts == 0 {
            "retry_attempts must be at least 1 (the first attempt)"
        } else if !(self.retry_factor.is_finite() && self.retry_factor >= 1.0) {
            "retry_factor must be at least 1"
        } else if self.retry_max < self.retry_base {
            "retry_max must not be below retry_base"
        } else if self.breaker_threshold == 0 {
            "breaker_threshold must be at least 1"
        } else {
            return Ok(());
        };
        Err(SetupError(problem.into()))
    }
}

/// One call: which endpoint, through which bucket, what path, how urgent.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// The endpoint's name, e.g. `dexscreener_boosts`: the key of its breaker, metrics and
    /// cache. Make it unique across providers (the breaker metrics carry only this label).
    pub endpoint: &'a str,
    /// The rate-limit bucket (one of the provider's).
    pub bucket: &'a str,
    /// Path and query after the base URL, starting with `/`. Never put a key in it.
    pub path: &'a str,
    /// Extra headers that are not secret (`x-chain`, `accept`).
    pub headers: &'a [(&'a str, &'a str)],
    /// Its class in the rate limiter's queue.
    pub priority: Priority,
    /// Whether a failed call may be answered from the stale cache (and whether a good
    /// response is stored for that).
    pub use_stale: bool,
    /// Whether a 2xx body must be JSON. One that is not is a `decode` outcome: a failure for
    /// the breaker, never cached, yet still handed to the caller (see [`Fetched::malformed`]).
    pub expect_json: bool,
}

impl<'a> Call<'a> {
    /// A call at [`Priority::Medium`], with no extra headers, that may be answered stale.
    pub fn new(endpoint: &'a str, bucket: &'a str, path: &'a str) -> Self {
        Call {
            endpoint,
            bucket,
            path,
            headers: &[],
            priority: Priority::Medium,
            use_stale: true,
            // Off unless asked: the layer itself does not know what an endpoint answers.
            expect_json: false,
        }
    }

    /// The same call at `priority`.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// The same call with these non-secret headers.
    pub fn headers(mut self, headers: &'a [(&'a str, &'a str)]) -> Self {
        self.headers = headers;
        self
    }

    /// The same call, with or without the stale-cache fallback.
    pub fn use_stale(mut self, use_stale: bool) -> Self {
        self.use_stale = use_stale;
        self
    }

    /// The same call, checking (or not) that a 2xx body is JSON.
    pub fn json(mut self, expect_json: bool) -> Self {
        self.expect_json = expect_json;
        self
    }
}

/// A response: fresh, or the last good one served from the cache.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The body as received.
    pub body: Bytes,
    /// The HTTP status (2xx).
    pub status: u16,
    /// When the body was received (ms since the epoch); for a stale body, when it was
    /// originally received.
    pub received_ms: u64,
    /// `Some(age)` when this is a cached body served because the call failed: callers must
    /// not treat it as new data (a stale boost list is no new trending snapshot).
    pub stale: Option<Duration>,
    /// Why the cache was used, when it was.
    pub stale_cause: Option<ErrorCategory>,
    /// The provider.
    pub provider: &'static str,
    /// The endpoint name of the call.
    pub endpoint: String,
    /// Set when the call expected JSON and this fresh body is not: the `decode` error. The
    /// body is still here because it is what the upstream said, and the dataflow reports it
    /// as invalid input (so live and replay agree, and nothing received is lost); it was not
    /// cached and it counted as a failure for the endpoint's breaker.
    pub malformed: Option<FetchError>,
}

impl Fetched {
    /// True when served from the stale cache.
    pub fn is_stale(&self) -> bool {
        self.stale.is_some()
    }

    /// True when the call expected JSON and the body is not.
    pub fn is_malformed(&self) -> bool {
        self.malformed.is_some()
    }

    /// The body as JSON; a failure is a [`ErrorCategory::Decode`] error.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, FetchError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| FetchError::decode(self.provider, &self.endpoint, &e.to_string()))
    }

    /// This response if fresh; a stale one becomes an [`ErrorCategory::Stale`] error, for
    /// callers that must not use old data.
    pub fn require_fresh(self) -> Result<Fetched, FetchError> {
        match self.stale {
            None => Ok(self),
            Some(age) => Err(FetchError::new(
                self.provider,
                &self.endpoint,
                ErrorCategory::Stale,
                &format!("only a cached response {} ms old", age.as_millis()),
            )),
        }
    }
}

/// A provider that cannot be set up (bad URL, bucket, header or setting). Never shows a
/// secret.
#[derive(Debug)]
pub struct SetupError(String);

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http layer setup: {}", self.0)
    }
}

impl std::error::Error for SetupError {}

/// The status of one provider, for the operations page.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderStatus {
    /// The provider.
    pub source: &'static str,
    /// How long the provider stays paused after a 429 (ms), if it is.
    pub paused_for_ms: Option<u64>,
    /// Requests sent in the last minute.
    pub requests_last_minute: usize,
    /// The same, per second.
    pub requests_per_second: f64,
    /// The rate-limit buckets.
    pub buckets: Vec<BucketStatus>,
    /// Every endpoint called so far, by name.
    pub endpoints: Vec<EndpointStatus>,
}

/// One rate-limit bucket.
#[derive(Clone, Debug, Serialize)]
pub struct BucketStatus {
    /// Its name.
    pub name: &'static str,
    /// Requests allowed per window.
    pub requests: u32,
    /// The window (ms).
    pub per_ms: u64,
    /// Requests waiting for a permit.
    pub queued: usize,
}

/// One endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointStatus {
    /// Its name.
    pub endpoint: String,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    /// Failed calls in a row.
    pub consecutive_failures: u32,
    /// Failed calls so far.
    pub failures_total: u64,
    /// Successful calls / calls that counted for the breaker.
    pub success_ratio: f64,
    /// When an open breaker lets a probe through (ms from now).
    pub probe_in_ms: Option<u64>,
    /// The last success (ms since the epoch).
    pub last_success_ms: Option<u64>,
    /// The category of the last failed call.
    pub last_error: Option<ErrorCategory>,
    /// When it failed (ms since the epoch).
    pub last_error_ms: Option<u64>,
    /// Age of the newest cached good response (ms), if one is stored.
    pub cache_age_ms: Option<u64>,
    /// True when the last call was answered from the stale cache.
    pub serving_stale: bool,
}

/// The HTTP client of one provider. Cheap to clone (all clones share limits, breakers and
/// cache); `Send + Sync`.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    provider: &'static str,
    base_url: String,
    client: reqwest::Client,
    redactor: Redactor,
    settings: HttpSettings,
    default_pause: Duration,
    buckets: HashMap<&'static str, Arc<Bucket>>,
    /// Bucket names in configuration order, for the status page.
    bucket_order: Vec<&'static str>,
    pause: Arc<Pause>,
    endpoints: Mutex<BTreeMap<String, Arc<Mutex<EndpointState>>>>,
    cache: Option<StaleCache>,
    sent_at: Mutex<VecDeque<Instant>>,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the name: the headers hold secrets, the base URL may hold anything.
        f.debug_struct("Api")
            .field("provider", &self.inner.provider)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The dispatchers hold their bucket, not the Api: tell them to stop.
        for bucket in self.buckets.values() {
            bucket.close();
        }
    }
}

struct EndpointState {
    breaker: Breaker,
    last_success_ms: Option<u64>,
    last_error: Option<ErrorCategory>,
    last_error_ms: Option<u64>,
    cache_newest_ms: Option<u64>,
    last_prune: Option<Instant>,
    serving_stale: bool,
}

/// A call checked and ready to send.
struct Prepared<'a> {
    endpoint: &'a str,
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Bytes>,
    bucket: Arc<Bucket>,
    priority: Priority,
    expect_json: bool,
}

/// A fresh response.
struct Fresh {
    status: u16,
    body: Bytes,
    received_ms: u64,
    /// The body should have been JSON and is not.
    malformed: Option<FetchError>,
}

impl Api {
    /// A client for `spec` with the settings of `http`; `cache` enables the stale-cache
    /// fallback. Installs rustls' `ring` provider as the process default if none is.
    pub fn new(
        spec: ProviderSpec,
        http: &HttpConfig,
        cache: Option<Store>,
    ) -> Result<Api, SetupError> {
        Self::with_settings(spec, HttpSettings::from(http), cache)
    }

    /// The same with settings given as durations.
    pub fn with_settings(
        spec: ProviderSpec,
        settings: HttpSettings,
        cache: Option<Store>,
    ) -> Result<Api, SetupError> {
        settings.check()?;
        let base_url = spec.base_url.trim_end_matches('/').to_owned();
        Url::parse(&base_url).map_err(|e| SetupError(format!("{} base_url: {e}", spec.name)))?;
        if spec.buckets.is_empty() {
            return Err(SetupError(format!(
                "{} has no rate-limit bucket",
                spec.name
            )));
        }
        let mut buckets = HashMap::new();
        let mut bucket_order = Vec::new();
        for (name, limit) in &spec.buckets {
            let bucket = Bucket::new(*limit).ok_or_else(|| {
                SetupError(format!(
                    "{} bucket {name}: {limit:?} is not a usable rate",
                    spec.name
                ))
            })?;
            if buckets.insert(*name, Arc::new(bucket)).is_some() {
                return Err(SetupError(format!(
                    "{} bucket {name} is defined twice",
                    spec.name
                )));
            }
            bucket_order.push(*name);
        }
        let mut secret_headers = HeaderMap::new();
        for (name, secret) in &spec.headers {
            if secret.is_empty() {
                continue;
            }
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                SetupError(format!("{} header name {name:?} is invalid", spec.name))
            })?;
            // The message must not quote the value: it is the secret.
            let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
                SetupError(format!("{} header {name} has an invalid value", spec.name))
            })?;
            // Keeps the value out of hyper's and reqwest's Debug output.
            value.set_sensitive(true);
            secret_headers.insert(header, value);
        }
        let redactor = Redactor::new(spec.headers.iter().map(|(_, s)| s.expose()));

        // reqwest is built with `rustls-no-provider`: it needs a process-wide provider. An
        // error only means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            // A redirect could carry the key headers to another host; the APIs never redirect.
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(secret_headers)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                SetupError(format!(
                    "{} client: {}",
                    spec.name,
                    redactor.clean(&root_cause(&e))
                ))
            })?;

        Ok(Api {
            inner: Arc::new(Inner {
                provider: spec.name,
                base_url,
                client,
                redactor,
                settings,
                default_pause: spec.default_pause_on_429,
                buckets,
                bucket_order,
                pause: Arc::new(Pause::new()),
                endpoints: Mutex::new(BTreeMap::new()),
                cache: cache.map(StaleCache::new),
                sent_at: Mutex::new(VecDeque::new()),
            }),
        })
    }

    /// The provider's name.
    pub fn provider(&self) -> &'static str {
        self.inner.provider
    }

    /// `GET base_url + call.path`.
    pub async fn get(&self, call: Call<'_>) -> Result<Fetched, FetchError> {
        self.execute(Method::GET, &call, None).await
    }

    /// `POST base_url + call.path` with a JSON body (Birdeye's `multi_price`). The stale
    /// cache keys it by path and body.
    pub async fn post_json(
        &self,
        call: Call<'_>,
        body: &serde_json::Value,
    ) -> Result<Fetched, FetchError> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            FetchError::new(
                self.inner.provider,
                call.endpoint,
                ErrorCategory::Request,
                &e.to_string(),
            )
        })?;
        self.execute(Method::POST, &call, Some(Bytes::from(bytes)))
            .await
    }

    /// A bare rate-limit permit from `bucket`, for requests made outside this layer (the
    /// Hermes SSE connect). Waits out any provider pause; returns how long it waited.
    pub async fn permit(&self, bucket: &str, priority: Priority) -> Result<Duration, FetchError> {
        let inner = &self.inner;
        let limiter = inner.bucket(bucket, "permit")?;
        let waited = limiter
            .acquire(&inner.pause, priority, None)
            .await
            .map_err(|refused| inner.refusal_error("permit", refused))?;
        inner.note_sent(waited);
        Ok(waited)
    }

    /// Reports a 429 seen outside this layer (the SSE connect): the whole provider pauses for
    /// `retry_after`, or the default pause. Returns the pause applied.
    pub fn note_rate_limited(&self, retry_after: Option<Duration>) -> Duration {
        let wait = retry_after.unwrap_or(self.inner.default_pause);
        self.inner.pause.extend_to(Instant::now() + wait);
        wait
    }

    /// The request timeout, for connections made outside this layer (the SSE connect).
    pub fn timeout(&self) -> Duration {
        self.inner.settings.timeout
    }

    /// Counts a request made outside this layer (the SSE connect) in `http_requests_total`
    /// and, when `duration` is known, `http_request_duration_seconds`, under `endpoint` with
    /// `outcome` (`ok`, or an [`ErrorCategory`] name).
    pub fn note_outcome(&self, endpoint: &str, outcome: &'static str, duration: Option<Duration>) {
        self.inner.count_attempt(endpoint, outcome, duration);
    }

    /// How long the provider stays paused after a 429, if it is.
    pub fn paused_for(&self) -> Option<Duration> {
        self.inner.pause.remaining(Instant::now())
    }

    /// The provider's status: pause, request rate, buckets, and per endpoint the breaker,
    /// last success, last error and stale cache.
    pub fn status(&self) -> ProviderStatus {
        let inner = &self.inner;
        let now = Instant::now();
        let now_ms = now_ms();
        let requests_last_minute = {
            let mut sent = lock(&inner.sent_at);
            prune_window(&mut sent, now);
            sent.len()
        };
        let buckets = inner
            .bucket_order
            .iter()
            .filter_map(|name| {
                let bucket = inner.buckets.get(name)?;
                let limit = bucket.limit();
                Some(BucketStatus {
                    name,
                    requests: limit.requests,
                    per_ms: millis(limit.per),
                    queued: bucket.queued(),
                })
            })
            .collect();
        let endpoints: Vec<(String, Arc<Mutex<EndpointState>>)> = lock(&inner.endpoints)
            .iter()
            .map(|(name, state)| (name.clone(), Arc::clone(state)))
            .collect();
        let endpoints = endpoints
            .into_iter()
            .map(|(endpoint, state)| {
                let state = lock(&state);
                EndpointStatus {
                    endpoint,
                    breaker: state.breaker.state().name(),
                    consecutive_failures: state.breaker.consecutive_failures(),
                    failures_total: state.breaker.failures(),
                    success_ratio: state.breaker.success_ratio(),
                    probe_in_ms: state.breaker.retry_in(now).map(millis),
                    last_success_ms: state.last_success_ms,
                    last_error: state.last_error,
                    last_error_ms: state.last_error_ms,
                    cache_age_ms: state.cache_newest_ms.map(|at| now_ms.saturating_sub(at)),
                    serving_stale: state.serving_stale,
                }
            })
            .collect();
        ProviderStatus {
            source: inner.provider,
            paused_for_ms: inner.pause.remaining(now).map(millis),
            requests_last_minute,
            requests_per_second: requests_last_minute as f64 / RATE_WINDOW.as_secs_f64(),
            buckets,
            endpoints,
        }
    }

    /// A call with breaker, retries and stale fallback around it.
    async fn execute(
        &self,
        method: Method,
        call: &Call<'_>,
        body: Option<Bytes>,
    ) -> Result<Fetched, FetchError> {
        let inner = &self.inner;
        let key = cache_key(call.endpoint, call.path, body.as_deref());
        let state = inner.endpoint(call.endpoint);
        let result = match inner.prepare(method, call, body) {
            Ok(prepared) => self.call_upstream(&state, &prepared).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(fresh) => {
                match &fresh.malformed {
                    Some(error) => inner.on_malformed(&state, call, error),
                    None => inner.on_fresh(&state, call, &key, &fresh),
                }
                Ok(Fetched {
                    body: fresh.body,
                    status: fresh.status,
                    received_ms: fresh.received_ms,
                    stale: None,
                    stale_cause: None,
                    provider: inner.provider,
                    endpoint: call.endpoint.to_owned(),
                    malformed: fresh.malformed,
                })
            }
            Err(error) => inner.on_failed(&state, call, &key, error),
        }
    }

    /// The upstream part of a call: the long-pause check, the breaker, then the attempts.
    async fn call_upstream(
        &self,
        state: &Mutex<EndpointState>,
        prepared: &Prepared<'_>,
    ) -> Result<Fresh, FetchError> {
        let inner = &self.inner;
        let settings = &inner.settings;
        let endpoint = prepared.endpoint;
        let now = Instant::now();

        // Checked before the breaker so a paused provider never uses up a half-open probe.
        if let Some(left) = inner
            .pause
            .remaining(now)
            .filter(|left| *left > settings.retry_max)
        {
            let error = inner.refusal_error(endpoint, Refused::Paused(left));
            inner.count_attempt(endpoint, error.category().name(), None);
            return Err(error);
        }

        let probe = {
            let mut state = lock(state);
            let before = state.breaker.state();
            let allowed = state.breaker.allow(now);
            publish_breaker(endpoint, &state.breaker);
            log_transition(inner.provider, endpoint, before, state.breaker.state());
            if !allowed {
                let error = FetchError::new(
                    inner.provider,
                    endpoint,
                    ErrorCategory::BreakerOpen,
                    "circuit breaker open",
                )
                .with_retry_after(state.breaker.retry_in(now));
                drop(state);
                inner.count_attempt(endpoint, error.category().name(), None);
                return Err(error);
            }
            state.breaker.state() == BreakerState::HalfOpen
        };
        let mut probe_guard = ProbeGuard {
            state,
            endpoint,
            armed: probe,
        };

        // A half-open probe is one request: it asks whether the endpoint is back, and
        // retrying a failing one is what the breaker exists to stop.
        let attempts = if probe { 1 } else { settings.retry_attempts };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(settings.retry_base)
            .with_max_delay(settings.retry_max)
            .with_factor(settings.retry_factor)
            .with_max_times(attempts.saturating_sub(1))
            .with_jitter();
        let sent = AtomicBool::new(false);
        let result = (|| inner.attempt(prepared, &sent))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|error: &FetchError| error.category().is_retryable())
            .adjust(|error: &FetchError, delay| retry_delay(error, delay, settings.retry_max))
            .notify(|error: &FetchError, delay: Duration| {
                metrics::counter!(
                    "http_retries_total",
                    "source" => inner.provider,
                    "endpoint" => endpoint.to_owned()
                )
                .increment(1);
                tracing::debug!(
                    source = inner.provider,
                    endpoint,
                    category = error.category().name(),
                    delay_ms = millis(delay),
                    "retrying: {error}"
                );
            })
            .await;
        probe_guard.armed = false;

        let mut state = lock(state);
        let before = state.breaker.state();
        let was_sent = sent.load(AtomicOrdering::SeqCst);
        match &result {
            // The upstream answered 2xx with a body that is not what the endpoint serves (a
            // proxy's error page, a cut body): the endpoint is not working.
            Ok(fresh) if fresh.malformed.is_some() => {
                state.breaker.on_failure(Instant::now());
                count_breaker_failure(endpoint);
            }
            Ok(_) => state.breaker.on_success(),
            // The upstream is in trouble (or refuses us): one failed call, one failure.
            Err(error) if was_sent && error.category().is_retryable() => {
                state.breaker.on_failure(Instant::now());
                count_breaker_failure(endpoint);
            }
            // Nothing was sent (refused by a pause that began meanwhile): no evidence either
            // way, but a probe must end, and reopening is the cautious end.
            Err(_) if !was_sent => {
                if probe {
                    state.breaker.on_failure(Instant::now());
                    count_breaker_failure(endpoint);
                }
            }
            // A 4xx: the upstream is up and answering; the request is what is wrong. It
            // does not count against the endpoint, and it ends a probe as a success.
            Err(_) => {
                if probe {
                    state.breaker.on_success();
                }
            }
        }
        publish_breaker(endpoint, &state.breaker);
        log_transition(inner.provider, endpoint, before, state.breaker.state());
        result
    }
}

impl Inner {
    fn bucket(&self, name: &str, endpoint: &str) -> Result<Arc<Bucket>, FetchError> {
        self.buckets.get(name).cloned().ok_or_else(|| {
            FetchError::new(
                self.provider,
                endpoint,
                ErrorCategory::Request,
                &format!("no rate-limit bucket named {name:?}"),
            )
        })
    }

    /// The state of `endpoint`, created on first use (with the age of anything cached for it
    /// by an earlier run).
    fn endpoint(&self, endpoint: &str) -> Arc<Mutex<EndpointState>> {
        let mut endpoints = lock(&self.endpoints);
        if let Some(state) = endpoints.get(endpoint) {
            return Arc::clone(state);
        }
        let cache_newest_ms = self
            .cache
            .as_ref()
            .and_then(|cache| cache.newest_received_ms(endpoint).ok().flatten());
        let breaker = Breaker::new(
            self.settings.breaker_threshold,
            self.settings.breaker_cooldown,
        );
        publish_breaker(endpoint, &breaker);
        // Registered at zero so the series exists (and rates work) before the first failure.
        metrics::counter!("circuit_breaker_failures_total", "endpoint" => endpoint.to_owned())
            .increment(0);
        let state = Arc::new(Mutex::new(EndpointState {
            breaker,
            last_success_ms: None,
            last_error: None,
            last_error_ms: None,
            cache_newest_ms,
            last_prune: None,
            serving_stale: false,
        }));
        endpoints.insert(endpoint.to_owned(), Arc::clone(&state));
        state
    }

    /// Checks what can be checked before anything is counted: bucket, path, headers.
    fn prepare<'a>(
        &self,
        method: Method,
        call: &Call<'a>,
        body: Option<Bytes>,
    ) -> Result<Prepared<'a>, FetchError> {
        let request_error = |detail: &str| {
            FetchError::new(self.provider, call.endpoint, ErrorCategory::Request, detail)
        };
        let bucket = self.bucket(call.bucket, call.endpoint)?;
        if !call.path.starts_with('/') {
            return Err(request_error("the path must start with '/'"));
        }
        let url = Url::parse(&format!("{}{}", self.base_url, call.path))
            .map_err(|e| request_error(&format!("invalid path: {e}")))?;
        let mut headers = HeaderMap::new();
        for (name, value) in call.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| request_error(&format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| request_error(&format!("invalid value for header {name}")))?;
            headers.insert(header, value);
        }
        if body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Ok(Prepared {
            endpoint: call.endpoint,
            method,
            url,
            headers,
            body,
            bucket,
            priority: call.priority,
            expect_json: call.expect_json,
        })
    }

    /// One attempt: a permit, one request, its outcome in metrics.
    async fn attempt(
        &self,
        prepared: &Prepared<'_>,
        sent: &AtomicBool,
    ) -> Result<Fresh, FetchError> {
        let endpoint = prepared.endpoint;
        let waited = match prepared
            .bucket
            .acquire(
                &self.pause,
                prepared.priority,
                Some(self.settings.retry_max),
            )
            .await
        {
            Ok(waited) => waited,
            Err(refused) => {
                let error = self.refusal_error(endpoint, refused);
                self.count_attempt(endpoint, error.category().name(), None);
                return Err(error);
            }
        };
        self.note_sent(waited);
        sent.store(true, AtomicOrdering::SeqCst);

        let started = Instant::now();
        let mut request = self
            .client
            .request(prepared.method.clone(), prepared.url.clone())
            .headers(prepared.headers.clone());
        if let Some(body) = &prepared.body {
            request = request.body(body.clone());
        }
        let mut outcome = match request.send().await {
            Ok(response) => self.read_response(endpoint, response).await,
            Err(error) => Err(self.transport_error(endpoint, &error)),
        };
        if let Ok(fresh) = &mut outcome
            && prepared.expect_json
        {
            fresh.malformed = self.check_json(endpoint, fresh);
        }
        // A malformed body is not retried: it is handed over as it came, so the dataflow
        // sees what the upstream said, and the next poll asks again anyway.
        let label = match &outcome {
            Ok(fresh) if fresh.malformed.is_some() => ErrorCategory::Decode.name(),
            Ok(_) => "ok",
            Err(error) => error.category().name(),
        };
        self.count_attempt(endpoint, label, Some(started.elapsed()));
        outcome
    }

    /// A response: a good body, or the error its status means (a 429 also pauses the
    /// provider).
    async fn read_response(
        &self,
        endpoint: &str,
        response: reqwest::Response,
    ) -> Result<Fresh, FetchError> {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        if status.is_success() {
            let body = response
                .bytes()
                .await
                .map_err(|error| self.transport_error(endpoint, &error))?;
            return Ok(Fresh {
                status: status.as_u16(),
                body,
                received_ms: now_ms(),
                malformed: None,
            });
        }
        // The error body often says why (Birdeye: `{"success":false,"message":…}`); it is
        // cleaned because an upstream may echo what it was sent.
        let body = response.bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(body.get(..ERROR_BODY_PREFIX).unwrap_or(&body));
        let snippet = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let error = |category, detail: String| {
            FetchError::new(self.provider, endpoint, category, "")
                .with_status(status.as_u16())
                .with_clean_detail(self.redactor.clean(&detail))
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            let (wait, why) = match retry_after {
                Some(wait) => (wait, "Retry-After"),
                None => (self.default_pause, "no Retry-After, default pause"),
            };
            self.pause.extend_to(Instant::now() + wait);
            tracing::warn!(
                source = self.provider,
                endpoint,
                pause_ms = millis(wait),
                "429: pausing the provider ({why})"
            );
            let detail = if snippet.is_empty() {
                why.to_owned()
            } else {
                format!("{why}; {snippet}")
            };
            return Err(error(ErrorCategory::RateLimited, detail).with_retry_after(Some(wait)));
        }
        if status.is_server_error() {
            return Err(error(ErrorCategory::Http5xx, snippet).with_retry_after(retry_after));
        }
        let detail = if status.is_redirection() {
            "redirect not followed".to_owned()
        } else {
            snippet
        };
        Err(error(ErrorCategory::Http4xx, detail))
    }

    /// The `decode` error of a body that should be JSON and is not. Only syntax is checked
    /// (`IgnoredAny` allocates nothing): the shape is the parser's business downstream.
    fn check_json(&self, endpoint: &str, fresh: &Fresh) -> Option<FetchError> {
        let error = serde_json::from_slice::<serde::de::IgnoredAny>(&fresh.body).err()?;
        Some(
            FetchError::new(self.provider, endpoint, ErrorCategory::Decode, "")
                .with_status(fresh.status)
                .with_clean_detail(self.redactor.clean(&format!("body is not JSON: {error}"))),
        )
    }

    /// A request that got no (complete) response. reqwest's own message names the URL, so
    /// only the underlying cause is kept.
    fn transport_error(&self, endpoint: &str, error: &reqwest::Error) -> FetchError {
        let (category, detail) = if error.is_timeout() {
            (
                ErrorCategory::Timeout,
                format!(
                    "no complete response within {} ms",
                    millis(self.settings.timeout)
                ),
            )
        } else if error.is_builder() {
            (ErrorCategory::Request, root_cause(error))
        } else {
            (ErrorCategory::Connect, root_cause(error))
        };
        FetchError::new(self.provider, endpoint, category, "")
            .with_clean_detail(self.redactor.clean(&detail))
    }

    fn refusal_error(&self, endpoint: &str, refused: Refused) -> FetchError {
        let (category, detail, retry_after) = match refused {
            Refused::Paused(left) => (
                ErrorCategory::RateLimited,
                "provider paused after a 429",
                Some(left),
            ),
            Refused::NoRuntime => (
                ErrorCategory::Request,
                "no tokio runtime to dispatch permits",
                None,
            ),
            Refused::Closed => (ErrorCategory::Connect, "the client was shut down", None),
        };
        FetchError::new(self.provider, endpoint, category, detail).with_retry_after(retry_after)
    }

    /// `http_requests_total` for one attempt (sent, or refused before sending), and its
    /// duration when sent.
    fn count_attempt(&self, endpoint: &str, outcome: &'static str, duration: Option<Duration>) {
        metrics::counter!(
            "http_requests_total",
            "source" => self.provider,
            "endpoint" => endpoint.to_owned(),
            "outcome" => outcome
        )
        .increment(1);
        if let Some(duration) = duration {
            metrics::histogram!(
                "http_request_duration_seconds",
                "source" => self.provider,
                "endpoint" => endpoint.to_owned(),
                "outcome" => outcome
            )
            .record(duration.as_secs_f64());
        }
    }

    /// A request is going out after waiting `waited` for its permit.
    fn note_sent(&self, waited: Duration) {
        metrics::histogram!("http_rate_limit_wait_seconds", "source" => self.provider)
            .record(waited.as_secs_f64());
        let now = Instant::now();
        let mut sent = lock(&self.sent_at);
        prune_window(&mut sent, now);
        sent.push_back(now);
    }

    /// A fresh response: status, and the cache for a call that may later need it.
    fn on_fresh(&self, state: &Mutex<EndpointState>, call: &Call<'_>, key: &[u8], fresh: &Fresh) {
        let prune_due = {
            let mut state = lock(state);
            state.last_success_ms = Some(fresh.received_ms);
            state.serving_stale = false;
            if call.use_stale && self.cache.is_some() {
                state.cache_newest_ms = Some(fresh.received_ms);
            }
            let due = state
                .last_prune
                .is_none_or(|at| at.elapsed() >= self.settings.max_stale_age);
            if due && self.cache.is_some() {
                state.last_prune = Some(Instant::now());
            }
            due
        };
        let Some(cache) = self.cache.as_ref().filter(|_| call.use_stale) else {
            return;
        };
        let stored = CachedResponse {
            received_ms: fresh.received_ms,
            status: fresh.status,
            body: fresh.body.clone(),
        };
        if let Err(error) = cache.put(key, &stored) {
            tracing::warn!(
                source = self.provider,
                endpoint = call.endpoint,
                "stale cache write failed: {error}"
            );
        }
        if prune_due {
            let cutoff = fresh
                .received_ms
                .saturating_sub(millis(self.settings.max_stale_age));
            if let Err(error) = cache.prune(call.endpoint, cutoff) {
                tracing::warn!(
                    source = self.provider,
                    endpoint = call.endpoint,
                    "stale cache prune failed: {error}"
                );
            }
        }
    }

    /// A 2xx whose body is not the JSON the call expected: an error on the status page, and
    /// nothing cached (a cut body must never become the "last good" answer).
    fn on_malformed(&self, state: &Mutex<EndpointState>, call: &Call<'_>, error: &FetchError) {
        {
            let mut state = lock(state);
            state.last_error = Some(ErrorCategory::Decode);
            state.last_error_ms = Some(now_ms());
            state.serving_stale = false;
        }
        tracing::warn!(
            source = self.provider,
            endpoint = call.endpoint,
            category = ErrorCategory::Decode.name(),
            "malformed response handed on for the parser to report: {error}"
        );
    }

    /// A failed call: status, log, and the stale body if one is young enough.
    fn on_failed(
        &self,
        state: &Mutex<EndpointState>,
        call: &Call<'_>,
        key: &[u8],
        error: FetchError,
    ) -> Result<Fetched, FetchError> {
        let now_ms = now_ms();
        {
            let mut state = lock(state);
            state.last_error = Some(error.category());
            state.last_error_ms = Some(now_ms);
            state.serving_stale = false;
        }
        // A request that could not even be built is a caller bug: an old answer would hide it.
        let may_serve_stale = call.use_stale && error.category() != ErrorCategory::Request;
        let cached = match (&self.cache, may_serve_stale) {
            (Some(cache), true) => cache.get(key).unwrap_or_else(|store_error| {
                tracing::warn!(
                    source = self.provider,
                    endpoint = call.endpoint,
                    "stale cache read failed: {store_error}"
                );
                None
            }),
            _ => None,
        };
        let usable = cached.and_then(|cached| {
            let age = Duration::from_millis(now_ms.saturating_sub(cached.received_ms));
            (age <= self.settings.max_stale_age).then_some((cached, age))
        });
        let Some((cached, age)) = usable else {
            if error.category() == ErrorCategory::BreakerOpen {
                tracing::debug!(
                    source = self.provider,
                    endpoint = call.endpoint,
                    "call failed: {error}"
                );
            } else {
                tracing::warn!(
                    source = self.provider,
                    endpoint = call.endpoint,
                    category = error.category().name(),
                    "call failed: {error}"
                );
            }
            return Err(error);
        };
        lock(state).serving_stale = true;
        metrics::counter!(
            "http_stale_served_total",
            "source" => self.provider,
            "endpoint" => call.endpoint.to_owned()
        )
        .increment(1);
        if error.category() == ErrorCategory::BreakerOpen {
            // Every poll while the breaker is open lands here; its opening was the warning.
            tracing::debug!(
                source = self.provider,
                endpoint = call.endpoint,
                age_ms = millis(age),
                "serving the stale cache: {error}"
            );
        } else {
            tracing::warn!(
                source = self.provider,
                endpoint = call.endpoint,
                category = error.category().name(),
                age_ms = millis(age),
                "serving the stale cache: {error}"
            );
        }
        Ok(Fetched {
            body: cached.body,
            status: cached.status,
            received_ms: cached.received_ms,
            stale: Some(age),
            stale_cause: Some(error.category()),
            provider: self.provider,
            endpoint: call.endpoint.to_owned(),
            malformed: None,
        })
    }
}

/// Ends a half-open probe whose call was dropped mid-flight (its caller gave up): without
/// this the breaker would wait for an outcome forever and refuse every later call.
struct ProbeGuard<'a> {
    state: &'a Mutex<EndpointState>,
    endpoint: &'a str,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut state = lock(self.state);
            state.breaker.on_failure(Instant::now());
            count_breaker_failure(self.endpoint);
            publish_breaker(self.endpoint, &state.breaker);
        }
    }
}

/// The delay before the next attempt, or `None` to stop. backon's jitter adds up to the
/// whole delay again, so the result is capped at `retry_max`; a `Retry-After` is waited out
/// (never retried sooner), unless it is longer than `retry_max`: then the call ends here and
/// the provider pause keeps everyone off the upstream meanwhile.
fn retry_delay(
    error: &FetchError,
    backoff: Option<Duration>,
    retry_max: Duration,
) -> Option<Duration> {
    let backoff = backoff?.min(retry_max);
    match error.retry_after() {
        Some(wait) if wait > retry_max => None,
        Some(wait) => Some(wait.max(backoff)),
        None => Some(backoff),
    }
}

/// The `circuit_breaker_*` gauges of one endpoint.
fn publish_breaker(endpoint: &str, breaker: &Breaker) {
    metrics::gauge!("circuit_breaker_state", "endpoint" => endpoint.to_owned())
        .set(breaker.state().gauge());
    metrics::gauge!("circuit_breaker_consecutive_failures", "endpoint" => endpoint.to_owned())
        .set(f64::from(breaker.consecutive_failures()));
    metrics::gauge!("circuit_breaker_success_ratio", "endpoint" => endpoint.to_owned())
        .set(breaker.success_ratio());
}

fn count_breaker_failure(endpoint: &str) {
    metrics::counter!("circuit_breaker_failures_total", "endpoint" => endpoint.to_owned())
        .increment(1);
}

fn log_transition(
    provider: &'static str,
    endpoint: &str,
    before: BreakerState,
    after: BreakerState,
) {
    if before == after {
        return;
    }
    let (from, to) = (before.name(), after.name());
    if after == BreakerState::Open {
        tracing::warn!(
            source = provider,
            endpoint,
            from,
            to,
            "circuit breaker {from} → {to}"
        );
    } else {
        tracing::info!(
            source = provider,
            endpoint,
            from,
            to,
            "circuit breaker {from} → {to}"
        );
    }
}

/// Registers the descriptions and units of this layer's metrics with the installed recorder.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "circuit_breaker_state",
        "Circuit breaker per endpoint: 0 closed, 1 open, 2 half-open"
    );
    describe_gauge!(
        "circuit_breaker_consecutive_failures",
        Unit::Count,
        "Failed calls in a row per endpoint"
    );
    describe_counter!(
        "circuit_breaker_failures_total",
        Unit::Count,
        "Failed calls per endpoint"
    );
    describe_gauge!(
        "circuit_breaker_success_ratio",
        "Successful calls / calls per endpoint"
    );
    describe_counter!(
        "http_requests_total",
        Unit::Count,
        "HTTP attempts by outcome (ok or the error category; refusals included)"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Duration of each HTTP request sent"
    );
    describe_histogram!(
        "http_rate_limit_wait_seconds",
        Unit::Seconds,
        "Time a request waited for its rate-limit permit"
    );
    describe_counter!(
        "http_stale_served_total",
        Unit::Count,
        "Failed calls answered from the stale cache"
    );
    describe_counter!(
        "http_retries_total",
        Unit::Count,
        "Retries after retryable failures"
    );
}

/// `text` fit to print: every value of `secrets` replaced, URL queries cut, shortened. For
/// text this layer did not produce itself (a panic's message).
pub fn redacted(text: &str, secrets: &[Secret]) -> String {
    Redactor::new(secrets.iter().map(Secret::expose)).clean(text)
}

/// The delay a `Retry-After` header value asks for (delay-seconds or an HTTP-date), for
/// requests made outside this layer; see [`Api::note_rate_limited`].
pub fn retry_after_from_header(value: &str) -> Option<Duration> {
    parse_retry_after(value, SystemTime::now())
}

/// The innermost cause of an error. The outer reqwest error's text includes the URL (and so
/// any query), the causes below it do not.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error.source();
    let mut last = None;
    while let Some(inner) = cause {
        last = Some(inner);
        cause = inner.source();
    }
    match last {
        Some(inner) => inner.to_string(),
        None => "request failed".to_owned(),
    }
}

fn prune_window(sent: &mut VecDeque<Instant>, now: Instant) {
    while sent
        .front()
        .is_some_and(|at| now.saturating_duration_since(*at) > RATE_WINDOW)
    {
        sent.pop_front();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its state whole, so a panic elsewhere while holding
    // the lock does not make the state unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(retry_after: Option<Duration>) -> FetchError {
        FetchError::new("p", "e", ErrorCategory::RateLimited, "").with_retry_after(retry_after)
    }

    #[test]
    fn retry_delays_honour_retry_after_and_the_ceiling() {
        let max = Duration::from_secs(10);
        let ms = Duration::from_millis;
        assert_eq!(retry_delay(&error(None), Some(ms(300)), max), Some(ms(300)));
        assert_eq!(
            retry_delay(&error(None), Some(ms(19_000)), max),
            Some(max),
            "jitter is capped"
        );
        assert_eq!(
            retry_delay(&error(Some(ms(2_000))), Some(ms(300)), max),
            Some(ms(2_000))
        );
        assert_eq!(
            retry_delay(&error(Some(ms(100))), Some(ms(300)), max),
            Some(ms(300))
        );
        assert_eq!(
            retry_delay(&error(Some(ms(60_000))), Some(ms(300)), max),
            None
        );
        assert_eq!(
            retry_delay(&error(None), None, max),
            None,
            "attempts exhausted"
        );
    }

    #[test]
    fn settings_come_from_the_config() {
        let config = HttpConfig {
            timeout_ms: 10_000,
            retry_base_ms: 250,
            retry_factor: 2.0,
            retry_max_ms: 10_000,
            retry_attempts: 4,
            circuit_breaker_failure_threshold: 5,
            circuit_breaker_cooldown_secs: 30,
            max_stale_cache_age_secs: 300,
        };
        let settings = HttpSettings::from(&config);
        assert_eq!(settings.breaker_cooldown, Duration::from_secs(30));
        assert_eq!(settings.retry_base, Duration::from_millis(250));
        assert!(settings.check().is_ok());
        let bad = HttpSettings {
            retry_attempts: 0,
            ..settings
        };
        assert!(bad.check().is_err());
    }
}
