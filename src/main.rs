//! The `sluice` command: run live, replay, serve a recording as the real APIs, benchmark, and
//! the recording tools. Each subcommand lives in its own module under `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Two TLS stacks share rustls here (reqwest's and the SSE client's); with no process-wide
    // provider chosen, rustls would refuse to pick one at the first TLS connection.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = cli::Args::parse();
    cli::init_logging(args.log_format);
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
