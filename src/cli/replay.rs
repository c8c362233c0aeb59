//! `sluice replay`: a recording through the whole pipeline, with a progress bar and a summary.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::summary::{print_summary, summary_json};
use super::{BUNDLED_RECORDING, RunShape};
use sluice::dataflow::graph::Wiring;
use sluice::dataflow::run::{RecordingInput, ReplayOptions, replay};

/// Arguments of `sluice replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recording (default: the bundled synthetic recording).
    pub recording: Option<PathBuf>,
    #[command(flatten)]
    pub shape: RunShape,
    /// No progress bar and no summary table.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the summary as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let config = args.shape.load_config()?;
    let pipeline = args.shape.load_pipeline()?;
    let cluster = args.shape.cluster()?;
    let wiring = Wiring::new(&config, pipeline).map_err(anyhow::Error::msg)?;
    let input = match &args.recording {
        Some(path) => RecordingInput::File(path.clone()),
        None => RecordingInput::Bytes(Bytes::from_static(BUNDLED_RECORDING)),
    };
    let total = input.size();
    let counter = Arc::new(AtomicU64::new(0));
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(total.unwrap_or(0));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} replay [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = bar.clone().map(|bar| {
        let counter = Arc::clone(&counter);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                bar.set_position(counter.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    let options = ReplayOptions {
        input,
        out_dir: args.shape.out.clone(),
        cluster: cluster.clone(),
        progress: Some(Arc::clone(&counter)),
    };
    let result = replay(&config, wiring, options);
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.join();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = result?;
    if let Some(offset) = report.truncated_at {
        eprintln!(
            "warning: the recording is truncated at byte offset {offset} (the writer did not close it); \
             everything before it was replayed"
        );
    }
    if args.json {
        println!(
            "{}",
            summary_json(&report, cluster.workers * cluster.processes)
        );
    } else if !args.quiet {
        print_summary(&report, cluster.workers * cluster.processes);
    }
    Ok(ExitCode::SUCCESS)
}
