//! Recordings as JSON lines for people (`sluice dump`), and back (`sluice import --format dump`).
//!
//! One object per frame:
//!
//! ```text
//! {"frame":"meta","label":"…","synthetic":true,"writer":"…","codec":"zstd"}
//! {"frame":"envelope","endpoint":"hermes_stream","t_ms":1795248000400,"context":"","raw":"{…}"}
//! {"frame":"watermark","source":"hermes","t_ms":1795248000401}
//! {"frame":"end"}
//! ```
//!
//! Payloads that are not UTF-8 are written as `"raw_base64"` instead of `"raw"`.

use std::io::Write;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::format::{Codec, RecordingMeta};
use super::reader::{Item, RecordError, RecordingReader};
use crate::model::{Endpoint, Envelope, Source};

/// One line of a dump.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum DumpLine {
    /// The metadata frame.
    Meta {
        /// Metadata as recorded.
        #[serde(flatten)]
        meta: RecordingMeta,
        /// The body codec of the dumped file.
        codec: Codec,
    },
    /// An envelope.
    Envelope {
        /// Endpoint name.
        endpoint: Endpoint,
        /// Ingest time.
        t_ms: u64,
        /// Envelope context.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        context: String,
        /// The payload, when it is UTF-8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        raw: Option<String>,
        /// The payload, base64, when it is not UTF-8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        raw_base64: Option<String>,
    },
    /// A watermark.
    Watermark {
        /// Source name.
        source: Source,
        /// Watermark time.
        t_ms: u64,
    },
    /// The end marker.
    End,
    /// The recording stopped here without an end marker.
    Truncated {
        /// Byte offset of the incomplete frame.
        offset: u64,
    },
}

impl DumpLine {
    /// The dump line of an envelope.
    pub fn of_envelope(env: &Envelope) -> DumpLine {
        let (raw, raw_base64) = match std::str::from_utf8(&env.raw) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&env.raw)),
            ),
        };
        DumpLine::Envelope {
            endpoint: env.endpoint,
            t_ms: env.t_ms,
            context: env.context.clone(),
            raw,
            raw_base64,
        }
    }

    /// The envelope a dump line describes, if it is one.
    pub fn to_envelope(&self) -> Result<Option<Envelope>, String> {
        let DumpLine::Envelope {
            endpoint,
            t_ms,
            context,
            raw,
            raw_base64,
        } = self
        else {
            return Ok(None);
        };
        let raw = match (raw, raw_base64) {
            (Some(text), None) => Bytes::from(text.clone().into_bytes()),
            (None, Some(b64)) => Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("raw_base64: {e}"))?,
            ),
            _ => return Err("an envelope needs exactly one of raw and raw_base64".into()),
        };
        Ok(Some(Envelope {
            endpoint: *endpoint,
            t_ms: *t_ms,
            context: context.clone(),
            raw,
            seq: 0,
        }))
    }
}

/// Writes `reader`'s frames to `out` as JSON lines. A truncated tail ends the dump with a
/// `truncated` line and is not an error; corruption is.
pub fn dump(mut reader: RecordingReader, out: &mut impl Write) -> Result<DumpSummary, DumpError> {
    let mut summary = DumpSummary::default();
    let meta = DumpLine::Meta {
        meta: reader.meta().clone(),
        codec: reader.codec(),
    };
    write_line(out, &meta)?;
    loop {
        let line = match reader.next_item() {
            Ok(Some(Item::Envelope(env))) => {
                summary.envelopes += 1;
                DumpLine::of_envelope(&env)
            }
            Ok(Some(Item::Watermark { source, t_ms })) => {
                summary.watermarks += 1;
                DumpLine::Watermark { source, t_ms }
            }
            Ok(None) => {
                write_line(out, &DumpLine::End)?;
                return Ok(summary);
            }
            Err(RecordError::Truncated { offset }) => {
                summary.truncated_at = Some(offset);
                write_line(out, &DumpLine::Truncated { offset })?;
                return Ok(summary);
            }
            Err(e) => return Err(DumpError::Record(e)),
        };
        write_line(out, &line)?;
    }
}

fn write_line(out: &mut impl Write, line: &DumpLine) -> Result<(), DumpError> {
    serde_json::to_writer(&mut *out, line).map_err(|e| DumpError::Io(e.into()))?;
    out.write_all(b"\n")?;
    Ok(())
}

/// What a dump contained.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpSummary {
    /// Envelopes written.
    pub envelopes: u64,
    /// Watermarks written.
    pub watermarks: u64,
    /// Where the recording was cut off, if it was.
    pub truncated_at: Option<u64>,
}

/// Why a dump stopped.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The recording is damaged.
    #[error(transparent)]
    Record(RecordError),
    /// Writing failed.
    #[error("writing dump: {0}")]
    Io(#[from] std::io::Error),
}
