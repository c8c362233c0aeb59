//! `sluice venue`: serves a recording as the real DEX Screener, Birdeye and Hermes APIs on
//! loopback until Ctrl-C, for staging the pipeline offline.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;

use super::BUNDLED_RECORDING;
use sluice::dataflow::run::RecordingInput;
use sluice::venue::{FaultSpec, Venue, VenueOptions, parse_duration};

/// Arguments of `sluice venue`.
#[derive(Debug, Args)]
pub struct VenueArgs {
    /// The recording to serve (default: the bundled synthetic recording).
    pub recording: Option<PathBuf>,
    /// Port on 127.0.0.1 (0: any free port; the base URL is printed first either way).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Faults to inject, e.g. 'dexscreener:error_rate=1,status=503;hermes/stream:drop_every=5s'
    /// (change them while running: POST a spec to /_venue/faults).
    #[arg(long, value_parser = parse_faults)]
    pub faults: Option<FaultSpec>,
    /// Recording ms per wall ms (1: the recorded pace; rate-limit windows scale with it).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Do not enforce the providers' rate limits.
    #[arg(long)]
    pub no_rate_limits: bool,
    /// Birdeye's per-second limit (the account tier's).
    #[arg(long, default_value_t = sluice::venue::DEFAULT_BIRDEYE_RPS)]
    pub birdeye_rps: u32,
    /// Require this Birdeye key (X-API-KEY).
    #[arg(long)]
    pub birdeye_key: Option<String>,
    /// Require this Hermes key (Authorization: Bearer).
    #[arg(long)]
    pub hermes_key: Option<String>,
    /// SSE keep-alive after this long without an event (e.g. 15s, 500ms).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub keepalive: Duration,
    /// Seed of the fault dice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Waits for Ctrl-C (or, on Unix, SIGTERM: how scripts and supervisors stop a process).
async fn stopped() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

fn parse_faults(text: &str) -> Result<FaultSpec, String> {
    text.parse()
        .map_err(|e: sluice::venue::FaultSpecError| e.to_string())
}

pub fn run(args: VenueArgs) -> anyhow::Result<ExitCode> {
    let input = match &args.recording {
        Some(path) => RecordingInput::File(path.clone()),
        None => RecordingInput::Bytes(Bytes::from_static(BUNDLED_RECORDING)),
    };
    let options = VenueOptions {
        speed: args.speed,
        faults: args.faults.unwrap_or_default(),
        rate_limits: !args.no_rate_limits,
        birdeye_rps: args.birdeye_rps,
        birdeye_api_key: args.birdeye_key,
        hermes_api_key: args.hermes_key,
        keepalive: args.keepalive,
        seed: args.seed,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
        let venue = Venue::start(input, listen, options).await?;
        let base = venue.base_url();
        // The base URL first: scripts read the first line to find the venue.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{base}")?;
        // Then the three API roots as the configuration's environment overrides, ready to
        // paste (or `eval`) into the shell that runs the pipeline.
        writeln!(
            out,
            "SLUICE__DEXSCREENER__BASE_URL={}",
            venue.dexscreener_url()
        )?;
        writeln!(out, "SLUICE__BIRDEYE__BASE_URL={}", venue.birdeye_url())?;
        writeln!(out, "SLUICE__HERMES__BASE_URL={}", venue.hermes_url())?;
        writeln!(
            out,
            "# stats: {base}/_venue/stats  faults: {base}/_venue/faults"
        )?;
        out.flush()?;
        drop(out);
        let timeline = venue.timeline();
        tracing::info!(
            envelopes = timeline.served_envelopes(),
            first_ms = timeline.first_ms().unwrap_or(0),
            last_ms = timeline.last_ms().unwrap_or(0),
            speed = args.speed,
            faults = %venue.faults(),
            "venue serving; Ctrl-C stops it"
        );
        stopped().await?;
        let stats = venue.stats();
        venue.shutdown().await;
        for (endpoint, counts) in &stats.endpoints {
            if counts.requests > 0 {
                eprintln!(
                    "{endpoint}: {} requests, statuses {:?}",
                    counts.requests, counts.statuses
                );
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
