//! `sluice bench live`: ingest latency of the live pipeline, from a Hermes event's bytes
//! coming off the stream to its journal line being written, at fixed update rates, with the
//! venue and the pipeline on loopback.
//!
//! The venue streams a generated Hermes feed (every feed publishes once per second, in small
//! events) sped up to the wanted rate; the pipeline runs with 1 ms ticks and journals every
//! input, so each event's prices are journal lines of its own. The Hermes source tells the
//! benchmark when each event arrived and at which ingest time; the journal tells it when each
//! ingest time reached the file. No debounce window sits on this path: prices are journaled
//! as they are ingested.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use figment::value::Value;
use hdrhistogram::Histogram;
use serde_json::json;

use sluice::config::{Config, Pipeline};
use sluice::dataflow::graph::Wiring;
use sluice::live::LiveOptions;
use sluice::venue::{Timeline, Venue, VenueOptions};

/// Arguments of `sluice bench live`.
#[derive(Debug, Args)]
pub struct LiveBenchArgs {
    /// Hermes updates per second to measure at.
    #[arg(long, value_delimiter = ',', default_values_t = [1000u32, 10000])]
    pub rates: Vec<u32>,
    /// Seconds measured at each rate (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub secs: u32,
    /// Seconds at each rate before measuring (connections open, caches warm).
    #[arg(long, default_value_t = 2)]
    pub warmup_secs: u32,
    /// Feeds streamed; the venue's speed-up makes the rate.
    #[arg(long, default_value_t = 500)]
    pub feeds: usize,
    /// Feed updates per stream event.
    #[arg(long, default_value_t = 5)]
    pub per_event: usize,
    /// Timely workers.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What one rate measured.
struct RateFigures {
    latency_us: Histogram<u64>,
    updates_per_sec: f64,
    events: u64,
    unmatched: u64,
}

pub fn run(args: LiveBenchArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(
        args.feeds > 0 && args.per_event > 0,
        "--feeds and --per-event must be > 0"
    );
    anyhow::ensure!(args.secs > 0, "--secs must be > 0");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut rates = serde_json::Map::new();
    for &rate in &args.rates {
        anyhow::ensure!(rate > 0, "rates must be > 0");
        let figures = measure(&args, rate)?;
        let q = |q: f64| figures.latency_us.value_at_quantile(q) as f64 / 1000.0;
        rates.insert(
            rate.to_string(),
            json!({
                "p50_ms": q(0.5),
                "p99_ms": q(0.99),
                "p999_ms": q(0.999),
                "max_ms": figures.latency_us.max() as f64 / 1000.0,
                "samples": figures.latency_us.len(),
                "events": figures.events,
                "unmatched": figures.unmatched,
                "updates_per_sec": (figures.updates_per_sec * 10.0).round() / 10.0,
            }),
        );
    }
    let result = json!({ "rates": rates });
    if args.json {
        println!("{result}");
    } else {
        println!(
            "{:>8} {:>12} {:>9} {:>9} {:>9} {:>9}",
            "rate/s", "achieved/s", "p50 ms", "p99 ms", "p999 ms", "max ms"
        );
        for (rate, r) in &rates {
            println!(
                "{rate:>8} {:>12} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                r["updates_per_sec"],
                r["p50_ms"].as_f64().unwrap_or_default(),
                r["p99_ms"].as_f64().unwrap_or_default(),
                r["p999_ms"].as_f64().unwrap_or_default(),
                r["max_ms"].as_f64().unwrap_or_default(),
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs venue and pipeline at `rate` updates per second and measures every event.
fn measure(args: &LiveBenchArgs, rate: u32) -> anyhow::Result<RateFigures> {
    let speed = f64::from(rate) / args.feeds as f64;
    let wall_secs = args.warmup_secs + args.secs;
    // Recorded seconds the run needs, with a margin so the stream never runs dry.
    let recorded_secs = (f64::from(wall_secs + 2) * speed).ceil() as u32 + 1;
    let start_ms = sluice::sources::now_ms();
    let events_per_sec = (args.feeds / args.per_event).max(1) as u32;
    let envelopes =
        sluice::synth::load::hermes_stream(args.feeds, events_per_sec, recorded_secs, start_ms, 7);
    let timeline = Timeline::from_envelopes(envelopes);
    let feeds: Vec<Value> = timeline.hermes_feed_ids().map(Value::from).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let options = VenueOptions {
        speed,
        rate_limits: false,
        keepalive: Duration::from_secs(1),
        ..VenueOptions::default()
    };
    let venue = runtime.block_on(Venue::start_timeline(
        timeline,
        "127.0.0.1:0".parse()?,
        options,
    ))?;
    let out = tempfile::Builder::new()
        .prefix("sluice-bench-live")
        .tempdir()?;
    // A sped-up feed publishes ahead of the wall clock: allow it.
    let skew_ms = (f64::from(recorded_secs) * 1000.0) as u64 + 60_000;
    let overrides: Vec<(&str, Value)> = vec![
        ("hermes.base_url", venue.hermes_url().into()),
        ("hermes.feeds", Value::from(feeds)),
        ("hermes.watchdog_secs", 30u64.into()),
        ("dataflow.tick_ms", 1u64.into()),
        ("dataflow.max_future_skew_ms", skew_ms.into()),
        ("journal.inputs", true.into()),
        ("sources.watermark_interval_ms", 50u64.into()),
    ];
    let config = Config::load(None, &overrides)?;
    let pipeline = Pipeline::parse(
        "name = \"bench-live\"\nsources = [\"hermes\"]\ncomputations = [\"fusion\", \"debounce\"]\nsinks = [\"journal\"]\n",
        "bench-live",
    )?;
    let wiring = Wiring::new(&config, pipeline).map_err(anyhow::Error::msg)?;

    // Receipts: (ingest time, arrival); journal writes: (time, written).
    let receipts: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let writes: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let mut options = LiveOptions::new(out.path().to_owned());
    options.workers = args.workers;
    options.serve = false;
    options.signals = false;
    let stop = options.stop.clone();
    {
        let receipts = Arc::clone(&receipts);
        options.hermes_receipts = Some(Arc::new(move |t_ms, at| {
            if let Ok(mut r) = receipts.lock() {
                r.push((t_ms, at));
            }
        }));
        let writes = Arc::clone(&writes);
        options.journal_probe = Some(Arc::new(move |time| {
            let now = Instant::now();
            if let Ok(mut w) = writes.lock() {
                w.push((time, now));
            }
        }));
    }
    let runner = std::thread::spawn(move || sluice::live::run(&config, wiring, options));
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(u64::from(args.warmup_secs)));
    let measure_from = Instant::now();
    std::thread::sleep(Duration::from_secs(u64::from(args.secs)));
    let measure_to = Instant::now();
    stop.cancel();
    let report = runner
        .join()
        .map_err(|_| anyhow::anyhow!("the live run panicked"))??;
    runtime.block_on(venue.shutdown());
    tracing::debug!(elapsed = ?started.elapsed(), journal = %report.journal.display(), "live run done");

    let receipts = std::mem::take(&mut *receipts.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let mut writes = std::mem::take(&mut *writes.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    writes.sort_by_key(|(time, _)| *time);
    let mut latency_us = Histogram::<u64>::new(3)?;
    let (mut events, mut unmatched) = (0u64, 0u64);
    for (t_ms, at) in receipts {
        if at < measure_from || at >= measure_to {
            continue;
        }
        events += 1;
        // The first write of a time at or after this event's: its lines are in the file.
        let i = writes.partition_point(|(time, _)| *time < t_ms);
        match writes.get(i) {
            Some((_, written)) => {
                let us = written.saturating_duration_since(at).as_micros() as u64;
                latency_us.record(us.max(1))?;
            }
            None => unmatched += 1,
        }
    }
    let measured = measure_to.duration_since(measure_from).as_secs_f64();
    Ok(RateFigures {
        latency_us,
        updates_per_sec: events as f64 * args.per_event as f64 / measured,
        events,
        unmatched,
    })
}
