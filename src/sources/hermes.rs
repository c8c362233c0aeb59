//! Pyth Hermes: the SSE price stream, with REST polling of `/v2/updates/price/latest` while the
//! stream is down, so that every publish time is seen or superseded.
//!
//! The stream is opened without the client's own reconnect, so that every failure is visible
//! here: a refused or failed connect, the 24-hour close, and silence longer than the watchdog
//! all end the connection, and the next attempt waits a jittered, doubling delay. From the
//! moment the stream is down until it delivers again, the REST endpoint is polled; on every
//! (re)connect one more poll covers the moment of the switch. [`FreshUpdates`] makes sure the
//! overlap of the two never hands the dataflow the same publish time twice.
//!
//! Every Hermes request draws from the one `requests` bucket, in priority order: the keeper's
//! fetch of update data for a push is `Critical` (a push waits on it), the stream connect and
//! the `/latest` polls that cover a stream outage are `High`; nothing routine shares the
//! bucket, so under a 429 pause or a tight limit the keeper goes first.
//!
//! The stream connect is made outside the HTTP layer (eventsource-client owns the
//! connection) but honours its timeout and is counted like its requests:
//! `http_requests_total{source="hermes",endpoint="hermes_stream"}` by outcome, and the time to
//! the first answer in `http_request_duration_seconds`. It has no circuit breaker: the
//! reconnect already backs off exponentially, and while it is down the REST poller (which has
//! one, `hermes_latest`) carries the prices, so a breaker would only delay the recovery.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use eventsource_client::{self as es, Client as _};
use futures::StreamExt;
use launchdarkly_sdk_transport::HyperTransport;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Told the ingest time of every stream event handed over and the instant its bytes came off
/// the stream: how the live benchmark measures ingest latency.
pub type ReceiptHook = std::sync::Arc<dyn Fn(u64, std::time::Instant) + Send + Sync>;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::fresh::{Admission, FreshUpdates};
use super::{Emitter, SourceRegistry, now_ms};
use crate::config::HermesConfig;
use crate::model::{Endpoint, FeedId, Source};
use crate::net::http::{
    Api, Call, ErrorCategory, Priority, ProviderSpec, RateLimit, retry_after_from_header,
};

/// The bucket every Hermes request (REST polls and stream connects) draws from.
const BUCKET: &str = "requests";
/// Breaker, metrics and cache name of the REST fallback.
const LATEST: &str = "hermes_latest";
/// Metrics name of the stream connect.
const STREAM: &str = "hermes_stream";

/// Hermes as a provider of the HTTP layer.
pub fn provider(config: &HermesConfig) -> ProviderSpec {
    ProviderSpec {
        name: "hermes",
        base_url: config.base_url.clone(),
        buckets: vec![(
            BUCKET,
            RateLimit::new(config.requests_per_10s, Duration::from_secs(10)),
        )],
        headers: vec![(
            "Authorization".into(),
            ProviderSpec::bearer(&config.api_key),
        )],
        // Hermes refuses for 60 s after its limit is hit.
        default_pause_on_429: Duration::from_secs(60),
    }
}

/// The Hermes source task.
pub struct HermesSource {
    config: HermesConfig,
    ids: Vec<FeedId>,
    api: Api,
    emitter: Emitter,
    health: SourceRegistry,
    fresh: FreshUpdates,
    /// `ids[]=…&…`, shared by the stream and the poller.
    query: String,
    receipts: Option<ReceiptHook>,
}

/// What the stream did next.
enum Next {
    Item(std::time::Instant, es::Result<es::SSE>),
    Ended,
    Silent,
}

/// A connected (or connecting) stream, read by its own task so that it can be dropped at once.
struct Link {
    rx: mpsc::Receiver<(std::time::Instant, es::Result<es::SSE>)>,
    task: tokio::task::JoinHandle<()>,
    /// When the connect started: the request duration ends at the first answer.
    opened: std::time::Instant,
    /// The connect's outcome has been counted.
    counted: bool,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HermesSource {
    /// A source streaming `ids`.
    pub fn new(
        config: HermesConfig,
        ids: Vec<FeedId>,
        api: Api,
        emitter: Emitter,
        health: SourceRegistry,
    ) -> Self {
        let query = ids
            .iter()
            .map(|id| format!("ids%5B%5D={id}"))
            .collect::<Vec<_>>()
            .join("&");
        HermesSource {
            config,
            ids,
            api,
            emitter,
            health,
            fresh: FreshUpdates::default(),
            query,
            receipts: None,
        }
    }

    /// The same source, telling `hook` when each stream event arrived.
    pub fn with_receipts(mut self, hook: ReceiptHook) -> Self {
        self.receipts = Some(hook);
        self
    }

    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.config.reconnect_initial_ms))
            .with_max_delay(Duration::from_millis(self.config.reconnect_max_ms))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// Streams until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        if self.ids.is_empty() {
            warn!("hermes: no feeds to stream (configure hermes.feeds, debounce feeds or assets)");
            self.health.state(Source::Hermes, "idle: no feeds");
            stop.cancelled().await;
            return;
        }
        let watchdog = Duration::from_secs(self.config.watchdog_secs);
        let mut backoff = self.backoff();
        let mut link: Option<Link> = None;
        let mut up = false;
        // The catch-up poll after a connect has not succeeded yet: it is retried at the
        // polling pace (which also lets the REST endpoint's breaker probe and close).
        let mut catch_up = false;
        let mut reconnect_at = Instant::now();
        let mut poll = tokio::time::interval(Duration::from_millis(self.config.fallback_poll_ms));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.set_connected(false, "connecting");
        loop {
            let failure = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                next = next_item(link.as_mut(), watchdog), if link.is_some() => {
                    if let Some(link) = link.as_mut() {
                        self.count_connect(link, &next);
                    }
                    match next {
                        Next::Item(_, Ok(es::SSE::Connected(details))) => {
                            info!(status = details.response().status(), "hermes: stream connected");
                            up = true;
                            backoff = self.backoff();
                            self.set_connected(true, "streaming");
                            // Covers anything published between the last poll and the connect.
                            catch_up = !self.poll_latest().await;
                            None
                        }
                        Next::Item(received, Ok(es::SSE::Event(event))) => {
                            if !up {
                                up = true;
                                self.set_connected(true, "streaming");
                            }
                            self.on_event(event, received);
                            None
                        }
                        Next::Item(_, Ok(es::SSE::Comment(_))) => None,
                        Next::Item(_, Err(e)) => Some(self.describe(&e)),
                        Next::Ended => Some("stream ended".to_owned()),
                        Next::Silent => Some(format!("no event or keep-alive for {}s", watchdog.as_secs())),
                    }
                },
                _ = tokio::time::sleep_until(reconnect_at), if link.is_none() => {
                    match self.connect(&stop).await {
                        Some(new_link) => link = Some(new_link),
                        None => break,
                    }
                    None
                }
                _ = poll.tick(), if !up || catch_up => {
                    let polled = self.poll_latest().await;
                    catch_up &= up && !polled;
                    None
                }
            };
            if let Some(reason) = failure {
                link = None;
                up = false;
                catch_up = false;
                let delay = backoff
                    .next()
                    .unwrap_or(Duration::from_millis(self.config.reconnect_max_ms));
                // A rate-limit pause outlasts any backoff: reconnecting earlier is refused.
                let delay = delay.max(self.api.paused_for().unwrap_or_default());
                warn!(reason = %reason, retry_in_ms = delay.as_millis() as u64, "hermes: stream down; polling REST until it is back");
                self.health.failure(Source::Hermes, now_ms(), &reason);
                self.set_connected(false, "polling-fallback");
                reconnect_at = Instant::now() + delay;
                poll.reset_immediately();
            }
        }
        self.set_connected(false, "stopped");
    }

    /// Counts the connect's outcome once, at the first thing the link says.
    fn count_connect(&self, link: &mut Link, next: &Next) {
        if std::mem::replace(&mut link.counted, true) {
            return;
        }
        let outcome = match next {
            Next::Item(_, Ok(_)) => "ok",
            Next::Item(_, Err(e)) => connect_category(e).name(),
            Next::Ended => ErrorCategory::Connect.name(),
            Next::Silent => ErrorCategory::Timeout.name(),
        };
        self.api
            .note_outcome(STREAM, outcome, Some(link.opened.elapsed()));
    }

    fn set_connected(&self, connected: bool, state: &str) {
        metrics::gauge!("sse_connection_status", "source" => "hermes").set(if connected {
            1.0
        } else {
            0.0
        });
        self.health.state(Source::Hermes, state);
    }

    /// What went wrong with the stream, in words fit for a log; a 429 also pauses the
    /// provider for as long as Hermes asks.
    fn describe(&self, error: &es::Error) -> String {
        match error {
            es::Error::UnexpectedResponse(response, _) => {
                let status = response.status();
                if status == 429 {
                    let retry_after = response
                        .get_header_value("retry-after")
                        .ok()
                        .flatten()
                        .and_then(retry_after_from_header);
                    let paused = self.api.note_rate_limited(retry_after);
                    format!("rate limited (HTTP 429); pausing {} s", paused.as_secs())
                } else {
                    format!("HTTP {status}")
                }
            }
            es::Error::Eof => "server closed the stream".to_owned(),
            es::Error::UnexpectedEof => "stream cut mid-event".to_owned(),
            es::Error::Transport(e) => format!("transport: {e}"),
            other => other.to_string(),
        }
    }

    /// Opens the stream once the rate limiter allows; `None` if stopped meanwhile.
    async fn connect(&self, stop: &CancellationToken) -> Option<Link> {
        tokio::select! {
            _ = stop.cancelled() => return None,
            permit = self.api.permit(BUCKET, Priority::High) => {
                if let Err(e) = permit {
                    warn!(error = %e, "hermes: no rate-limit permit for the stream");
                }
            }
        }
        let url = format!(
            "{}/v2/updates/price/stream?{}&parsed=true&encoding=hex",
            self.config.base_url, self.query
        );
        let (tx, rx) = mpsc::channel(1024);
        let client = match self.client(&url) {
            Ok(client) => client,
            Err(e) => {
                // Only a bad URL or header gets here; say so, and let the backoff retry.
                let _ = tx.try_send((std::time::Instant::now(), Err(e)));
                return Some(Link {
                    rx,
                    task: tokio::spawn(async {}),
                    opened: std::time::Instant::now(),
                    counted: false,
                });
            }
        };
        debug!("hermes: connecting the stream");
        let opened = std::time::Instant::now();
        let task = tokio::spawn(async move {
            let mut stream = client.stream();
            while let Some(item) = stream.next().await {
                if tx.send((std::time::Instant::now(), item)).await.is_err() {
                    break;
                }
            }
        });
        Some(Link {
            rx,
            task,
            opened,
            counted: false,
        })
    }

    fn client(&self, url: &str) -> es::Result<impl es::Client + use<>> {
        let transport = HyperTransport::builder()
            // The layer's request timeout, as for every other Hermes request.
            .connect_timeout(self.api.timeout())
            .disable_proxy()
            .build_https()
            .map_err(|e| es::Error::InvalidParameter(Box::new(e)))?;
        let mut builder = es::ClientBuilder::for_url(url)?
            .header("User-Agent", concat!("sluice/", env!("CARGO_PKG_VERSION")))?
            .reconnect(es::ReconnectOptions::reconnect(false).build());
        if !self.config.api_key.is_empty() {
            builder = builder.header(
                "Authorization",
                &format!("Bearer {}", self.config.api_key.expose()),
            )?;
        }
        Ok(builder.build_with_transport(transport))
    }

    fn on_event(&mut self, event: es::Event, received: std::time::Instant) {
        let context = match event.event_type.as_str() {
            "message" => "",
            other => other,
        };
        if context == "error" {
            info!(message = %event.data, "hermes: the server says");
            self.emit(Endpoint::HermesStream, context, Bytes::from(event.data), 0);
            return;
        }
        let raw = Bytes::from(event.data);
        if let (Some(t_ms), Some(hook)) = (
            self.admit(Endpoint::HermesStream, context, raw),
            &self.receipts,
        ) {
            hook(t_ms, received);
        }
    }

    /// Hands a document over if it holds anything new; returns its ingest time if it did.
    fn admit(&mut self, endpoint: Endpoint, context: &str, raw: Bytes) -> Option<u64> {
        match self.fresh.admit(&raw) {
            Admission::Pass { new } => self.emit(endpoint, context, raw, new),
            Admission::Rewrite { bytes, new, seen } => {
                metrics::counter!("hermes_repeated_updates_total").increment(seen as u64);
                self.emit(endpoint, context, bytes, new)
            }
            Admission::Drop { seen } => {
                metrics::counter!("hermes_repeated_updates_total").increment(seen as u64);
                None
            }
        }
    }

    fn emit(&self, endpoint: Endpoint, context: &str, raw: Bytes, new: usize) -> Option<u64> {
        let t_ms = self.emitter.envelope(endpoint, context, raw)?;
        metrics::counter!("price_updates_total", "source" => "hermes").increment(new as u64);
        if new > 0 {
            self.health.success(Source::Hermes, now_ms(), 1);
        }
        Some(t_ms)
    }

    /// One REST poll of the latest prices of every feed; true if it was answered.
    async fn poll_latest(&mut self) -> bool {
        let path = format!(
            "/v2/updates/price/latest?{}&parsed=true&encoding=hex",
            self.query
        );
        // High: it stands in for the stream, and no publish time may slip past it.
        let call = Call::new(LATEST, BUCKET, &path)
            .priority(Priority::High)
            .use_stale(false)
            .json(true);
        match self.api.get(call).await {
            Ok(fetched) => {
                let malformed = fetched.malformed.clone();
                // Handed over even when malformed: the dataflow journals it as invalid input.
                self.admit(Endpoint::HermesLatest, "", fetched.body);
                match malformed {
                    None => true,
                    Some(e) => {
                        debug!(error = %e, "hermes: malformed REST answer");
                        self.health
                            .failure(Source::Hermes, now_ms(), e.category().name());
                        // Not answered: a catch-up poll is tried again.
                        false
                    }
                }
            }
            Err(e) => {
                debug!(error = %e, "hermes: REST poll failed");
                self.health
                    .failure(Source::Hermes, now_ms(), e.category().name());
                false
            }
        }
    }
}

/// The error category of a failed stream connect (as the HTTP layer would name it).
fn connect_category(error: &es::Error) -> ErrorCategory {
    match error {
        es::Error::UnexpectedResponse(response, _) => match response.status() {
            429 => ErrorCategory::RateLimited,
            status if status >= 500 => ErrorCategory::Http5xx,
            _ => ErrorCategory::Http4xx,
        },
        es::Error::TimedOut => ErrorCategory::Timeout,
        es::Error::InvalidParameter(_) => ErrorCategory::Request,
        _ => ErrorCategory::Connect,
    }
}

async fn next_item(link: Option<&mut Link>, watchdog: Duration) -> Next {
    let Some(link) = link else {
        return Next::Ended;
    };
    match tokio::time::timeout(watchdog, link.rx.recv()).await {
        Err(_) => Next::Silent,
        Ok(None) => Next::Ended,
        Ok(Some((received, item))) => Next::Item(received, item),
    }
}
