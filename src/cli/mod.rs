//! Command-line arguments and dispatch.

mod bench;
mod bench_live;
mod bench_mesh;
mod mesh;
mod replay;
mod run;
mod summary;
mod tools;
mod venue;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

use sluice::config::{Config, Pipeline};
use sluice::dataflow::run::Cluster;

/// The recording replayed when `sluice replay` is given none: synthetic data, see
/// `pipelines/README.md`.
pub const BUNDLED_RECORDING: &[u8] = include_bytes!("../../pipelines/bundled.rec");

/// sluice: a streaming pipeline for crypto market data.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Args {
    /// Log format on stderr (filter with RUST_LOG, e.g. RUST_LOG=sluice=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the live pipeline against the real APIs (or a venue) until SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// Replay a recording through the pipeline (no argument: the bundled synthetic recording).
    Replay(replay::ReplayArgs),
    /// Write a deterministic synthetic market recording.
    Synth(tools::SynthArgs),
    /// Print a recording as JSON lines.
    Dump(tools::DumpArgs),
    /// Turn captured payloads (one per line) or a dump back into a recording.
    Import(tools::ImportArgs),
    /// Validate and print the effective configuration, secrets redacted.
    Check(tools::CheckArgs),
    /// Measure replay throughput against a parse-only floor (`bench live`: live ingest latency).
    Bench(bench::BenchArgs),
    /// Serve a recording as the real DEX Screener, Birdeye and Hermes APIs on loopback.
    Venue(venue::VenueArgs),
    /// Mesh keys: the node's peer id and the operator's signing key.
    Mesh(mesh::MeshArgs),
}

/// Options shared by commands that run the dataflow.
#[derive(Debug, ClapArgs)]
pub struct RunShape {
    /// Configuration file (overrides the compiled-in defaults; the environment overrides it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Pipeline file naming sources, computations and sinks (default: pipelines/default.toml).
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// Output directory: journal.jsonl and the state store (store/).
    #[arg(long, default_value = "state")]
    pub out: PathBuf,
    /// Worker threads in this process.
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
    /// Processes in the cluster.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// This process's index in the cluster.
    #[arg(long, default_value_t = 0)]
    pub process: usize,
    /// `host:port` per process, one per line, in process order.
    #[arg(long)]
    pub hostfile: Option<PathBuf>,
    /// Journal the normalised inputs too (price, boost_snapshot, chain_target, mesh_price).
    #[arg(long)]
    pub journal_inputs: bool,
}

impl RunShape {
    /// The configuration with the flags applied on top.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let mut overrides = Vec::new();
        if self.journal_inputs {
            overrides.push(("journal.inputs", figment::value::Value::from(true)));
        }
        Ok(Config::load(self.config.as_deref(), &overrides)?)
    }

    /// The pipeline named by `--pipeline`, or the default.
    pub fn load_pipeline(&self) -> anyhow::Result<Pipeline> {
        Ok(match &self.pipeline {
            Some(path) => Pipeline::load(path)?,
            None => Pipeline::default_pipeline()?,
        })
    }

    /// Workers and processes.
    pub fn cluster(&self) -> anyhow::Result<Cluster> {
        if self.workers == 0 {
            anyhow::bail!("--workers must be at least 1");
        }
        if self.processes == 0 {
            anyhow::bail!("--processes must be at least 1");
        }
        Ok(Cluster {
            workers: self.workers,
            processes: self.processes,
            process: self.process,
            hostfile: self.hostfile.clone(),
        })
    }
}

/// Runs the chosen command.
pub fn dispatch(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Run(a) => run::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Synth(a) => tools::synth(a),
        Command::Dump(a) => tools::dump(a),
        Command::Import(a) => tools::import(a),
        Command::Check(a) => tools::check(a),
        Command::Bench(a) => bench::run(a),
        Command::Venue(a) => venue::run(a),
        Command::Mesh(a) => mesh::run(a),
    }
}

/// Installs the tracing subscriber (stderr; `RUST_LOG` filters, default `info`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::{EnvFilter, fmt, prelude::*};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr).with_target(false))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("warning: logging not initialised: {e}");
    }
}
