//! The recording and configuration tools: `synth`, `dump`, `import`, `check`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use sluice::config::{Config, Pipeline};
use sluice::model::{Endpoint, Source};
use sluice::record::{self, Codec, ImportFormat, ImportTiming, RecordingReader, RecordingWriter};

/// Body compression of a written recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CodecArg {
    /// Plain frames (fastest replay).
    None,
    /// zstd (several times smaller).
    Zstd,
}

impl From<CodecArg> for Codec {
    fn from(c: CodecArg) -> Codec {
        match c {
            CodecArg::None => Codec::None,
            CodecArg::Zstd => Codec::Zstd,
        }
    }
}

/// Arguments of `sluice synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Where to write the recording.
    #[arg(long)]
    pub out: PathBuf,
    /// Minutes of market to generate.
    #[arg(long, default_value_t = sluice::synth::SynthOptions::default().minutes)]
    pub minutes: u32,
    /// Pyth feeds in each Hermes event.
    #[arg(long, default_value_t = sluice::synth::SynthOptions::default().feeds)]
    pub feeds: u32,
    /// Tokens in the DEX Screener pool.
    #[arg(long, default_value_t = sluice::synth::SynthOptions::default().tokens)]
    pub tokens: u32,
    /// Random seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = sluice::synth::SynthOptions::default().seed)]
    pub seed: u64,
    /// Body compression.
    #[arg(long, value_enum, default_value_t = CodecArg::Zstd)]
    pub codec: CodecArg,
    /// Leave out malformed payloads and outages.
    #[arg(long)]
    pub no_faults: bool,
}

pub fn synth(args: SynthArgs) -> anyhow::Result<ExitCode> {
    let options = sluice::synth::SynthOptions {
        minutes: args.minutes,
        feeds: args.feeds,
        tokens: args.tokens,
        seed: args.seed,
        faults: !args.no_faults,
        ..sluice::synth::SynthOptions::default()
    };
    let summary = sluice::synth::write_recording(&args.out, args.codec.into(), &options)?;
    println!(
        "wrote {}: {} envelopes, {} price updates ({} from Hermes), {} malformed on purpose",
        args.out.display(),
        summary.envelopes,
        summary.price_updates,
        summary.hermes_updates,
        summary.malformed
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `sluice dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The recording.
    pub recording: PathBuf,
}

pub fn dump(args: DumpArgs) -> anyhow::Result<ExitCode> {
    let reader = RecordingReader::open(&args.recording)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let summary = record::dump(reader, &mut out)?;
    out.flush()?;
    if let Some(offset) = summary.truncated_at {
        eprintln!(
            "warning: the recording is truncated at byte offset {offset}; dumped what precedes it"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// How import lines are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ImportFormatArg {
    /// One payload per line, as the endpoint returned it.
    Payloads,
    /// The JSON lines `sluice dump` prints.
    Dump,
}

/// Arguments of `sluice import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What the payloads are: an endpoint (hermes_stream, hermes_latest, dexscreener_boosts,
    /// dexscreener_tokens, birdeye_multi_price, birdeye_price, mesh_price, chain_read) or a
    /// source with one payload kind (hermes, birdeye, mesh, chain).
    #[arg(long, required_if_eq("format", "payloads"))]
    pub source: Option<String>,
    /// The input file, one payload (or dump line) per line.
    pub file: PathBuf,
    /// Where to write the recording.
    #[arg(long)]
    pub out: PathBuf,
    /// How lines are laid out.
    #[arg(long, value_enum, default_value_t = ImportFormatArg::Payloads)]
    pub format: ImportFormatArg,
    /// Take each ingest time from this JSON pointer in the payload (e.g.
    /// /parsed/0/price/publish_time).
    #[arg(long, conflicts_with_all = ["start_ms"])]
    pub time_field: Option<String>,
    /// Units of --time-field.
    #[arg(long, value_enum, default_value_t = TimeUnit::S)]
    pub time_unit: TimeUnit,
    /// Ingest time of the first payload (ms since the epoch), with --cadence-ms.
    #[arg(long)]
    pub start_ms: Option<u64>,
    /// Time between payloads (ms), with --start-ms.
    #[arg(long, default_value_t = 400)]
    pub cadence_ms: u64,
    /// The envelope context (a Birdeye chain, a DEX Screener chain, ...).
    #[arg(long, default_value = "")]
    pub context: String,
    /// Body compression.
    #[arg(long, value_enum, default_value_t = CodecArg::Zstd)]
    pub codec: CodecArg,
}

/// Units of an imported time field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TimeUnit {
    /// Seconds.
    S,
    /// Milliseconds.
    Ms,
}

fn endpoint_named(name: &str) -> anyhow::Result<Endpoint> {
    if let Some(e) = Endpoint::from_name(name) {
        return Ok(e);
    }
    match Source::from_name(name) {
        Some(Source::Hermes) => Ok(Endpoint::HermesStream),
        Some(Source::Birdeye) => Ok(Endpoint::BirdeyeMultiPrice),
        Some(Source::Mesh) => Ok(Endpoint::MeshPrice),
        Some(Source::Chain) => Ok(Endpoint::ChainRead),
        Some(Source::Dexscreener) => {
            anyhow::bail!(
                "--source dexscreener is ambiguous: say dexscreener_boosts or dexscreener_tokens"
            )
        }
        None => {
            let names: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
            anyhow::bail!(
                "unknown --source {name:?}; expected one of {}",
                names.join(", ")
            )
        }
    }
}

pub fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let input = BufReader::new(
        File::open(&args.file).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?,
    );
    let (format, meta) = match args.format {
        ImportFormatArg::Dump => (
            ImportFormat::Dump,
            record::import_meta(
                &format!("imported dump {}", args.file.display()),
                Vec::new(),
            ),
        ),
        ImportFormatArg::Payloads => {
            let name = args.source.as_deref().unwrap_or_default();
            let endpoint = endpoint_named(name)?;
            let timing = match (&args.time_field, args.start_ms) {
                (Some(pointer), _) => ImportTiming::Field {
                    pointer: pointer.clone(),
                    unit_ms: match args.time_unit {
                        TimeUnit::S => 1000,
                        TimeUnit::Ms => 1,
                    },
                },
                (None, Some(start_ms)) => ImportTiming::Cadence {
                    start_ms,
                    every_ms: args.cadence_ms,
                },
                (None, None) => anyhow::bail!(
                    "say where times come from: --time-field POINTER, or --start-ms MS"
                ),
            };
            let meta = record::import_meta(
                &format!(
                    "{} payloads imported from {}",
                    endpoint,
                    args.file.display()
                ),
                vec![endpoint.source()],
            );
            (
                ImportFormat::Payloads {
                    endpoint,
                    context: args.context.clone(),
                    timing,
                },
                meta,
            )
        }
    };
    let codec: Codec = args.codec.into();
    let out_path = args.out.clone();
    let imported = record::import(input, &format, meta, |meta| {
        RecordingWriter::create(&out_path, codec, meta)
    });
    let summary = match imported {
        Ok((_, summary)) => summary,
        Err(e) => {
            // Half a recording is worse than none: nobody mistakes a missing file for data.
            let _ = std::fs::remove_file(&out_path);
            anyhow::bail!("importing {}: {e}", args.file.display());
        }
    };
    println!(
        "wrote {}: {} envelopes ({} blank lines skipped, {} times held back to stay in order)",
        args.out.display(),
        summary.envelopes,
        summary.blank_lines,
        summary.clamped_times
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `sluice check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Pipeline file to validate too.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
}

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref(), &[])?;
    let pipeline = match &args.pipeline {
        Some(path) => Pipeline::load(path)?,
        None => Pipeline::default_pipeline()?,
    };
    println!("# effective configuration (secrets redacted)");
    print!("{}", config.to_redacted_toml()?);
    println!("\n# pipeline {:?}", pipeline.name);
    print!("{}", toml::to_string_pretty(&pipeline)?);
    Ok(ExitCode::SUCCESS)
}
