//! `sluice bench`: replay throughput at 1 and 2 workers next to a parse-only floor, measured
//! in the same run on the same recording (`sluice bench live`: see [`super::bench_live`]).
//!
//! The floor reads the recording and parses every envelope into the same records the pipeline
//! uses, on one thread, with no dataflow. Each pipeline measurement runs `sluice replay` in a
//! child process, so every figure gets a fresh process (and its own peak RSS).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::json;

use sluice::config::Config;
use sluice::dataflow::graph::Wiring;
use sluice::model::parse::{ParseContext, parse_envelope};
use sluice::model::{PriceSource, Record};
use sluice::record::{Codec, Item, RecordingReader};
use sluice::synth::SynthOptions;

/// Arguments of `sluice bench`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// `live`: ingest latency of the live pipeline instead of replay throughput.
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// The recording to measure (default: synthesize one shaped like the bundled recording,
    /// with at least 5 million price updates).
    pub recording: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Worker counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    pub workers: Vec<usize>,
    /// Rounds of measurements; each figure is the median over them. The floor and the worker
    /// counts take turns within a round, so a noisy moment hits them alike.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Minutes of the synthesized recording.
    #[arg(long, default_value_t = 70)]
    pub minutes: u32,
    /// Pyth feeds per Hermes event in the synthesized recording.
    #[arg(long, default_value_t = 500)]
    pub feeds: u32,
    /// Tokens in the synthesized recording.
    #[arg(long, default_value_t = 1000)]
    pub tokens: u32,
    /// Where to write the synthesized recording and the replays' output (default: a
    /// temporary directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// What `sluice bench` measures besides replay throughput.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Ingest latency (stream bytes received to journal line written) at fixed Hermes rates,
    /// with the venue and the live pipeline on loopback.
    Live(super::bench_live::LiveBenchArgs),
    /// Mesh propagation latency across a line of nodes and validated messages per second.
    Mesh(super::bench_mesh::MeshBenchArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(BenchCommand::Live(live)) => return super::bench_live::run(live),
        Some(BenchCommand::Mesh(mesh)) => return super::bench_mesh::run(mesh),
        None => {}
    }
    let temp = tempfile::Builder::new().prefix("sluice-bench").tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let recording = match &args.recording {
        Some(path) => path.clone(),
        None => {
            let path = dir.join("bench.rec");
            let options = SynthOptions {
                minutes: args.minutes,
                feeds: args.feeds,
                tokens: args.tokens,
                ..SynthOptions::default()
            };
            eprintln!(
                "synthesizing {} minutes x {} feeds x {} tokens into {} ...",
                options.minutes,
                options.feeds,
                options.tokens,
                path.display()
            );
            let summary = sluice::synth::write_recording(&path, Codec::None, &options)?;
            eprintln!(
                "  {} price updates, {:.0} MB",
                summary.price_updates,
                summary.bytes as f64 / 1e6
            );
            path
        }
    };
    let config = Config::load(None, &[])?;
    // One pass to bring the recording into the page cache, so no round pays for the disk.
    std::io::copy(&mut std::fs::File::open(&recording)?, &mut std::io::sink())?;
    let rounds = args.rounds.max(1);
    let mut floors = Vec::new();
    let mut runs: Vec<Vec<serde_json::Value>> = vec![Vec::new(); args.workers.len()];
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}: parse-only floor ...");
        floors.push(parse_floor(&recording, &config)?);
        for (i, workers) in args.workers.iter().enumerate() {
            eprintln!("round {round}/{rounds}: replay with {workers} worker(s) ...");
            runs[i].push(replay_in_child(
                &recording,
                &dir.join(format!("out-{workers}")),
                *workers,
            )?);
        }
    }
    floors.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let floor = floors.swap_remove(floors.len() / 2);
    let mut by_workers = serde_json::Map::new();
    for (workers, mut reports) in args.workers.iter().zip(runs) {
        let key = |r: &serde_json::Value| r["price_updates_per_sec"].as_f64().unwrap_or(0.0);
        reports.sort_by(|a, b| key(a).total_cmp(&key(b)));
        by_workers.insert(workers.to_string(), reports.swap_remove(reports.len() / 2));
    }
    let result = json!({
        "recording": recording.display().to_string(),
        "rounds": rounds,
        "price_updates": floor.prices,
        "hermes_price_updates": floor.hermes_prices,
        "envelopes": floor.envelopes,
        "bytes": floor.bytes,
        "parse_floor": {
            "price_updates_per_sec": floor.prices as f64 / floor.secs,
            "envelopes_per_sec": floor.envelopes as f64 / floor.secs,
            "mb_per_sec": floor.bytes as f64 / 1e6 / floor.secs,
        },
        "workers": by_workers,
    });
    if args.json {
        println!("{result}");
    } else {
        print_table(&result);
    }
    Ok(ExitCode::SUCCESS)
}

struct Floor {
    prices: u64,
    /// Of which from Hermes (the target counts these).
    hermes_prices: u64,
    envelopes: u64,
    bytes: u64,
    secs: f64,
}

/// Reads and parses every envelope on this thread: the cost a pipeline cannot avoid.
fn parse_floor(recording: &Path, config: &Config) -> anyhow::Result<Floor> {
    let wiring = Wiring::new(config, sluice::config::Pipeline::default_pipeline()?)
        .map_err(anyhow::Error::msg)?;
    let ctx = ParseContext {
        assets: &wiring.parse.assets,
        max_future_skew_ms: wiring.parse.max_future_skew_ms,
    };
    let mut reader = RecordingReader::open(recording)?;
    let mut records = Vec::new();
    let mut floor = Floor {
        prices: 0,
        hermes_prices: 0,
        envelopes: 0,
        bytes: 0,
        secs: 0.0,
    };
    let started = Instant::now();
    while let Some(item) = reader.next_item()? {
        if let Item::Envelope(env) = item {
            floor.envelopes += 1;
            floor.bytes += env.raw.len() as u64;
            parse_envelope(&env, &ctx, &mut records);
            for record in &records {
                if let Record::Price(p) = record {
                    floor.prices += 1;
                    floor.hermes_prices += u64::from(p.source == PriceSource::Hermes);
                }
            }
            records.clear();
        }
    }
    floor.secs = started.elapsed().as_secs_f64().max(1e-9);
    Ok(floor)
}

/// Runs `sluice replay --json` in a child process and returns its report.
fn replay_in_child(
    recording: &Path,
    out: &Path,
    workers: usize,
) -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("replay")
        .arg(recording)
        .arg("--out")
        .arg(out)
        .arg("--workers")
        .arg(workers.to_string())
        .arg("--json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Drained on their own threads, so a chatty child never blocks on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    // Resident memory over the run: it should stay flat, whatever the recording's length.
    let mut rss_samples = Vec::new();
    let status = loop {
        // Sleep first: right after the spawn the child is still loading.
        std::thread::sleep(Duration::from_millis(100));
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Some(mb) = resident_mb(child.id()) {
            rss_samples.push(mb);
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        anyhow::bail!(
            "replay with {workers} workers failed: {}",
            String::from_utf8_lossy(&stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&stdout)?;
    Ok(json!({
        "price_updates_per_sec": report["price_updates_per_sec"],
        "envelopes_per_sec": report["envelopes_per_sec"],
        "mb_per_sec": report["mb_per_sec"],
        "elapsed_secs": report["elapsed_secs"],
        "peak_rss_mb": report["peak_rss_mb"],
        "rss_mb_by_quarter": by_quarter(&rss_samples),
        "events": report["events"],
    }))
}

/// Reads `pipe` to its end on a thread of its own.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// A process's resident set in MB, from the kernel (`VmRSS`); `None` where there is no /proc.
fn resident_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// The samples at the end of each quarter of the run: flat memory gives four close values.
fn by_quarter(samples: &[f64]) -> Vec<f64> {
    if samples.is_empty() {
        return Vec::new();
    }
    (1..=4)
        .map(|q| samples[(samples.len() * q / 4).saturating_sub(1)])
        .map(|mb| (mb * 10.0).round() / 10.0)
        .collect()
}

fn print_table(result: &serde_json::Value) {
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let floor = &result["parse_floor"];
    println!(
        "recording        {}",
        result["recording"].as_str().unwrap_or("")
    );
    println!(
        "price updates    {}   envelopes {}   {:.0} MB",
        result["price_updates"],
        result["envelopes"],
        num(&result["bytes"]) / 1e6
    );
    println!(
        "Hermes updates   {} ({:.1} % of the price updates)",
        result["hermes_price_updates"],
        100.0 * num(&result["hermes_price_updates"]) / num(&result["price_updates"]).max(1.0)
    );
    println!(
        "{:<16} {:>16} {:>14} {:>10} {:>10} {:>9}",
        "", "price upd/s", "envelopes/s", "MB/s", "vs floor", "peak RSS"
    );
    println!(
        "{:<16} {:>16.0} {:>14.0} {:>10.1} {:>10} {:>9}",
        "parse floor",
        num(&floor["price_updates_per_sec"]),
        num(&floor["envelopes_per_sec"]),
        num(&floor["mb_per_sec"]),
        "1.00",
        "-"
    );
    if let Some(workers) = result["workers"].as_object() {
        for (n, w) in workers {
            println!(
                "{:<16} {:>16.0} {:>14.0} {:>10.1} {:>10.2} {:>8.0}M",
                format!("{n} worker(s)"),
                num(&w["price_updates_per_sec"]),
                num(&w["envelopes_per_sec"]),
                num(&w["mb_per_sec"]),
                num(&w["price_updates_per_sec"]) / num(&floor["price_updates_per_sec"]).max(1e-9),
                num(&w["peak_rss_mb"])
            );
        }
        for (n, w) in workers {
            if let Some(quarters) = w["rss_mb_by_quarter"].as_array() {
                let shown: Vec<String> =
                    quarters.iter().map(|q| format!("{:.0}M", num(q))).collect();
                println!(
                    "{:<16} resident at the end of each quarter of the run: {}",
                    format!("{n} worker(s)"),
                    shown.join(" ")
                );
            }
        }
    }
}
