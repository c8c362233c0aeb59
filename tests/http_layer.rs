//! The HTTP layer against scripted axum servers on loopback: priority dispatch, rate limits,
//! Retry-After and the provider pause, retries by category, the circuit breaker (and its
//! metrics), the stale cache in sled, and that no secret is ever printed.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use sluice::config::Secret;
use sluice::net::http::{
    Api, Call, ErrorCategory, FetchError, HttpSettings, Priority, ProviderSpec, RateLimit,
};
use sluice::store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------- scripted test server

/// What the server answers.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn ok(body: &str) -> Reply {
        Reply::status(200).body(body)
    }

    fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    fn body(mut self, body: &str) -> Reply {
        self.body = body.to_owned();
        self
    }

    fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    query: String,
    /// 1 for the first request on this path, and so on.
    n: usize,
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

type Script = Arc<dyn Fn(&Hit) -> Reply + Send + Sync>;

struct ServerState {
    script: Script,
    hits: Mutex<Vec<Hit>>,
}

struct TestServer {
    base: String,
    state: Arc<ServerState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    async fn start(script: impl Fn(&Hit) -> Reply + Send + Sync + 'static) -> TestServer {
        let state = Arc::new(ServerState {
            script: Arc::new(script),
            hits: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await
                .unwrap();
        });
        TestServer {
            base: format!("http://{addr}"),
            state,
            shutdown: Some(shutdown),
            task,
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    fn hits_on(&self, path: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.path == path).collect()
    }

    async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Pooled keep-alive connections may hold a graceful shutdown open: do not wait long.
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let abort = task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let hit = {
        let mut hits = state.hits.lock().unwrap();
        let n = hits.iter().filter(|h| h.path == path).count() + 1;
        let hit = Hit {
            path,
            query,
            n,
            at,
            headers: parts.headers,
            body,
        };
        hits.push(hit.clone());
        hit
    };
    let reply = (state.script)(&hit);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(reply.body)).unwrap()
}

// ---------------------------------------------------------------- helpers

fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Millisecond-scale settings; the breaker effectively off unless a test lowers it.
fn settings() -> HttpSettings {
    HttpSettings {
        timeout: Duration::from_millis(500),
        retry_base: Duration::from_millis(10),
        retry_factor: 2.0,
        retry_max: Duration::from_millis(100),
        retry_attempts: 3,
        breaker_threshold: 1_000,
        breaker_cooldown: Duration::from_millis(200),
        max_stale_age: Duration::from_secs(60),
    }
}

fn spec(base: &str, buckets: Vec<(&'static str, RateLimit)>) -> ProviderSpec {
    ProviderSpec {
        name: "testprov",
        base_url: base.to_owned(),
        buckets,
        headers: Vec::new(),
        default_pause_on_429: Duration::from_millis(200),
    }
}

fn fast_bucket() -> Vec<(&'static str, RateLimit)> {
    vec![("main", RateLimit::per_second(1_000))]
}

fn api(server: &TestServer, settings: HttpSettings) -> Api {
    install_tls_provider();
    Api::with_settings(spec(&server.base, fast_bucket()), settings, None).unwrap()
}

/// A loopback port nobody listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `test` on a current-thread runtime under a recorder of its own, handed its snapshotter,
/// so that the metrics a test reads are only the ones it caused.
fn with_metrics<F: std::future::Future<Output = ()>>(test: impl FnOnce(Snapshotter) -> F) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        current_thread_runtime().block_on(test(snapshotter))
    });
}

fn err_of(result: Result<sluice::net::http::Fetched, FetchError>) -> FetchError {
    match result {
        Ok(fetched) => panic!("expected an error, got {fetched:?}"),
        Err(error) => error,
    }
}

/// A metric's name and its labels as sorted `k=v` pairs.
type MetricKey = (String, Vec<String>);

/// What the debugging recorder has seen. Its snapshots reset counters and gauges to zero, so
/// counters are summed over snapshots, and a gauge is read right after the code sets it.
#[derive(Default)]
struct SeenMetrics {
    counters: HashMap<MetricKey, u64>,
    gauges: HashMap<MetricKey, f64>,
    histogram_samples: HashMap<MetricKey, usize>,
}

impl SeenMetrics {
    /// What `snapshotter` has recorded so far, in one snapshot.
    fn of(snapshotter: &Snapshotter) -> Self {
        let mut seen = Self::default();
        seen.absorb(snapshotter);
        seen
    }

    fn absorb(&mut self, snapshotter: &Snapshotter) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let key = (key.name().to_owned(), labels);
            match value {
                DebugValue::Counter(n) => *self.counters.entry(key).or_default() += n,
                DebugValue::Gauge(v) => {
                    self.gauges.insert(key, v.into_inner());
                }
                DebugValue::Histogram(samples) => {
                    *self.histogram_samples.entry(key).or_default() += samples.len()
                }
            }
        }
    }

    fn counter(&self, name: &str, l: &[&str]) -> u64 {
        self.counters
            .get(&(name.to_owned(), labels(l)))
            .copied()
            .unwrap_or(0)
    }

    fn gauge(&self, name: &str, l: &[&str]) -> f64 {
        match self.gauges.get(&(name.to_owned(), labels(l))) {
            Some(v) => *v,
            None => panic!("no gauge {name}{l:?}"),
        }
    }

    fn samples(&self, name: &str, l: &[&str]) -> usize {
        self.histogram_samples
            .get(&(name.to_owned(), labels(l)))
            .copied()
            .unwrap_or(0)
    }
}

fn labels(pairs: &[&str]) -> Vec<String> {
    let mut labels: Vec<String> = pairs.iter().map(|s| (*s).to_owned()).collect();
    labels.sort();
    labels
}

// ---------------------------------------------------------------- priority and limits

#[tokio::test]
async fn queued_requests_are_served_by_priority_then_arrival() {
    let server = TestServer::start(|_| Reply::ok("{}")).await;
    install_tls_provider();
    // 10/s: one permit every 100 ms, so everything queued in the first few ms waits.
    let buckets = vec![("slow", RateLimit::per_second(10))];
    let api = Api::with_settings(spec(&server.base, buckets), settings(), None).unwrap();

    let queue = [
        ("blocker", Priority::Background),
        ("bg1", Priority::Background),
        ("low1", Priority::Low),
        ("med1", Priority::Medium),
        ("high1", Priority::High),
        ("crit1", Priority::Critical),
        ("bg2", Priority::Background),
        ("crit2", Priority::Critical),
    ];
    let mut calls = Vec::new();
    for (id, priority) in queue {
        let api = api.clone();
        calls.push(tokio::spawn(async move {
            let path = format!("/work?id={id}");
            api.get(Call::new("work", "slow", &path).priority(priority))
                .await
                .map(|f| f.status)
        }));
        // Lets the spawned call join the queue before the next one (FIFO within a class).
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 200);
    }
    let order: Vec<String> = server
        .hits()
        .iter()
        .map(|h| h.query.trim_start_matches("id=").to_owned())
        .collect();
    assert_eq!(
        order,
        [
            "blocker", "crit1", "crit2", "high1", "med1", "low1", "bg1", "bg2"
        ],
        "the blocker went at once; the rest by class, FIFO within one"
    );
    server.stop().await;
}

/// Arrival times at the server never put more than `limit.requests` into one window.
fn assert_within_limit(arrivals: &[Instant], requests: usize, per: Duration) {
    // Sent exactly `per / requests` apart; network jitter at the server is tolerated.
    let tolerance = Duration::from_millis(30);
    for window in arrivals.windows(requests + 1) {
        let spread = window[requests].duration_since(window[0]);
        assert!(
            spread + tolerance >= per,
            "{} requests within {spread:?}",
            requests + 1
        );
    }
}

#[tokio::test]
async fn limits_hold_at_the_server_and_buckets_are_independent() {
    let server = TestServer::start(|_| Reply::ok("{}")).await;
    install_tls_provider();
    let buckets = vec![
        ("a", RateLimit::per_second(10)),
        ("b", RateLimit::new(5, Duration::from_millis(500))),
    ];
    let api = Api::with_settings(spec(&server.base, buckets), settings(), None).unwrap();

    let started = Instant::now();
    let mut calls = Vec::new();
    for i in 0..15 {
        for (bucket, path) in [("a", "/a"), ("b", "/b")] {
            let api = api.clone();
            calls.push(tokio::spawn(async move {
                let path = format!("{path}?i={i}");
                api.get(Call::new(bucket, bucket, &path)).await.map(|_| ())
            }));
        }
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let elapsed = started.elapsed();

    let arrivals = |path: &str| -> Vec<Instant> {
        let mut at: Vec<Instant> = server.hits_on(path).iter().map(|h| h.at).collect();
        at.sort();
        at
    };
    let (a, b) = (arrivals("/a"), arrivals("/b"));
    assert_eq!((a.len(), b.len()), (15, 15));
    assert_within_limit(&a, 10, Duration::from_secs(1));
    assert_within_limit(&b, 5, Duration::from_millis(500));
    // No initial burst: even the first two are spaced.
    assert!(a[1].duration_since(a[0]) >= Duration::from_millis(90));
    // Independent: both ran at full speed side by side (15 at 100 ms ≈ 1.4 s, not 2.8 s),
    // and the first second saw more than either bucket alone allows.
    assert!(elapsed < Duration::from_millis(2_000), "{elapsed:?}");
    let first = a[0].min(b[0]);
    let in_first_second = a
        .iter()
        .chain(&b)
        .filter(|t| t.duration_since(first) < Duration::from_millis(950))
        .count();
    assert!(in_first_second >= 18, "{in_first_second}");
    let status = api.status();
    assert_eq!(status.requests_last_minute, 30);
    assert_eq!(status.buckets.len(), 2);
    server.stop().await;
}

// ---------------------------------------------------------------- 429 and Retry-After

#[tokio::test]
async fn retry_after_is_honoured_and_a_429_pauses_the_whole_provider() {
    let server = TestServer::start(|hit| match (hit.path.as_str(), hit.n) {
        ("/limited", 1) => Reply::status(429).header("retry-after", "1"),
        _ => Reply::ok("{}"),
    })
    .await;
    install_tls_provider();
    let buckets = vec![
        ("a", RateLimit::per_second(1_000)),
        ("b", RateLimit::per_second(1_000)),
    ];
    let patient = HttpSettings {
        retry_max: Duration::from_secs(2),
        ..settings()
    };
    let api = Api::with_settings(spec(&server.base, buckets), patient, None).unwrap();

    let limited = {
        let api = api.clone();
        tokio::spawn(async move { api.get(Call::new("limited", "a", "/limited")).await })
    };
    while server.hits_on("/limited").is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let paused = api.status().paused_for_ms.expect("paused after the 429");
    assert!(paused > 800 && paused <= 1_000, "{paused}");
    // Another endpoint in another bucket waits out the same pause.
    let other = api.get(Call::new("other", "b", "/other")).await.unwrap();
    assert!(!other.is_stale());
    assert!(limited.await.unwrap().unwrap().status == 200);

    let first_429 = server.hits_on("/limited")[0].at;
    let retry = server.hits_on("/limited")[1].at;
    let other_at = server.hits_on("/other")[0].at;
    assert!(
        retry.duration_since(first_429) >= Duration::from_secs(1),
        "{:?}",
        retry.duration_since(first_429)
    );
    assert!(
        other_at.duration_since(first_429) >= Duration::from_secs(1),
        "{:?}",
        other_at.duration_since(first_429)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_429_without_retry_after_pauses_for_the_default() {
    let server = TestServer::start(|hit| match hit.n {
        1 => Reply::status(429).body("{\"error\":\"rate limited\"}"),
        _ => Reply::ok("{}"),
    })
    .await;
    install_tls_provider();
    let mut spec = spec(&server.base, fast_bucket());
    spec.default_pause_on_429 = Duration::from_millis(300);
    let patient = HttpSettings {
        retry_max: Duration::from_secs(1),
        ..settings()
    };
    let api = Api::with_settings(spec, patient, None).unwrap();
    api.get(Call::new("boosts", "main", "/boosts"))
        .await
        .unwrap();
    let hits = server.hits_on("/boosts");
    assert_eq!(hits.len(), 2);
    assert!(hits[1].at.duration_since(hits[0].at) >= Duration::from_millis(300));
    server.stop().await;
}

#[tokio::test]
async fn a_pause_longer_than_retry_max_fails_fast_without_sending() {
    // Hermes' behaviour: over the limit, refused for 60 s.
    let server = TestServer::start(|hit| match hit.path.as_str() {
        "/latest" => Reply::status(429).header("retry-after", "60"),
        _ => Reply::ok("{}"),
    })
    .await;
    let api = api(&server, settings());
    let started = Instant::now();
    let error = err_of(api.get(Call::new("hermes_latest", "main", "/latest")).await);
    assert_eq!(error.category(), ErrorCategory::RateLimited);
    assert_eq!(error.status(), Some(429));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(60)));
    assert_eq!(
        server.hits_on("/latest").len(),
        1,
        "no retry within the call"
    );

    let refused = err_of(api.get(Call::new("other", "main", "/other")).await);
    assert_eq!(refused.category(), ErrorCategory::RateLimited);
    assert_eq!(refused.status(), None, "refused locally");
    assert!(refused.retry_after().unwrap() > Duration::from_secs(59));
    assert!(server.hits_on("/other").is_empty());
    assert!(started.elapsed() < Duration::from_millis(500));

    // A bare permit (the SSE connect) waits the pause out instead; shown with a short one.
    let api2 = Api::with_settings(spec(&server.base, fast_bucket()), settings(), None).unwrap();
    assert_eq!(
        api2.note_rate_limited(Some(Duration::from_millis(200))),
        Duration::from_millis(200)
    );
    let waited = api2.permit("main", Priority::Critical).await.unwrap();
    assert!(waited >= Duration::from_millis(190), "{waited:?}");
    server.stop().await;
}

// ---------------------------------------------------------------- retries and categories

#[tokio::test]
async fn server_errors_and_timeouts_are_retried_client_errors_are_not() {
    let server = TestServer::start(|hit| match hit.path.as_str() {
        "/unavailable" => Reply::status(503).body("{\"message\":\"down\"}"),
        "/slow" => Reply::ok("late").delay(Duration::from_millis(300)),
        "/missing" => Reply::status(404).body("{\"message\":\"no such pair\"}"),
        "/flaky" if hit.n == 1 => Reply::status(500),
        _ => Reply::ok("fine"),
    })
    .await;
    let api = api(
        &server,
        HttpSettings {
            timeout: Duration::from_millis(100),
            ..settings()
        },
    );

    let error = err_of(
        api.get(Call::new("unavailable", "main", "/unavailable"))
            .await,
    );
    assert_eq!(error.category(), ErrorCategory::Http5xx);
    assert_eq!(error.status(), Some(503));
    assert!(error.detail().contains("down"), "{error}");
    assert_eq!(server.hits_on("/unavailable").len(), 3, "all attempts");

    let error = err_of(api.get(Call::new("slow", "main", "/slow")).await);
    assert_eq!(error.category(), ErrorCategory::Timeout);
    assert_eq!(error.status(), None);
    assert_eq!(server.hits_on("/slow").len(), 3);

    let error = err_of(api.get(Call::new("missing", "main", "/missing")).await);
    assert_eq!(error.category(), ErrorCategory::Http4xx);
    assert_eq!(error.status(), Some(404));
    assert_eq!(
        server.hits_on("/missing").len(),
        1,
        "a 4xx is never retried"
    );

    let fetched = api.get(Call::new("flaky", "main", "/flaky")).await.unwrap();
    assert_eq!(&fetched.body[..], b"fine");
    assert_eq!(server.hits_on("/flaky").len(), 2);

    let error = err_of(api.get(Call::new("bad", "nope", "/x")).await);
    assert_eq!(error.category(), ErrorCategory::Request, "unknown bucket");

    install_tls_provider();
    let nowhere =
        Api::with_settings(spec(&closed_port_url(), fast_bucket()), settings(), None).unwrap();
    let error = err_of(nowhere.get(Call::new("nowhere", "main", "/x")).await);
    assert_eq!(error.category(), ErrorCategory::Connect);

    let status = api.status();
    let last = |name: &str| {
        status
            .endpoints
            .iter()
            .find(|e| e.endpoint == name)
            .and_then(|e| e.last_error)
    };
    assert_eq!(last("unavailable"), Some(ErrorCategory::Http5xx));
    assert_eq!(last("slow"), Some(ErrorCategory::Timeout));
    assert_eq!(last("missing"), Some(ErrorCategory::Http4xx));
    server.stop().await;
}

// ---------------------------------------------------------------- circuit breaker

#[test]
fn breaker_opens_fails_fast_probes_once_and_closes() {
    with_metrics(|snapshotter| async move {
        let healthy = Arc::new(AtomicBool::new(false));
        let server = {
            let healthy = Arc::clone(&healthy);
            TestServer::start(move |_| {
                let reply = if healthy.load(Ordering::SeqCst) {
                    Reply::ok("up")
                } else {
                    Reply::status(500)
                };
                reply.delay(Duration::from_millis(30))
            })
            .await
        };
        let cooldown = Duration::from_millis(250);
        let api = api(
            &server,
            HttpSettings {
                retry_attempts: 2,
                breaker_threshold: 2,
                breaker_cooldown: cooldown,
                ..settings()
            },
        );
        let call = || api.get(Call::new("svc", "main", "/svc").use_stale(false));
        let hits = || server.hits_on("/svc").len();
        let mut seen = SeenMetrics::default();

        // Two failed calls (each with its retry) open it: one call, one failure.
        assert_eq!(err_of(call().await).category(), ErrorCategory::Http5xx);
        assert_eq!(hits(), 2);
        assert_eq!(api.status().endpoints[0].breaker, "closed");
        assert_eq!(api.status().endpoints[0].consecutive_failures, 1);
        assert_eq!(err_of(call().await).category(), ErrorCategory::Http5xx);
        assert_eq!(hits(), 4);
        assert_eq!(api.status().endpoints[0].breaker, "open");
        seen.absorb(&snapshotter);
        assert_eq!(seen.gauge("circuit_breaker_state", &["endpoint=svc"]), 1.0);

        // Open: fail fast, nothing sent.
        let refused = err_of(call().await);
        assert_eq!(refused.category(), ErrorCategory::BreakerOpen);
        assert!(refused.retry_after().is_some());
        assert_eq!(hits(), 4);

        // After the cooldown: exactly one probe among concurrent calls; it fails and
        // reopens the breaker.
        tokio::time::sleep(cooldown + Duration::from_millis(20)).await;
        let (a, b, c) = tokio::join!(call(), call(), call());
        let categories: Vec<ErrorCategory> = [a, b, c]
            .into_iter()
            .map(|r| err_of(r).category())
            .collect();
        assert_eq!(hits(), 5, "one probe, one request: {categories:?}");
        assert_eq!(
            categories
                .iter()
                .filter(|c| **c == ErrorCategory::BreakerOpen)
                .count(),
            2
        );
        assert_eq!(api.status().endpoints[0].breaker, "open");
        assert_eq!(err_of(call().await).category(), ErrorCategory::BreakerOpen);
        assert_eq!(hits(), 5);

        // The next probe succeeds and closes it.
        tokio::time::sleep(cooldown + Duration::from_millis(20)).await;
        healthy.store(true, Ordering::SeqCst);
        assert_eq!(&call().await.unwrap().body[..], b"up");
        assert_eq!(hits(), 6);
        assert_eq!(api.status().endpoints[0].breaker, "closed");
        call().await.unwrap();

        let status = api.status();
        let svc = &status.endpoints[0];
        assert_eq!(
            (svc.breaker, svc.consecutive_failures, svc.failures_total),
            ("closed", 0, 3)
        );
        assert!(svc.last_success_ms.is_some());

        seen.absorb(&snapshotter);
        let ep = ["endpoint=svc"];
        assert_eq!(seen.counter("circuit_breaker_failures_total", &ep), 3);
        assert_eq!(seen.gauge("circuit_breaker_state", &ep), 0.0);
        assert_eq!(seen.gauge("circuit_breaker_consecutive_failures", &ep), 0.0);
        // 2 successes out of 5 calls that counted (3 failures).
        let ratio = seen.gauge("circuit_breaker_success_ratio", &ep);
        assert!((ratio - 0.4).abs() < 1e-9, "{ratio}");
        let source_ep = ["source=testprov", "endpoint=svc"];
        let requests = |outcome: &str| {
            let outcome = format!("outcome={outcome}");
            seen.counter(
                "http_requests_total",
                &[source_ep[0], source_ep[1], &outcome],
            )
        };
        assert_eq!(requests("http_5xx"), 5);
        assert_eq!(requests("ok"), 2);
        assert_eq!(requests("breaker_open"), 4);
        assert_eq!(seen.counter("http_retries_total", &source_ep), 2);
        assert_eq!(
            seen.samples(
                "http_request_duration_seconds",
                &[source_ep[0], source_ep[1], "outcome=ok"]
            ),
            2
        );
        assert_eq!(
            seen.samples("http_rate_limit_wait_seconds", &["source=testprov"]),
            7,
            "one wait per request sent"
        );
        server.stop().await;
    });
}

// ---------------------------------------------------------------- stale cache

fn open_store(dir: &std::path::Path) -> Store {
    Store::open(&dir.join("state")).unwrap().0
}

/// `api` with its stale cache in a store under `dir`.
fn cached_api(server: &TestServer, settings: HttpSettings, dir: &std::path::Path) -> Api {
    install_tls_provider();
    Api::with_settings(
        spec(&server.base, fast_bucket()),
        settings,
        Some(open_store(dir)),
    )
    .unwrap()
}

#[test]
fn stale_cache_serves_the_last_good_body_marked_with_its_age() {
    with_metrics(|snapshotter| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(|hit| match hit.n {
            1 => Reply::ok("[\"boost-list-1\"]"),
            _ => Reply::status(502),
        })
        .await;
        let settings = HttpSettings {
            retry_attempts: 1,
            breaker_threshold: 2,
            breaker_cooldown: Duration::from_secs(30),
            max_stale_age: Duration::from_millis(400),
            ..settings()
        };
        let api = cached_api(&server, settings, dir.path());
        let call = || api.get(Call::new("boosts", "main", "/token-boosts/top/v1"));

        let fresh = call().await.unwrap();
        assert_eq!(fresh.stale, None);

        tokio::time::sleep(Duration::from_millis(100)).await;
        let stale = call().await.unwrap();
        assert_eq!(stale.body, fresh.body);
        assert_eq!(stale.received_ms, fresh.received_ms);
        let age = stale.stale.expect("marked stale");
        assert!(age >= Duration::from_millis(100), "{age:?}");
        assert_eq!(stale.stale_cause, Some(ErrorCategory::Http5xx));
        assert_eq!(
            stale.clone().require_fresh().unwrap_err().category(),
            ErrorCategory::Stale
        );
        let status = api.status();
        assert!(status.endpoints[0].serving_stale);
        assert!(status.endpoints[0].cache_age_ms.unwrap() >= 100);

        // The breaker opens on the second failure; an open breaker is answered stale too,
        // without a request.
        assert!(call().await.unwrap().is_stale());
        let hits_before = server.hits().len();
        let served = call().await.unwrap();
        assert_eq!(served.stale_cause, Some(ErrorCategory::BreakerOpen));
        assert_eq!(server.hits().len(), hits_before);

        // Without the fallback, the error.
        let error = err_of(
            api.get(Call::new("boosts", "main", "/token-boosts/top/v1").use_stale(false))
                .await,
        );
        assert_eq!(error.category(), ErrorCategory::BreakerOpen);

        // Too old: the error comes back instead.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let error = err_of(call().await);
        assert_eq!(error.category(), ErrorCategory::BreakerOpen);
        assert!(!api.status().endpoints[0].serving_stale);

        let seen = SeenMetrics::of(&snapshotter);
        assert_eq!(
            seen.counter(
                "http_stale_served_total",
                &["source=testprov", "endpoint=boosts"]
            ),
            3
        );
        server.stop().await;
    });
}

#[test]
fn a_malformed_json_body_is_a_decode_failure_handed_on_but_never_cached() {
    with_metrics(|snapshotter| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(|hit| match (hit.path.as_str(), hit.n) {
            ("/boosts", 1) => Reply::ok("[\"good\"]"),
            ("/boosts", _) => Reply::ok("[\"cut"),
            _ => Reply::ok("plain text"),
        })
        .await;
        let settings = HttpSettings {
            retry_attempts: 3,
            breaker_threshold: 2,
            breaker_cooldown: Duration::from_secs(30),
            ..settings()
        };
        let api = cached_api(&server, settings, dir.path());
        let call = || api.get(Call::new("boosts", "main", "/boosts").json(true));

        let good = call().await.unwrap();
        assert!(!good.is_malformed());

        // A 2xx that is not JSON: handed on as received (the dataflow reports it), not
        // retried, a decode error on the status page, one failure for the breaker.
        let bad = call().await.unwrap();
        assert_eq!(&bad.body[..], b"[\"cut");
        assert_eq!(bad.stale, None);
        let error = bad.malformed.clone().expect("marked malformed");
        assert_eq!(error.category(), ErrorCategory::Decode);
        assert_eq!(
            server.hits_on("/boosts").len(),
            2,
            "a decode failure is not retried"
        );
        let status = api.status();
        let boosts = &status.endpoints[0];
        assert_eq!(boosts.last_error, Some(ErrorCategory::Decode));
        assert_eq!((boosts.breaker, boosts.consecutive_failures), ("closed", 1));

        // The second opens the breaker; the stale cache then answers with the last *good*
        // body: the malformed ones were never cached.
        assert!(call().await.unwrap().is_malformed());
        assert_eq!(api.status().endpoints[0].breaker, "open");
        let stale = call().await.unwrap();
        assert_eq!(&stale.body[..], b"[\"good\"]");
        assert_eq!(stale.stale_cause, Some(ErrorCategory::BreakerOpen));
        assert!(!stale.is_malformed());
        assert_eq!(server.hits_on("/boosts").len(), 3);

        // Without `json(true)` the layer does not look at the body.
        let text = api.get(Call::new("text", "main", "/text")).await.unwrap();
        assert!(!text.is_malformed());

        let seen = SeenMetrics::of(&snapshotter);
        let requests = |endpoint: &str, outcome: &str| {
            let endpoint = format!("endpoint={endpoint}");
            let outcome = format!("outcome={outcome}");
            seen.counter(
                "http_requests_total",
                &["source=testprov", &endpoint, &outcome],
            )
        };
        assert_eq!(requests("boosts", "decode"), 2);
        assert_eq!(requests("boosts", "ok"), 1);
        assert_eq!(requests("text", "ok"), 1);
        assert_eq!(
            seen.counter("circuit_breaker_failures_total", &["endpoint=boosts"]),
            2
        );
        assert_eq!(
            seen.samples(
                "http_request_duration_seconds",
                &["source=testprov", "endpoint=boosts", "outcome=decode"]
            ),
            2
        );
        server.stop().await;
    });
}

#[tokio::test]
async fn the_stale_cache_survives_in_sled() {
    let dir = tempfile::tempdir().unwrap();
    install_tls_provider();
    {
        let server = TestServer::start(|_| Reply::ok("{\"pairs\":[1]}")).await;
        let store = open_store(dir.path());
        let api = Api::with_settings(
            spec(&server.base, fast_bucket()),
            settings(),
            Some(store.clone()),
        )
        .unwrap();
        api.get(Call::new("pairs", "main", "/tokens/v1/solana/A,B"))
            .await
            .unwrap();
        store.flush().unwrap();
        server.stop().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    // A new process, as far as the layer knows: a new store handle, a new Api, and an
    // upstream that only fails.
    let server = TestServer::start(|_| Reply::status(500)).await;
    let api = cached_api(&server, settings(), dir.path());
    let stale = api
        .get(Call::new("pairs", "main", "/tokens/v1/solana/A,B"))
        .await
        .unwrap();
    assert_eq!(&stale.body[..], b"{\"pairs\":[1]}");
    assert!(stale.stale.unwrap() >= Duration::from_millis(50));
    // Another path of the same endpoint has no cached answer.
    let error = err_of(
        api.get(Call::new("pairs", "main", "/tokens/v1/solana/C"))
            .await,
    );
    assert_eq!(error.category(), ErrorCategory::Http5xx);
    assert!(api.status().endpoints[0].cache_age_ms.is_some());
    server.stop().await;
}

#[tokio::test]
async fn post_json_sends_the_body_and_caches_per_body() {
    let server = TestServer::start(|hit| {
        let asked = String::from_utf8_lossy(&hit.body).into_owned();
        let json = hit
            .headers
            .get("content-type")
            .is_some_and(|v| v == "application/json");
        match (json, hit.n) {
            (true, 1 | 2) => Reply::ok(&format!("answer to {asked}")),
            _ => Reply::status(500),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    install_tls_provider();
    let api = Api::with_settings(
        spec(&server.base, fast_bucket()),
        HttpSettings {
            retry_attempts: 1,
            ..settings()
        },
        Some(open_store(dir.path())),
    )
    .unwrap();
    let chain = [("x-chain", "solana")];
    let call = || Call::new("birdeye_multi_price", "main", "/defi/multi_price").headers(&chain);
    let one = serde_json::json!({"list_address": "A"});
    let two = serde_json::json!({"list_address": "B"});
    assert_eq!(
        &api.post_json(call(), &one).await.unwrap().body[..],
        b"answer to {\"list_address\":\"A\"}"
    );
    api.post_json(call(), &two).await.unwrap();
    assert_eq!(server.hits()[0].headers.get("x-chain").unwrap(), "solana");
    // Both fail now; each body gets its own cached answer.
    let stale_one = api.post_json(call(), &one).await.unwrap();
    let stale_two = api.post_json(call(), &two).await.unwrap();
    assert!(stale_one.is_stale() && stale_two.is_stale());
    assert_ne!(stale_one.body, stale_two.body);
    server.stop().await;
}

// ---------------------------------------------------------------- secrets

/// A `Write` into a shared buffer, for capturing log output.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_secret_reaches_errors_status_metrics_or_logs() {
    const KEY: &str = "PLANTED-KEY-7f3a9c";
    const TOKEN: &str = "PLANTED-TOKEN-55e1";
    const QUERY: &str = "QUERY-MARK-d41d";

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let logs = LogBuffer::default();
    let subscriber = {
        let logs = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish()
    };

    let mut printed: Vec<String> = Vec::new();
    let mut received_key = false;
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || {
            current_thread_runtime().block_on(async {
                // The upstream echoes the credentials it was sent, as a careless one might.
                let server = TestServer::start(|hit| {
                    let echo = format!(
                        "invalid key {} with {}",
                        hit.headers
                            .get("x-api-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or(""),
                        hit.headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                    );
                    match hit.path.as_str() {
                        "/401" => Reply::status(401).body(&echo),
                        "/500" => Reply::status(500).body(&echo),
                        "/429" => Reply::status(429).header("retry-after", "0").body(&echo),
                        "/slow" => Reply::ok("").delay(Duration::from_millis(300)),
                        _ => Reply::ok("{}"),
                    }
                })
                .await;
                install_tls_provider();
                let secret_spec = |base: &str| ProviderSpec {
                    headers: vec![
                        ("X-API-KEY".to_owned(), Secret::new(KEY)),
                        (
                            "Authorization".to_owned(),
                            ProviderSpec::bearer(&Secret::new(TOKEN)),
                        ),
                    ],
                    ..spec(base, fast_bucket())
                };
                let dir = tempfile::tempdir().unwrap();
                let settings = HttpSettings {
                    timeout: Duration::from_millis(100),
                    retry_attempts: 2,
                    breaker_threshold: 2,
                    ..settings()
                };
                let api = Api::with_settings(
                    secret_spec(&server.base),
                    settings.clone(),
                    Some(open_store(dir.path())),
                )
                .unwrap();
                let nowhere =
                    Api::with_settings(secret_spec(&closed_port_url()), settings, None).unwrap();

                let query = format!("?address={QUERY}&token={QUERY}");
                let mut errors = Vec::new();
                for (endpoint, path) in [
                    ("ep401", "/401"),
                    ("ep500", "/500"),
                    ("ep429", "/429"),
                    ("epslow", "/slow"),
                    ("epok", "/ok"),
                ] {
                    let path = format!("{path}{query}");
                    let result = api.get(Call::new(endpoint, "main", &path)).await;
                    match result {
                        Ok(fetched) => printed.push(format!("{fetched:?}")),
                        Err(error) => errors.push(error),
                    }
                }
                // The breaker of /500 opens on its second failed call; the third is refused.
                errors.push(err_of(
                    api.get(Call::new("ep500", "main", &format!("/500{query}")))
                        .await,
                ));
                errors.push(err_of(
                    api.get(Call::new("ep500", "main", &format!("/500{query}")))
                        .await,
                ));
                errors.push(err_of(
                    nowhere
                        .get(Call::new("nowhere", "main", &format!("/x{query}")))
                        .await,
                ));
                assert!(
                    errors.iter().any(|e| e.category() == ErrorCategory::Http4xx
                        && e.detail().contains("<redacted>")),
                    "the echoed key was in the body and got redacted: {errors:?}"
                );
                let categories: Vec<ErrorCategory> = errors.iter().map(|e| e.category()).collect();
                for expected in [
                    ErrorCategory::Http4xx,
                    ErrorCategory::Http5xx,
                    ErrorCategory::RateLimited,
                    ErrorCategory::Timeout,
                    ErrorCategory::BreakerOpen,
                    ErrorCategory::Connect,
                ] {
                    assert!(categories.contains(&expected), "{categories:?}");
                }
                for error in &errors {
                    printed.push(error.to_string());
                    printed.push(format!("{error:?}"));
                }
                printed.push(serde_json::to_string(&api.status()).unwrap());
                printed.push(serde_json::to_string(&nowhere.status()).unwrap());
                received_key = server.hits().iter().all(|h| {
                    h.headers.get("x-api-key").is_some_and(|v| v == KEY)
                        && h.headers
                            .get("authorization")
                            .is_some_and(|v| v == format!("Bearer {TOKEN}").as_str())
                });
                server.stop().await;
            })
        })
    });
    assert!(received_key, "the secrets travel in headers");

    for (key, _, _, _) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        printed.push(key.name().to_owned());
        for label in key.labels() {
            printed.push(format!("{}={}", label.key(), label.value()));
        }
    }
    let log_text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        log_text.contains("call failed"),
        "logs were captured: {log_text}"
    );
    if std::env::var_os("SHOW_LOGS").is_some() {
        eprintln!("{log_text}");
    }
    printed.push(log_text);

    for text in &printed {
        for planted in [KEY, TOKEN, QUERY] {
            assert!(!text.contains(planted), "{planted} leaked into: {text}");
        }
    }
}

#[tokio::test]
async fn setup_errors_do_not_quote_secrets() {
    install_tls_provider();
    let mut bad = spec("http://127.0.0.1:1", fast_bucket());
    bad.headers = vec![("X-API-KEY".to_owned(), Secret::new("bad\nKEY-SECRET-1"))];
    let error = match Api::with_settings(bad, settings(), None) {
        Ok(_) => panic!("a newline in a header value is refused"),
        Err(error) => error.to_string(),
    };
    assert!(!error.contains("KEY-SECRET-1"), "{error}");

    let zero = spec("http://127.0.0.1:1", vec![("z", RateLimit::per_second(0))]);
    assert!(Api::with_settings(zero, settings(), None).is_err());
}
