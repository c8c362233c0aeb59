//! The whole pipeline end to end on a small synthetic recording, next to a parse-only floor:
//! run with `cargo bench --bench replay`.
//!
//! A synthetic recording (the bundled recording's shape: faults, outage and gap included, but
//! only a few minutes long) is written to a temporary file once. Then, per iteration:
//!
//! - `replay/parse_only_floor/price_updates`: read the file with `RecordingReader::open` and
//!   parse every envelope on this thread, no dataflow: the cost a pipeline cannot avoid.
//! - `replay/pipeline_1_worker/price_updates` and `replay/pipeline_2_workers/price_updates`:
//!   `sluice::dataflow::run::replay` with the default configuration and pipeline, writing the
//!   journal and the store into a fresh output directory (created and removed outside the
//!   timing).
//!
//! Every benchmark's throughput is the recording's price updates, so the `thrpt` figures compare
//! directly. This is a quick, small check (`sample_size(10)`); `sluice bench` is the full-size
//! harness, with millions of updates and a fresh process per measurement.
//!
//! A quick run: `cargo bench --bench replay -- --warm-up-time 1`. `SLUICE_BENCH_MINUTES` and
//! `SLUICE_BENCH_FEEDS` change the recording's size (default 4 minutes of 100 feeds).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

use sluice::config::{Config, Pipeline};
use sluice::dataflow::graph::Wiring;
use sluice::dataflow::run::{Cluster, RecordingInput, ReplayOptions, ReplayReport, replay};
use sluice::model::Record;
use sluice::model::parse::{ParseContext, parse_envelope};
use sluice::record::{Codec, Item, RecordingReader};
use sluice::synth::SynthOptions;

/// Minutes of the recording and Pyth feeds per Hermes event, unless the environment says
/// otherwise (`SLUICE_BENCH_MINUTES`, `SLUICE_BENCH_FEEDS`).
const MINUTES: u32 = 4;
const FEEDS: u32 = 100;

fn env_or(name: &str, default: u32) -> u32 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// What the floor counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Floor {
    envelopes: u64,
    prices: u64,
    bytes: u64,
}

/// Reads and parses every envelope of `recording`, as `sluice bench` does for its floor.
fn parse_floor(recording: &Path, wiring: &Wiring) -> Floor {
    let ctx = ParseContext {
        assets: &wiring.parse.assets,
        max_future_skew_ms: wiring.parse.max_future_skew_ms,
    };
    let mut reader = RecordingReader::open(recording).expect("open the recording");
    let mut records = Vec::new();
    let mut floor = Floor::default();
    while let Some(item) = reader.next_item().expect("a whole recording") {
        if let Item::Envelope(env) = item {
            floor.envelopes += 1;
            floor.bytes += env.raw.len() as u64;
            parse_envelope(&env, &ctx, &mut records);
            floor.prices += records
                .iter()
                .filter(|r| matches!(r, Record::Price(_)))
                .count() as u64;
            black_box(&records);
            records.clear();
        }
    }
    floor
}

/// One replay into `out_dir`.
fn run_replay(
    config: &Config,
    wiring: &Wiring,
    recording: &Path,
    out_dir: &Path,
    workers: usize,
) -> ReplayReport {
    let options = ReplayOptions {
        input: RecordingInput::File(recording.to_owned()),
        out_dir: out_dir.to_owned(),
        cluster: Cluster {
            workers,
            ..Default::default()
        },
        progress: None,
    };
    replay(config, wiring.clone(), options).expect("replay")
}

fn bench_replay(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("sluice-replay-bench")
        .tempdir()
        .expect("a temporary directory");
    let recording = dir.path().join("bench.rec");
    let (minutes, feeds) = (
        env_or("SLUICE_BENCH_MINUTES", MINUTES),
        env_or("SLUICE_BENCH_FEEDS", FEEDS),
    );
    let options = SynthOptions {
        minutes,
        feeds,
        ..SynthOptions::default()
    };
    let summary = sluice::synth::write_recording(&recording, Codec::None, &options)
        .expect("write the synthetic recording");
    let config = Config::load(None, &[]).expect("the default configuration");
    let pipeline = Pipeline::default_pipeline().expect("the default pipeline");
    let wiring = Wiring::new(&config, pipeline).expect("wiring");

    // One pass of each, outside the timing: the page cache is warm, and the counts agree.
    let floor = parse_floor(&recording, &wiring);
    let scratch = dir.path().join("check");
    for workers in [1, 2] {
        let started = Instant::now();
        let report = run_replay(&config, &wiring, &recording, &scratch, workers);
        eprintln!(
            "replay check, {workers} worker(s): {:.0} ms, {} envelopes, {} prices, {} events",
            started.elapsed().as_secs_f64() * 1e3,
            report.stats.total_envelopes(),
            report.stats.prices,
            report.stats.events.values().sum::<u64>()
        );
        assert_eq!(report.stats.prices, floor.prices, "replay and floor agree");
        assert_eq!(report.truncated_at, None);
    }
    eprintln!(
        "recording: {minutes} min x {feeds} feeds, {} envelopes, {} price updates \
         (synth summary: {}), {:.1} MB of payloads",
        floor.envelopes,
        floor.prices,
        summary.price_updates,
        floor.bytes as f64 / 1e6
    );

    let mut group = c.benchmark_group("replay");
    group
        .sample_size(10)
        // Every sample the same few iterations: a replay takes a good fraction of a second.
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Elements(floor.prices));
    group.bench_function("parse_only_floor/price_updates", |b| {
        b.iter(|| black_box(parse_floor(&recording, &wiring)))
    });
    for (workers, name) in [
        (1, "pipeline_1_worker/price_updates"),
        (2, "pipeline_2_workers/price_updates"),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    tempfile::Builder::new()
                        .prefix("out")
                        .tempdir_in(dir.path())
                        .expect("an output directory")
                },
                |out| {
                    let report = run_replay(&config, &wiring, &recording, out.path(), workers);
                    black_box(report.stats.prices);
                    // Removed after the timing, with the other outputs of the batch.
                    out
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_replay);
criterion_main!(benches);
