//! Recording a live run: every envelope and watermark, in the order each source sent them.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use tracing::error;

use crate::model::{Envelope, Source};
use crate::record::{Codec, RecordingMeta, RecordingWriter};

/// The recording of a live run, shared by every source.
///
/// Sources interleave in the file in arrival order, while each source's own items keep their
/// order: a replay feeds every source exactly the sequence the live dataflow consumed.
pub struct Recorder {
    writer: Mutex<Option<RecordingWriter<BufWriter<std::fs::File>>>>,
    failed: std::sync::atomic::AtomicBool,
}

impl Recorder {
    /// Starts a recording at `path` holding `sources`.
    pub fn create(path: &Path, codec: Codec, sources: Vec<Source>) -> std::io::Result<Recorder> {
        let meta = RecordingMeta {
            label: "live run".into(),
            synthetic: false,
            writer: format!("sluice {} run", env!("CARGO_PKG_VERSION")),
            sources,
        };
        Ok(Recorder {
            writer: Mutex::new(Some(RecordingWriter::create(path, codec, &meta)?)),
            failed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn with(
        &self,
        f: impl FnOnce(&mut RecordingWriter<BufWriter<std::fs::File>>) -> std::io::Result<()>,
    ) {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(writer) = guard.as_mut()
            && let Err(e) = f(writer)
            && !self.failed.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            error!(error = %e, "writing the recording failed; it will be incomplete");
        }
    }

    /// Appends an envelope.
    pub fn envelope(&self, env: &Envelope) {
        self.with(|w| w.write_envelope(env));
    }

    /// Appends a watermark.
    pub fn watermark(&self, source: Source, t_ms: u64) {
        self.with(|w| w.write_watermark(source, t_ms));
    }

    /// Makes what is written so far readable (a crash then loses only what came after).
    pub fn flush(&self) {
        self.with(|w| w.flush());
    }

    /// Closes the recording whole (the end marker). Later writes are ignored.
    pub fn finish(&self) -> std::io::Result<()> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match guard.take() {
            Some(writer) => writer.finish().and_then(|mut out| out.flush()),
            None => Ok(()),
        }
    }

    /// True if a write failed.
    pub fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }
}
