//! Turns payloads captured elsewhere (one per line) or a dump back into a recording.

use std::io::{BufRead, Write};

use bytes::Bytes;

use super::dump::DumpLine;
use super::format::RecordingMeta;
use super::writer::RecordingWriter;
use crate::model::{Endpoint, Envelope, Source};

/// How the lines of an import file are laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    /// Each line is one payload as an endpoint returned it (a Hermes SSE `data` JSON, a poll
    /// body on one line). Times come from [`ImportTiming`].
    Payloads {
        /// What the payloads are.
        endpoint: Endpoint,
        /// The context every envelope gets (the chain of a Birdeye poll, say).
        context: String,
        /// Where ingest times come from.
        timing: ImportTiming,
    },
    /// The JSON lines of `sluice dump`: the exact inverse.
    Dump,
}

/// Where imported payloads get their ingest time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportTiming {
    /// A field of each payload, as a JSON pointer (`/parsed/0/price/publish_time`), scaled by
    /// `unit_ms` (1000 for seconds).
    Field {
        /// JSON pointer to the field.
        pointer: String,
        /// Milliseconds per unit of the field.
        unit_ms: u64,
    },
    /// A fixed cadence from a start time.
    Cadence {
        /// Time of the first payload.
        start_ms: u64,
        /// Time between payloads.
        every_ms: u64,
    },
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Envelopes written.
    pub envelopes: u64,
    /// Lines skipped because they were blank.
    pub blank_lines: u64,
    /// Payload times that went backwards and were held at the previous time.
    pub clamped_times: u64,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A line could not be turned into an envelope.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: u64,
        /// Why.
        reason: String,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads `input` line by line and writes a recording through the writer `create` makes.
///
/// `create` gets the metadata to record: `meta`, or for a dump the metadata the dump carries.
pub fn import<W: Write>(
    input: impl BufRead,
    format: &ImportFormat,
    meta: RecordingMeta,
    create: impl FnOnce(&RecordingMeta) -> std::io::Result<RecordingWriter<W>>,
) -> Result<(W, ImportSummary), ImportError> {
    let mut summary = ImportSummary::default();
    let mut last_time: [Option<u64>; Source::ALL.len()] = [None; Source::ALL.len()];
    let mut lines = input.lines().enumerate().peekable();
    let mut meta = meta;
    if *format == ImportFormat::Dump
        && let Some((_, Ok(first))) = lines.peek()
        && let Ok(DumpLine::Meta { meta: recorded, .. }) = serde_json::from_str::<DumpLine>(first)
    {
        meta = recorded;
    }
    let mut writer = create(&meta)?;
    for (index, line) in lines {
        let number = index as u64 + 1;
        let line = line?;
        if line.trim().is_empty() {
            summary.blank_lines += 1;
            continue;
        }
        let fail = |reason: String| ImportError::Line {
            line: number,
            reason,
        };
        match format {
            ImportFormat::Dump => {
                let parsed: DumpLine =
                    serde_json::from_str(&line).map_err(|e| fail(e.to_string()))?;
                match &parsed {
                    DumpLine::Watermark { source, t_ms } => {
                        writer.write_watermark(*source, *t_ms)?
                    }
                    DumpLine::Envelope { .. } => {
                        if let Some(env) = parsed.to_envelope().map_err(fail)? {
                            writer.write_envelope(&env)?;
                            summary.envelopes += 1;
                        }
                    }
                    DumpLine::Meta { .. } | DumpLine::End | DumpLine::Truncated { .. } => {}
                }
            }
            ImportFormat::Payloads {
                endpoint,
                context,
                timing,
            } => {
                let wanted = match timing {
                    ImportTiming::Field { pointer, unit_ms } => {
                        let value: serde_json::Value = serde_json::from_str(&line)
                            .map_err(|e| fail(format!("not JSON: {e}")))?;
                        let field = value
                            .pointer(pointer)
                            .ok_or_else(|| fail(format!("no field at {pointer}")))?;
                        let units = field
                            .as_u64()
                            .or_else(|| field.as_str().and_then(|s| s.parse().ok()))
                            .ok_or_else(|| {
                                fail(format!("{pointer} is not a non-negative integer"))
                            })?;
                        units
                            .checked_mul(*unit_ms)
                            .ok_or_else(|| fail(format!("{pointer} is out of range")))?
                    }
                    ImportTiming::Cadence { start_ms, every_ms } => summary
                        .envelopes
                        .checked_mul(*every_ms)
                        .and_then(|offset| start_ms.checked_add(offset))
                        .ok_or_else(|| {
                            fail("the cadence runs past the largest time in ms".into())
                        })?,
                };
                let slot = &mut last_time[endpoint.source().index()];
                let t_ms = match *slot {
                    Some(prev) if wanted < prev => {
                        summary.clamped_times += 1;
                        prev
                    }
                    _ => wanted,
                };
                *slot = Some(t_ms);
                let env = Envelope {
                    endpoint: *endpoint,
                    t_ms,
                    context: context.clone(),
                    raw: Bytes::from(line.into_bytes()),
                    seq: 0,
                };
                writer.write_envelope(&env)?;
                // Times never go backwards, so everything earlier is final.
                writer.write_watermark(endpoint.source(), t_ms)?;
                summary.envelopes += 1;
            }
        }
    }
    if let ImportFormat::Payloads { endpoint, .. } = format
        && let Some(last) = last_time[endpoint.source().index()]
    {
        writer.write_watermark(endpoint.source(), last.saturating_add(1))?;
    }
    Ok((writer.finish()?, summary))
}

/// Metadata for a recording of `sources` imported from payload lines.
pub fn import_meta(label: &str, sources: Vec<Source>) -> RecordingMeta {
    RecordingMeta {
        label: label.to_owned(),
        synthetic: false,
        writer: format!("sluice {} import", env!("CARGO_PKG_VERSION")),
        sources,
    }
}
