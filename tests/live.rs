//! The live pipeline against the loopback venue: a clean run, each fault kind with the breaker
//! transitions, stale-cache use, SSE-to-polling failover and recovery, `/health` telling the
//! truth throughout, no lost publish time, and the live/replay contract (replaying a live run's
//! recording writes exactly the journal the live run wrote).
//!
//! Each test stages its own synthetic recording (starting now, so publish times look live), a
//! venue on port 0 and a live run serving on port 0, and stops them all before it ends.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use figment::value::Value;
use serde_json::Value as Json;
use sluice::config::{Config, Pipeline, SinkKind};
use sluice::dataflow::graph::Wiring;
use sluice::dataflow::run::{Cluster, RecordingInput, ReplayOptions, RunError};
use sluice::live::{LiveOptions, LiveReport};
use sluice::model::{Endpoint, Envelope};
use sluice::record::{Codec, Item, RecordingReader};
use sluice::venue::{FaultSpec, Venue, VenueOptions};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

#[path = "support/http_get.rs"]
mod http_get;
#[path = "support/monitoring.rs"]
mod monitoring;
#[path = "support/signal.rs"]
mod signal;

const BIRDEYE_KEY: &str = "be-live-test-key-5f1c0a";
const HERMES_KEY: &str = "hermes-live-test-key-9d2e77";
const DEX_KEY: &str = "dex-live-test-key-0c4b19";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---------------------------------------------------------------------------------------------
// Staging: a recording, a venue serving it, and live runs against the venue.

/// A synthetic recording served by a venue, and a runtime for the test's HTTP calls.
struct Stage {
    dir: TempDir,
    rt: tokio::runtime::Runtime,
    venue: Option<Venue>,
    recording: PathBuf,
    feeds: Vec<String>,
    /// Live tests take turns: each asserts on timing (breakers, staleness, failover bounds),
    /// which a machine busy with the others would blur.
    _turn: MutexGuard<'static, ()>,
}

static TURN: Mutex<()> = Mutex::new(());

impl Stage {
    /// A recording of `minutes` starting now, served at recorded pace.
    fn new(minutes: u32) -> Stage {
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let recording = dir.path().join("venue.rec");
        let opts = sluice::synth::SynthOptions {
            minutes,
            feeds: 6,
            tokens: 20,
            seed: 11,
            start_ms: now_ms(),
            faults: false,
        };
        sluice::synth::write_recording(&recording, Codec::Zstd, &opts).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let options = VenueOptions {
            birdeye_api_key: Some(BIRDEYE_KEY.into()),
            hermes_api_key: Some(HERMES_KEY.into()),
            keepalive: Duration::from_millis(500),
            ..VenueOptions::default()
        };
        let venue = rt
            .block_on(Venue::start(
                RecordingInput::File(recording.clone()),
                "127.0.0.1:0".parse().unwrap(),
                options,
            ))
            .unwrap();
        let feeds = venue
            .timeline()
            .hermes_feed_ids()
            .map(str::to_owned)
            .collect();
        Stage {
            dir,
            rt,
            venue: Some(venue),
            recording,
            feeds,
            _turn: turn,
        }
    }

    fn venue(&self) -> &Venue {
        self.venue.as_ref().unwrap()
    }

    fn faults(&self, spec: &str) {
        self.venue().set_faults(spec.parse::<FaultSpec>().unwrap());
    }

    /// The configuration of a live run against this venue: short intervals, so a test sees
    /// breakers open and close within seconds. `extra` overrides come last.
    fn config(&self, extra: &[(&str, Value)]) -> Config {
        let venue = self.venue();
        let feeds: Vec<Value> = self.feeds.iter().map(|f| Value::from(f.as_str())).collect();
        let mut overrides: Vec<(&str, Value)> = vec![
            ("dexscreener.base_url", venue.dexscreener_url().into()),
            ("birdeye.base_url", venue.birdeye_url().into()),
            ("hermes.base_url", venue.hermes_url().into()),
            ("birdeye.api_key", BIRDEYE_KEY.into()),
            ("hermes.api_key", HERMES_KEY.into()),
            ("hermes.feeds", Value::from(feeds)),
            ("serve.listen", "127.0.0.1:0".into()),
            ("journal.inputs", true.into()),
            ("dexscreener.polling_interval_secs", 1u64.into()),
            ("dexscreener.pairs_interval_secs", 1u64.into()),
            ("birdeye.poll_interval_secs", 1u64.into()),
            ("birdeye.requests_per_second", 5u64.into()),
            ("http.timeout_ms", 1000u64.into()),
            ("http.retry_base_ms", 20u64.into()),
            ("http.retry_max_ms", 100u64.into()),
            ("http.retry_attempts", 2u64.into()),
            ("http.circuit_breaker_failure_threshold", 2u64.into()),
            ("http.circuit_breaker_cooldown_secs", 1u64.into()),
            ("hermes.reconnect_initial_ms", 50u64.into()),
            ("hermes.reconnect_max_ms", 300u64.into()),
            ("hermes.watchdog_secs", 3u64.into()),
            ("hermes.fallback_poll_ms", 250u64.into()),
            ("sources.watermark_interval_ms", 100u64.into()),
        ];
        overrides.extend(extra.iter().cloned());
        Config::load(None, &overrides).unwrap()
    }

    /// Starts a live run writing under `name`, recording, with `workers` workers.
    fn live(&self, config: &Config, name: &str, workers: usize) -> LiveRun {
        self.live_with(config, Pipeline::default_pipeline().unwrap(), name, workers)
    }

    /// The same with `pipeline`.
    fn live_with(
        &self,
        config: &Config,
        pipeline: Pipeline,
        name: &str,
        workers: usize,
    ) -> LiveRun {
        let out = self.dir.path().join(name);
        let recording = self.dir.path().join(format!("{name}.rec"));
        let mut options = LiveOptions::new(out.clone());
        options.record = Some(recording.clone());
        options.workers = workers;
        options.signals = false;
        let stop = options.stop.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        options.on_ready = Some(Box::new(move |ready| {
            let _ = ready_tx.send(ready.serve_addr);
        }));
        let wiring = Wiring::new(config, pipeline).unwrap();
        let config = config.clone();
        let thread = std::thread::spawn(move || sluice::live::run(&config, wiring, options));
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the live run never became ready")
            .expect("the live run serves");
        LiveRun {
            stop,
            thread: Some(thread),
            addr,
            out,
            client: reqwest::Client::new(),
        }
    }

    /// GET on the live run's server: status and JSON (or text as a JSON string).
    fn get(&self, live: &LiveRun, path: &str) -> (u16, Json) {
        let url = format!("http://{}{path}", live.addr);
        self.rt.block_on(async {
            let response = live.client.get(&url).send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            let body = serde_json::from_str(&text).unwrap_or(Json::String(text));
            (status, body)
        })
    }

    /// The live run's `/metrics` exposition; fails if it is not text.
    fn metrics(&self, live: &LiveRun) -> String {
        let (_, metrics) = self.get(live, "/metrics");
        metrics.as_str().unwrap().to_owned()
    }

    /// Polls `/health` until its status is `want`, returning the body; fails after `limit`.
    fn await_health(&self, live: &LiveRun, want: u16, limit: Duration) -> Json {
        let deadline = Instant::now() + limit;
        loop {
            let (status, body) = self.get(live, "/health");
            if status == want {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/health stayed {status} ({body}) instead of {want}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `/health` until it is 503 with a reason containing `needle`; returns the body.
    fn await_reason(&self, live: &LiveRun, needle: &str, limit: Duration) -> Json {
        let deadline = Instant::now() + limit;
        loop {
            let (status, body) = self.get(live, "/health");
            if status == 503 && body["reasons"].to_string().contains(needle) {
                return body;
            }
            if Instant::now() >= deadline {
                let (_, state) = self.get(live, "/status");
                panic!(
                    "/health never gave the reason {needle:?}: {status} {body}\n/status: {state}\nvenue: {:?}",
                    self.venue().stats()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Replays `recording` with `workers` workers and returns the journal's bytes.
    fn replay(&self, config: &Config, recording: &Path, workers: usize) -> Vec<u8> {
        let out = self
            .dir
            .path()
            .join(format!("replay-{}-{workers}", now_ms()));
        let wiring = Wiring::new(config, Pipeline::default_pipeline().unwrap()).unwrap();
        let options = ReplayOptions {
            input: RecordingInput::File(recording.to_owned()),
            out_dir: out.clone(),
            cluster: Cluster {
                workers,
                ..Cluster::default()
            },
            progress: None,
        };
        sluice::dataflow::run::replay(config, wiring, options).unwrap();
        std::fs::read(out.join("journal.jsonl")).unwrap()
    }

    /// Fails unless replaying `report`'s recording with `workers` workers rewrites its journal.
    fn assert_replays_to_its_journal(&self, config: &Config, report: &LiveReport, workers: usize) {
        let replayed = self.replay(config, report.recording.as_ref().unwrap(), workers);
        assert!(replayed == std::fs::read(&report.journal).unwrap());
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(venue) = self.venue.take() {
            self.rt.block_on(venue.shutdown());
        }
    }
}

/// A live run on its own thread.
struct LiveRun {
    stop: CancellationToken,
    thread: Option<JoinHandle<Result<LiveReport, RunError>>>,
    addr: SocketAddr,
    out: PathBuf,
    client: reqwest::Client,
}

impl LiveRun {
    /// Stops the run (sources, drain, flush) and returns its report.
    fn stop(mut self) -> LiveReport {
        self.stop.cancel();
        self.thread.take().unwrap().join().unwrap().unwrap()
    }

    fn journal(&self) -> Vec<Json> {
        journal_lines(&std::fs::read(self.out.join("journal.jsonl")).unwrap_or_default())
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn journal_lines(bytes: &[u8]) -> Vec<Json> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn kind(line: &Json) -> &str {
    line["kind"].as_str().unwrap_or_default()
}

fn t(line: &Json) -> u64 {
    line["t"].as_u64().unwrap()
}

/// Waits until `check` holds, polling; fails with `what` after `limit`.
fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn envelopes(recording: &Path) -> Vec<Envelope> {
    let mut reader = RecordingReader::open(recording).unwrap();
    let mut out = Vec::new();
    while let Some(item) = reader.next_item().unwrap() {
        if let Item::Envelope(env) = item {
            out.push(env);
        }
    }
    out
}

/// The provider endpoint status whose name contains `needle`, from `/status`.
fn endpoint_status<'a>(status: &'a Json, needle: &str) -> &'a Json {
    status["providers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["endpoints"].as_array().unwrap())
        .find(|e| e["endpoint"].as_str().unwrap().contains(needle))
        .unwrap_or_else(|| panic!("no endpoint {needle} in {status}"))
}

/// Whether the exposition has a non-zero sample of `name` whose labels contain every `part`.
fn has_series(metrics: &str, name: &str, parts: &[&str]) -> bool {
    metrics.lines().any(|l| {
        l.starts_with(&format!("{name}{{"))
            && parts.iter().all(|p| l.contains(p))
            && !l.ends_with(" 0")
    })
}

fn hermes_prices(journal: &[Json]) -> Vec<(String, u64, u64)> {
    journal
        .iter()
        .filter(|l| kind(l) == "price" && l["source"] == "hermes")
        .map(|l| {
            (
                l["instrument"].as_str().unwrap().to_owned(),
                l["publish_ms"].as_u64().unwrap(),
                t(l),
            )
        })
        .collect()
}

/// Fails if any (feed, publish time) was journaled twice.
fn assert_no_publish_time_twice(seen: &[(String, u64, u64)]) {
    let mut distinct = BTreeSet::new();
    for (feed, publish, _) in seen {
        assert!(
            distinct.insert((feed.clone(), *publish)),
            "{feed} at {publish} was counted twice"
        );
    }
}

/// The oracle of no lost publish time: every update the venue's stream served between `from_ms`
/// and `to_ms` (wall time) was journaled, or superseded by a later publish time of its feed,
/// within `bound_ms` of being served. `offset_ms` is wall time minus venue time. Returns how
/// many updates were checked.
fn assert_publish_times_covered(
    stage: &Stage,
    seen: &[(String, u64, u64)],
    offset_ms: i64,
    (from_ms, to_ms): (u64, u64),
    bound_ms: i64,
) -> usize {
    let mut by_feed: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for (feed, publish, t) in seen {
        by_feed.entry(feed).or_default().push((*publish, *t));
    }
    let mut checked = 0;
    for env in envelopes(&stage.recording) {
        if env.endpoint != Endpoint::HermesStream {
            continue;
        }
        let served = env.t_ms as i64 + offset_ms;
        if served < from_ms as i64 || served > to_ms as i64 - bound_ms {
            continue;
        }
        let doc: Json = serde_json::from_slice(&env.raw).unwrap();
        for update in doc["parsed"].as_array().into_iter().flatten() {
            let feed = update["id"].as_str().unwrap();
            let publish = update["price"]["publish_time"].as_u64().unwrap() * 1000;
            let covered = by_feed
                .get(feed)
                .into_iter()
                .flatten()
                .any(|(p, t)| *p >= publish && (*t as i64) <= served + bound_ms);
            assert!(
                covered,
                "{feed} published at {publish} (served at {served}) was never seen nor superseded"
            );
            checked += 1;
        }
    }
    checked
}

/// Fails unless `report`'s journal has each Hermes publish time once, none lost (over 50 checked).
fn assert_each_hermes_publish_time_once(
    stage: &Stage,
    report: &LiveReport,
    offset_ms: i64,
    window: (u64, u64),
    bound_ms: i64,
) {
    let journal = journal_lines(&std::fs::read(&report.journal).unwrap());
    let seen = hermes_prices(&journal);
    assert_no_publish_time_twice(&seen);
    let checked = assert_publish_times_covered(stage, &seen, offset_ms, window, bound_ms);
    assert!(checked > 50, "only {checked} updates checked");
}

/// Wall time minus venue time: a recorded event at venue time v is served at v + this offset.
fn venue_offset_ms(stage: &Stage) -> i64 {
    now_ms() as i64 - stage.venue().venue_time_ms() as i64
}

/// How many Hermes REST polls `report`'s recording holds.
fn hermes_polls(report: &LiveReport) -> usize {
    envelopes(report.recording.as_ref().unwrap())
        .iter()
        .filter(|e| e.endpoint == Endpoint::HermesLatest)
        .count()
}

/// Fails unless every `/health` sample is 200, polling having covered the stream's `outage`.
fn assert_healthy_throughout(health: &[(u16, Json)], outage: &str) {
    for (status, body) in health {
        assert_eq!(
            *status, 200,
            "unhealthy while polling covered the {outage}: {body}"
        );
    }
}

/// `/health` sampled every 250 ms for `span`: (status, body) of each sample.
fn health_during(stage: &Stage, live: &LiveRun, span: Duration) -> Vec<(u16, Json)> {
    let until = Instant::now() + span;
    let mut samples = Vec::new();
    while Instant::now() < until {
        samples.push(stage.get(live, "/health"));
        std::thread::sleep(Duration::from_millis(250));
    }
    samples
}

/// The value of the first sample of `name` whose labels contain every `part`.
fn metric_value(metrics: &str, name: &str, parts: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && parts.iter().all(|p| l.contains(p)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The rank of `chain:token` in the journal's last boost snapshot.
fn last_snapshot_rank(journal: &[Json], chain: &str, token: &str) -> Option<u64> {
    let snapshot = journal.iter().rev().find(|l| kind(l) == "boost_snapshot")?;
    snapshot["entries"]
        .as_array()?
        .iter()
        .find(|e| e["chain"] == chain && e["token"] == token)
        .and_then(|e| e["rank"].as_u64())
}

// ---------------------------------------------------------------------------------------------
// A clean run.

#[test]
fn clean_run_serves_operations_and_its_recording_replays_to_the_same_journal() {
    let stage = Stage::new(1);
    // The optional DEX Screener key: when configured, it is sent (the venue requires it here).
    stage.venue().require_dexscreener_key(Some(DEX_KEY.into()));
    let config = stage.config(&[("dexscreener.api_key", DEX_KEY.into())]);
    let live = stage.live(&config, "clean", 2);
    // Tests share one process, hence one recorder: counters are compared with their values now.
    let prices_counted = |stage: &Stage| -> Vec<f64> {
        let (_, text) = stage.get(&live, "/metrics");
        let text = text.as_str().unwrap_or_default().to_owned();
        ["hermes", "dexscreener", "birdeye"]
            .iter()
            .map(|source| {
                let label = format!("source=\"{source}\"");
                metric_value(&text, "price_updates_total", &[&label]).unwrap_or(0.0)
            })
            .collect()
    };
    let prices_before = prices_counted(&stage);
    stage.await_health(&live, 200, Duration::from_secs(15));
    eventually(Duration::from_secs(20), "prices from every source", || {
        let journal = live.journal();
        ["hermes", "birdeye", "dexscreener"].iter().all(|source| {
            journal
                .iter()
                .any(|l| kind(l) == "price" && l["source"] == *source)
        }) && journal.iter().any(|l| kind(l) == "push_batch")
    });

    let (status, body) = stage.get(&live, "/status");
    assert_eq!(status, 200);
    assert_eq!(body["healthy"], true);
    for source in ["dexscreener", "birdeye", "hermes"] {
        let view = &body["sources"][source];
        assert!(
            view["last_success_ms"].as_u64().is_some(),
            "{source}: {view}"
        );
        assert!(view["envelopes"].as_u64().unwrap() > 0, "{source}: {view}");
    }
    assert_eq!(body["sources"]["hermes"]["state"], "streaming");
    for source in ["dexscreener", "birdeye", "hermes"] {
        let view = &body["sources"][source];
        assert!(view["last_error"].is_null(), "a clean run failed: {view}");
    }
    assert_eq!(endpoint_status(&body, "boosts")["breaker"], "closed");
    assert!(!body["prices"].as_array().unwrap().is_empty(), "{body}");
    assert!(body["risk"]["tier"].is_string(), "{body}");
    let top = body["trending_top"].as_array().unwrap();
    assert!(!top.is_empty(), "{body}");

    // The tracker's metrics of a trending token; a token never seen is a 404.
    let token = top[0]["token"].as_str().unwrap();
    let (chain, address) = token.split_once(':').unwrap();
    // The store lags the journal by up to a flush: ask until both tell the same snapshot.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let before = last_snapshot_rank(&live.journal(), chain, address);
        let (status, metrics) = stage.get(&live, &format!("/api/trending/{chain}/{address}"));
        assert_eq!(status, 200, "{metrics}");
        let after = last_snapshot_rank(&live.journal(), chain, address);
        if before.is_some() && before == after && metrics["current_rank"].as_u64() == after {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "{token}: the tracker says {metrics}, the last snapshot rank {after:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(metrics["is_trending"], true, "{metrics}");
    assert!(
        metrics["velocity"].is_string() || metrics["velocity"].is_number(),
        "{metrics}"
    );
    let events = metrics["recent_events"].as_array().unwrap();
    assert!(!events.is_empty(), "{metrics}");
    let times: Vec<u64> = events.iter().map(|e| e["t_ms"].as_u64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {metrics}"
    );
    assert!(events.iter().all(|e| e["kind"].is_string()), "{metrics}");
    let (status, _) = stage.get(
        &live,
        "/api/trending/solana/So11111111111111111111111111111111111111111",
    );
    assert_eq!(status, 404);

    let (status, text) = stage.get(&live, "/metrics");
    assert_eq!(status, 200);
    let text = text.as_str().unwrap().to_owned();
    for name in [
        "circuit_breaker_state",
        "circuit_breaker_consecutive_failures",
        "circuit_breaker_success_ratio",
        "circuit_breaker_failures_total",
        "price_updates_total",
        "sse_connection_status",
        "last_update_age_seconds",
        "http_requests_total",
        "http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    // This run's prices are counted, by source.
    eventually(
        Duration::from_secs(10),
        "prices counted for every source",
        || {
            prices_counted(&stage)
                .iter()
                .zip(&prices_before)
                .all(|(now, before)| now > before)
        },
    );
    for source in ["hermes", "dexscreener", "birdeye"] {
        let label = format!("source=\"{source}\"");
        let age = metric_value(&text, "last_update_age_seconds", &[&label])
            .unwrap_or_else(|| panic!("no last_update_age_seconds for {source}:\n{text}"));
        assert!(
            (0.0..5.0).contains(&age),
            "{source} last update {age} s ago"
        );
    }
    assert_eq!(
        metric_value(&text, "sse_connection_status", &["source=\"hermes\""]),
        Some(1.0),
        "the stream is connected:\n{text}"
    );
    assert!(
        has_series(
            &text,
            "http_requests_total",
            &["hermes_stream", "outcome=\"ok\""]
        ),
        "the stream connect is counted:\n{text}"
    );
    for name in monitoring::metrics_named(&["alerts.yml", "grafana-dashboard.json"]) {
        assert!(
            text.lines().any(|l| l.starts_with(&name)),
            "config/monitoring uses {name}, which /metrics does not export:\n{text}"
        );
    }

    let report = live.stop();
    assert!(report.stats.envelopes.values().sum::<u64>() > 0);
    let live_journal = std::fs::read(&report.journal).unwrap();
    assert!(!live_journal.is_empty());
    // Clean input, clean outcome: nothing invalid, nothing failed.
    for line in journal_lines(&live_journal) {
        let kind = kind(&line);
        assert!(
            kind != "invalid_input" && !kind.contains("error") && !kind.contains("fail"),
            "a clean run journaled {line}"
        );
    }
    let dex = stage.venue().stats();
    assert!(dex.endpoints["dexscreener/boosts"].status(200) > 0);
    assert_eq!(
        dex.endpoints["dexscreener/boosts"].status(401),
        0,
        "the key was sent"
    );
    assert_eq!(dex.endpoints["dexscreener/tokens"].status(401), 0);
    let recorded = report.recording.unwrap();
    for workers in [1, 2] {
        let replayed = stage.replay(&config, &recorded, workers);
        assert!(
            replayed == live_journal,
            "the replay with {workers} workers differs from the live journal"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// DEX Screener: a 429 storm opens the breaker; the stale cache is served, never as a new
// snapshot; clearing the fault closes the breaker again.

#[test]
fn dexscreener_429_storm_opens_the_breaker_serves_stale_and_recovers() {
    let stage = Stage::new(1);
    let config = stage.config(&[]);
    let live = stage.live(&config, "storm", 1);
    stage.await_health(&live, 200, Duration::from_secs(15));
    eventually(Duration::from_secs(10), "a first boost snapshot", || {
        live.journal().iter().any(|l| kind(l) == "boost_snapshot")
    });

    stage.faults("dexscreener:error_rate=1,status=429,retry_after=1s");
    stage.await_reason(&live, "dexscreener_boosts", Duration::from_secs(15));
    let opened_ms = now_ms();
    let (_, status) = stage.get(&live, "/status");
    assert_ne!(endpoint_status(&status, "boosts")["breaker"], "closed");
    assert_eq!(status["healthy"], false);
    // The last good boosts are still served (stale) for the tracked tokens.
    eventually(Duration::from_secs(10), "stale boosts in use", || {
        let (_, status) = stage.get(&live, "/status");
        endpoint_status(&status, "boosts")["serving_stale"] == true
    });
    // Hermes is untouched by the storm.
    std::thread::sleep(Duration::from_secs(3));
    let metrics = stage.metrics(&live);
    assert!(
        has_series(
            &metrics,
            "http_requests_total",
            &["dexscreener", "rate_limited"]
        ),
        "429s are counted as rate_limited:\n{metrics}"
    );

    stage.faults("");
    let cleared_ms = now_ms();
    stage.await_health(&live, 200, Duration::from_secs(20));
    let (_, status) = stage.get(&live, "/status");
    assert_eq!(endpoint_status(&status, "boosts")["breaker"], "closed");
    eventually(Duration::from_secs(10), "a fresh boost snapshot", || {
        live.journal()
            .iter()
            .any(|l| kind(l) == "boost_snapshot" && t(l) > cleared_ms)
    });
    let report = live.stop();

    let journal = journal_lines(&std::fs::read(&report.journal).unwrap());
    let during: Vec<u64> = journal
        .iter()
        .filter(|l| kind(l) == "boost_snapshot")
        .map(t)
        .filter(|t| *t > opened_ms && *t < cleared_ms)
        .collect();
    assert!(
        during.is_empty(),
        "a stale response became a trending snapshot at {during:?}"
    );
    let hermes_during = hermes_prices(&journal)
        .iter()
        .filter(|(_, _, t)| *t > opened_ms && *t < cleared_ms)
        .count();
    assert!(
        hermes_during > 0,
        "Hermes stopped during a DEX Screener storm"
    );
    assert!(stage.venue().stats().endpoints["dexscreener/boosts"].statuses[&429] > 0);
    stage.assert_replays_to_its_journal(&config, &report, 1);
}

// ---------------------------------------------------------------------------------------------
// A pipeline without the store sink still has the stale cache (the store is opened for it).

#[test]
fn without_the_store_sink_a_failing_endpoint_still_serves_the_stale_cache() {
    let stage = Stage::new(1);
    let config = stage.config(&[]);
    let mut pipeline = Pipeline::default_pipeline().unwrap();
    pipeline.sinks.retain(|sink| *sink != SinkKind::Store);
    assert!(!pipeline.sinks.is_empty());
    let live = stage.live_with(&config, pipeline, "nostore", 1);
    stage.await_health(&live, 200, Duration::from_secs(15));
    eventually(Duration::from_secs(10), "a first good boost list", || {
        let (_, status) = stage.get(&live, "/status");
        status
            .to_string()
            .contains("\"endpoint\":\"dexscreener_boosts\"")
            && endpoint_status(&status, "boosts")["cache_age_ms"].is_u64()
    });
    stage.faults("dexscreener:error_rate=1,status=503");
    eventually(Duration::from_secs(15), "stale boosts served", || {
        let (_, status) = stage.get(&live, "/status");
        endpoint_status(&status, "boosts")["serving_stale"] == true
            && status["sources"]["dexscreener"]["state"] == "stale-cache"
    });
    // The run keeps no state store of its own: /status shows no trending from the cache's.
    let (_, status) = stage.get(&live, "/status");
    assert!(status.get("trending_top").is_none(), "{status}");
    let report = live.stop();
    assert!(report.store.is_none());
}

// ---------------------------------------------------------------------------------------------
// Birdeye: 5xx bursts, then timeouts; the breaker opens, half-opens, and closes on recovery.

#[test]
fn birdeye_5xx_bursts_and_timeouts_trip_the_breaker_and_recover() {
    let stage = Stage::new(1);
    let config = stage.config(&[("http.timeout_ms", 300u64.into())]);
    let live = stage.live(&config, "birdeye", 1);
    stage.await_health(&live, 200, Duration::from_secs(15));
    eventually(Duration::from_secs(10), "a first Birdeye price", || {
        live.journal()
            .iter()
            .any(|l| kind(l) == "price" && l["source"] == "birdeye")
    });

    // Intermittent: half the calls fail; retries carry most of them, prices keep coming.
    stage.faults("birdeye:error_rate=0.5,status=503");
    let flaky_ms = now_ms();
    eventually(
        Duration::from_secs(15),
        "Birdeye prices through intermittent 5xx",
        || {
            let stats = stage.venue().stats();
            stats.endpoints["birdeye/multi_price"].status(503) >= 3
                && live
                    .journal()
                    .iter()
                    .filter(|l| kind(l) == "price" && l["source"] == "birdeye" && t(l) > flaky_ms)
                    .count()
                    >= 2
        },
    );
    let metrics = stage.metrics(&live);
    assert!(
        has_series(&metrics, "http_retries_total", &["\"birdeye\""]),
        "intermittent failures are retried:\n{metrics}"
    );

    stage.faults("birdeye:error_rate=1,status=503");
    let body = stage.await_health(&live, 503, Duration::from_secs(15));
    assert!(
        body["reasons"].to_string().contains("multi_price"),
        "{body}"
    );
    let down_ms = now_ms();
    // The last good prices are served from the stale cache, and never handed over as new.
    eventually(
        Duration::from_secs(10),
        "Birdeye stale cache in use",
        || {
            let (_, status) = stage.get(&live, "/status");
            endpoint_status(&status, "multi_price")["serving_stale"] == true
                && status["sources"]["birdeye"]["state"] == "stale-cache"
        },
    );

    stage.faults("birdeye:timeout_rate=1");
    // Through cooldowns the breaker probes (half-open) and fails again: never healthy.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let (status, body) = stage.get(&live, "/health");
        assert_eq!(
            status, 503,
            "healthy while every Birdeye call times out: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let metrics = stage.metrics(&live);
    for outcome in ["http_5xx", "timeout"] {
        assert!(
            has_series(&metrics, "http_requests_total", &["\"birdeye\"", outcome]),
            "no Birdeye {outcome} counted:\n{metrics}"
        );
    }

    stage.faults("");
    let cleared_ms = now_ms();
    stage.await_health(&live, 200, Duration::from_secs(20));
    eventually(Duration::from_secs(10), "Birdeye prices again", || {
        live.journal()
            .iter()
            .any(|l| kind(l) == "price" && l["source"] == "birdeye" && t(l) > cleared_ms)
    });
    let report = live.stop();
    let stats = stage.venue().stats();
    let multi = &stats.endpoints["birdeye/multi_price"];
    assert!(multi.statuses[&503] > 0, "{multi:?}");
    let handed_while_down: Vec<u64> = envelopes(report.recording.as_ref().unwrap())
        .iter()
        .filter(|e| e.endpoint == Endpoint::BirdeyeMultiPrice)
        .map(|e| e.t_ms)
        .filter(|t| *t > down_ms && *t < cleared_ms)
        .collect();
    assert!(
        handed_while_down.is_empty(),
        "a stale Birdeye body reached the dataflow at {handed_while_down:?}"
    );
    stage.assert_replays_to_its_journal(&config, &report, 2);
}

// ---------------------------------------------------------------------------------------------
// Hermes: the stream drops every couple of seconds, then ends as Hermes ends it; polling covers
// the gaps; no publish time is lost or counted twice.

#[test]
fn hermes_stream_drops_fail_over_to_polling_without_losing_or_repeating_a_publish_time() {
    let stage = Stage::new(1);
    let config = stage.config(&[]);
    stage.faults("hermes/stream:drop_every=2s");
    let live = stage.live(&config, "drops", 1);
    let offset = venue_offset_ms(&stage);
    let started = now_ms();
    let mut health = health_during(&stage, &live, Duration::from_secs(6));
    // Then Hermes' own close (its 24-hour limit, here after 2 s): an `event:error`, then EOF.
    stage.faults("hermes/stream:max_stream=2s");
    health.extend(health_during(&stage, &live, Duration::from_secs(6)));
    let stopped = now_ms();
    // Polling covers every outage, so the run is healthy throughout, and says so.
    assert_healthy_throughout(&health, "stream");
    let report = live.stop();

    let stream = &stage.venue().stats().endpoints["hermes/stream"];
    assert!(stream.sse_dropped >= 2, "{stream:?}");
    assert!(stream.sse_ended >= 1, "{stream:?}");
    assert!(
        hermes_polls(&report) > 0,
        "the stream dropped but REST was never polled"
    );

    assert_each_hermes_publish_time_once(
        &stage,
        &report,
        offset,
        (started + 2_000, stopped),
        2_500,
    );

    stage.assert_replays_to_its_journal(&config, &report, 2);
}

// ---------------------------------------------------------------------------------------------
// Hermes: the stream goes silent with the connection held open; the watchdog gives up on it,
// polling covers, the stream comes back; no publish time is lost or counted twice.

#[test]
fn hermes_stream_stalls_trip_the_watchdog_and_polling_covers_every_publish_time() {
    let stage = Stage::new(1);
    let watchdog_secs = 1u64;
    let config = stage.config(&[("hermes.watchdog_secs", watchdog_secs.into())]);
    let live = stage.live(&config, "stalls", 1);
    stage.await_health(&live, 200, Duration::from_secs(15));
    let offset = venue_offset_ms(&stage);
    let started = now_ms();
    // Every stream (the open one included) goes silent 2 s after it opened: no event, no
    // keep-alive, the connection open.
    stage.faults("hermes/stream:stall_after=2s");
    let health = health_during(&stage, &live, Duration::from_secs(10));
    let stopped = now_ms();
    let (_, status) = stage.get(&live, "/status");
    assert_healthy_throughout(&health, "stall");
    let report = live.stop();

    let stream = &stage.venue().stats().endpoints["hermes/stream"];
    assert!(stream.sse_stalled >= 2, "{stream:?}");
    assert!(
        stream.sse_opened >= 3,
        "the watchdog reconnected: {stream:?}"
    );
    let last_error = status["sources"]["hermes"]["last_error"].to_string();
    assert!(
        last_error.contains("no event or keep-alive"),
        "the watchdog's reason: {status}"
    );
    assert!(
        hermes_polls(&report) > 0,
        "the stream stalled but REST was never polled"
    );

    // A stall is noticed a watchdog late; polling then covers it at once.
    let bound_ms = (watchdog_secs * 1000 + 1_500) as i64;
    assert_each_hermes_publish_time_once(
        &stage,
        &report,
        offset,
        (started + 1_000, stopped),
        bound_ms,
    );
    stage.assert_replays_to_its_journal(&config, &report, 1);
}

// ---------------------------------------------------------------------------------------------
// Malformed bodies: journaled as invalid input, the flow goes on.

#[test]
fn malformed_bodies_are_journaled_and_the_flow_goes_on() {
    let stage = Stage::new(1);
    let config = stage.config(&[]);
    stage.faults(
        "dexscreener:malformed_rate=0.5;birdeye:malformed_rate=0.5;hermes:malformed_rate=0.2",
    );
    let live = stage.live(&config, "malformed", 1);
    eventually(
        Duration::from_secs(25),
        "invalid input and good prices from every source",
        || {
            let journal = live.journal();
            let invalid: BTreeSet<&str> = journal
                .iter()
                .filter(|l| kind(l) == "invalid_input")
                .filter_map(|l| l["endpoint"].as_str())
                .collect();
            let priced: BTreeSet<&str> = journal
                .iter()
                .filter(|l| kind(l) == "price")
                .filter_map(|l| l["source"].as_str())
                .collect();
            invalid.contains("hermes_stream")
                && invalid.iter().any(|e| e.starts_with("dexscreener"))
                && invalid.iter().any(|e| e.starts_with("birdeye"))
                && priced.len() == 3
        },
    );
    // A malformed 2xx is a decode failure: counted, and it trips the breaker; /health says so.
    let metrics = stage.metrics(&live);
    for source in ["\"dexscreener\"", "\"birdeye\""] {
        assert!(
            has_series(
                &metrics,
                "http_requests_total",
                &[source, "outcome=\"decode\""]
            ),
            "no {source} decode outcome counted:\n{metrics}"
        );
    }
    stage.await_reason(&live, "circuit breaker", Duration::from_secs(20));
    // Clean bodies again: the breakers close and the run is healthy.
    stage.faults("");
    stage.await_health(&live, 200, Duration::from_secs(20));
    let report = live.stop();
    stage.assert_replays_to_its_journal(&config, &report, 1);
}

// ---------------------------------------------------------------------------------------------
// Hermes down (stream and REST): the source goes stale and /health says so.

#[test]
fn hermes_down_makes_the_source_stale_and_health_says_so() {
    let stage = Stage::new(1);
    let config = stage.config(&[("hermes.stale_after_secs", 2u64.into())]);
    let live = stage.live(&config, "stale", 1);
    stage.await_health(&live, 200, Duration::from_secs(15));
    // New connections and polls fail; the open stream is dropped.
    stage.faults("hermes:error_rate=1,status=503;hermes/stream:drop_every=500ms");
    stage.await_reason(&live, "source hermes is stale", Duration::from_secs(15));
    let (_, status) = stage.get(&live, "/status");
    assert_ne!(
        status["sources"]["hermes"]["state"], "streaming",
        "{status}"
    );
    assert!(
        status["sources"]["hermes"]["last_error"].is_string(),
        "{status}"
    );
    // The refused stream connects are counted like the layer's requests, with their latency.
    let metrics = stage.metrics(&live);
    assert!(
        has_series(
            &metrics,
            "http_requests_total",
            &["endpoint=\"hermes_stream\"", "outcome=\"http_5xx\""]
        ),
        "{metrics}"
    );
    assert!(
        has_series(
            &metrics,
            "http_request_duration_seconds_count",
            &["endpoint=\"hermes_stream\"", "outcome=\"http_5xx\""]
        ),
        "{metrics}"
    );
    stage.faults("");
    stage.await_health(&live, 200, Duration::from_secs(20));
    // Polling may bring the source back before the stream reconnects; then the stream does.
    eventually(Duration::from_secs(10), "the stream back", || {
        let (_, status) = stage.get(&live, "/status");
        status["sources"]["hermes"]["state"] == "streaming"
    });
    drop(live);
}

// ---------------------------------------------------------------------------------------------
// Secrets: `sluice run` as an operator runs it, debug logs in JSON, the keys from the
// environment; no output carries them. SIGTERM stops it whole.

/// `sluice run` as an operator runs it: a config file with short intervals, the venue's base
/// URLs and the keys from the environment.
struct CliRun {
    child: std::process::Child,
    addr: SocketAddr,
    /// Everything the child writes to stderr, once it has exited.
    stderr: JoinHandle<Vec<u8>>,
    out: PathBuf,
    recording: PathBuf,
    config_file: PathBuf,
}

fn spawn_cli(stage: &Stage, name: &str, rust_log: &str, extra_env: &[(&str, &str)]) -> CliRun {
    let venue = stage.venue();
    let out = stage.dir.path().join(name);
    let recording = stage.dir.path().join(format!("{name}.rec"));
    let config_file = stage.dir.path().join(format!("{name}.toml"));
    let feeds: Vec<String> = stage.feeds.iter().map(|f| format!("{f:?}")).collect();
    std::fs::write(
        &config_file,
        format!(
            "[hermes]\nfeeds = [{}]\nfallback_poll_ms = 250\n[serve]\nlisten = \"127.0.0.1:0\"\n\
             [dexscreener]\npolling_interval_secs = 1\npairs_interval_secs = 1\n\
             [birdeye]\npoll_interval_secs = 1\nrequests_per_second = 5\n",
            feeds.join(",")
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config_file)
        .arg("--out")
        .arg(&out)
        .arg("--record")
        .arg(&recording)
        .env("RUST_LOG", rust_log)
        .env("SLUICE__DEXSCREENER__BASE_URL", venue.dexscreener_url())
        .env("SLUICE__BIRDEYE__BASE_URL", venue.birdeye_url())
        .env("SLUICE__HERMES__BASE_URL", venue.hermes_url())
        .env("BIRDEYE_API_KEY", BIRDEYE_KEY)
        .env("HERMES_API_KEY", HERMES_KEY)
        .envs(extra_env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The server's address is on stderr; read it on a thread that keeps everything.
    let mut stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let mut sent = false;
        loop {
            let n = stderr.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if !sent && let Some(at) = String::from_utf8_lossy(&all).find("serving http://") {
                let text = String::from_utf8_lossy(&all[at + 15..]).to_string();
                if let Some(end) = text.find('/') {
                    let _ = addr_tx.send(text[..end].to_owned());
                    sent = true;
                }
            }
        }
        all
    });
    let addr: SocketAddr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .parse()
        .unwrap();
    CliRun {
        child,
        addr,
        stderr: reader,
        out,
        recording,
        config_file,
    }
}

#[test]
fn planted_keys_never_reach_logs_status_metrics_journal_or_recording() {
    let stage = Stage::new(1);
    let dex_key = "dex-live-test-key-77aa01";
    let CliRun {
        mut child,
        addr,
        stderr: reader,
        out,
        recording,
        config_file,
    } = spawn_cli(&stage, "cli", "debug", &[("DEX_SCREENER_API_KEY", dex_key)]);
    let client = reqwest::Client::new();
    let fetch = |path: &str| -> String {
        stage
            .rt
            .block_on(http_get::text(&client, &format!("http://{addr}{path}")))
    };
    eventually(Duration::from_secs(20), "the run to be healthy", || {
        fetch("/status").contains("\"healthy\":true")
    });
    // Birdeye answered with the key at least once before it starts failing (healthy may come
    // before its first poll on a busy machine).
    eventually(Duration::from_secs(20), "a Birdeye poll to succeed", || {
        stage
            .venue()
            .stats()
            .endpoints
            .get("birdeye/multi_price")
            .is_some_and(|e| e.statuses.get(&200).is_some_and(|n| *n > 0))
    });
    // A failing endpoint puts errors in the logs and /status too.
    stage.faults("birdeye:error_rate=1,status=401");
    std::thread::sleep(Duration::from_secs(3));
    let mut outputs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    outputs.insert("/status".into(), fetch("/status").into_bytes());
    outputs.insert("/metrics".into(), fetch("/metrics").into_bytes());
    outputs.insert("/health".into(), fetch("/health").into_bytes());

    // SIGTERM: a graceful stop.
    signal::send(&child, "TERM");
    let exit = child.wait().unwrap();
    assert!(exit.success(), "sluice run exited with {exit}");
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let stderr = reader.join().unwrap();
    assert!(
        String::from_utf8_lossy(&stderr).contains("\"level\":\"DEBUG\""),
        "debug logs were not on"
    );
    outputs.insert("stdout".into(), stdout);
    outputs.insert("stderr".into(), stderr);
    outputs.insert(
        "journal".into(),
        std::fs::read(out.join("journal.jsonl")).unwrap(),
    );
    outputs.insert("recording".into(), std::fs::read(&recording).unwrap());
    // The recording is zstd: search its decoded envelopes too.
    let decoded: Vec<u8> = envelopes(&recording)
        .into_iter()
        .flat_map(|e| [e.context.into_bytes(), e.raw.to_vec()].concat())
        .collect();
    assert!(!decoded.is_empty());
    outputs.insert("recording (decoded)".into(), decoded);
    for (name, bytes) in &outputs {
        for key in [dex_key, BIRDEYE_KEY, HERMES_KEY] {
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "{name} leaks a key"
            );
        }
    }
    // The venue did get the keys: they were in use.
    let stats = stage.venue().stats();
    assert!(!stats.endpoints["hermes/stream"].statuses.contains_key(&401));
    assert!(stats.endpoints["hermes/stream"].statuses[&200] > 0);
    assert!(stats.endpoints["birdeye/multi_price"].statuses[&200] > 0);
    // And the run recorded whole: its replay matches.
    let config = Config::load(Some(&config_file), &[]).unwrap();
    let replayed = stage.replay(&config, &recording, 1);
    assert!(replayed == std::fs::read(out.join("journal.jsonl")).unwrap());
}

// ---------------------------------------------------------------------------------------------
// SIGINT (Ctrl-C at a terminal) stops `sluice run` as gracefully as SIGTERM: exit 0, the
// recording closed whole, its replay the journal the run wrote.

#[test]
fn sigint_stops_sluice_run_gracefully_and_its_recording_replays() {
    let stage = Stage::new(1);
    let mut run = spawn_cli(&stage, "sigint", "info", &[]);
    let client = reqwest::Client::new();
    let url = format!("http://{}/status", run.addr);
    eventually(Duration::from_secs(20), "a healthy run with data", || {
        let status = stage.rt.block_on(http_get::json(&client, &url));
        status["healthy"] == true
            && ["dexscreener", "birdeye", "hermes"]
                .iter()
                .all(|s| status["sources"][s]["envelopes"].as_u64().unwrap_or(0) > 0)
    });

    signal::send(&run.child, "INT");
    let exit = run.child.wait().unwrap();
    assert!(exit.success(), "sluice run exited with {exit} on SIGINT");
    let stderr = String::from_utf8_lossy(&run.stderr.join().unwrap()).into_owned();
    assert!(
        stderr.contains("SIGINT"),
        "the stop was not logged:\n{stderr}"
    );
    let journal = std::fs::read(run.out.join("journal.jsonl")).unwrap();
    // Closed whole: read to its end without error, with what every source delivered.
    let recorded: BTreeSet<_> = envelopes(&run.recording)
        .iter()
        .map(|e| e.endpoint.source())
        .collect();
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    let config = Config::load(Some(&run.config_file), &[]).unwrap();
    let replayed = stage.replay(&config, &run.recording, 1);
    assert!(replayed == journal, "the replay differs from the journal");
}

// ---------------------------------------------------------------------------------------------
// `sluice bench live --json`: the shape operators and CI scripts read.

#[test]
fn bench_live_reports_latency_quantiles_per_rate_as_json() {
    let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "bench",
            "live",
            "--rates",
            "200,400",
            "--secs",
            "1",
            "--warmup-secs",
            "1",
            "--feeds",
            "100",
            "--json",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Json = serde_json::from_slice(&output.stdout).unwrap();
    let rates = result["rates"].as_object().unwrap();
    assert_eq!(rates.keys().collect::<Vec<_>>(), ["200", "400"]);
    for (rate, figures) in rates {
        let q = |k: &str| figures[k].as_f64().unwrap();
        assert!(q("p50_ms") > 0.0, "{rate}: {figures}");
        assert!(
            q("p50_ms") <= q("p99_ms") && q("p99_ms") <= q("p999_ms"),
            "{figures}"
        );
        assert!(figures["samples"].as_u64().unwrap() > 10, "{figures}");
        assert_eq!(figures["unmatched"], 0, "{figures}");
        // The venue's speed-up gives the asked rate, give or take scheduling.
        let want: f64 = rate.parse().unwrap();
        let achieved = q("updates_per_sec");
        assert!(
            achieved > want * 0.7 && achieved < want * 1.3,
            "{rate}: achieved {achieved}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// `sluice check` prints the effective configuration: keys redacted, RPC URLs without paths.

#[test]
fn check_prints_no_key_and_no_rpc_url_path() {
    let rpc_key = "rpc-path-key-31c9e2";
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check")
        .env("BIRDEYE_API_KEY", BIRDEYE_KEY)
        .env("HERMES_API_KEY", HERMES_KEY)
        .env(
            "RPC_URL",
            format!("https://eth.example.org/v2/{rpc_key}?token={rpc_key}"),
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    for secret in [BIRDEYE_KEY, HERMES_KEY, rpc_key] {
        assert!(
            !text.contains(secret),
            "sluice check shows a secret:\n{text}"
        );
    }
    assert!(text.contains("https://eth.example.org"), "{text}");
}
