//! `sluice run`: the live pipeline against the real APIs (or the venue), until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::RunShape;
use sluice::dataflow::graph::Wiring;
use sluice::live::{LiveOptions, run as run_live};

/// Arguments of `sluice run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub shape: RunShape,
    /// Record every envelope and watermark as received; `sluice replay FILE` then writes the
    /// same journal.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Do not serve /health, /status and /metrics.
    #[arg(long)]
    pub no_serve: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.shape.processes > 1 {
        anyhow::bail!(
            "a live run is one process (sources feed its workers); scale it with --workers"
        );
    }
    let config = args.shape.load_config()?;
    let pipeline = args.shape.load_pipeline()?;
    let cluster = args.shape.cluster()?;
    let wiring = Wiring::new(&config, pipeline).map_err(anyhow::Error::msg)?;
    let mut options = LiveOptions::new(args.shape.out.clone());
    options.record = args.record.clone();
    options.workers = cluster.workers;
    options.serve = !args.no_serve;
    options.on_ready = Some(Box::new(|ready| {
        if let Some(addr) = ready.serve_addr {
            eprintln!("serving http://{addr}/health /status /metrics");
        }
    }));
    let report = run_live(&config, wiring, options)?;
    let lines: u64 = report.stats.events.values().sum();
    eprintln!(
        "stopped after {:.1} s: {} envelopes, {lines} journal lines in {}{}",
        report.elapsed.as_secs_f64(),
        report.stats.envelopes.values().sum::<u64>(),
        report.journal.display(),
        report
            .recording
            .as_ref()
            .map(|p| format!(", recording {}", p.display()))
            .unwrap_or_default(),
    );
    Ok(ExitCode::SUCCESS)
}
