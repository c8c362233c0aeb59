//! Writes recordings: envelopes and watermarks in arrival order, closed with an end marker.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::format::{Codec, MAX_FRAME_LEN, RecordingMeta, checksum, header, kind};
use crate::model::{Envelope, Source};

/// The body sink: plain, or one zstd stream.
enum Body<W: Write> {
    Plain(W),
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Write for Body<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Body::Plain(w) => w.write(buf),
            Body::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Body::Plain(w) => w.flush(),
            // Ends the current zstd block, so everything written so far can be decoded.
            Body::Zstd(w) => w.flush(),
        }
    }
}

/// Writes one recording.
///
/// Dropping a writer without [`RecordingWriter::finish`] leaves a recording without its end
/// marker, exactly as a crash would: readers replay what precedes and report the truncation.
pub struct RecordingWriter<W: Write = BufWriter<File>> {
    body: Option<Body<W>>,
    frames: u64,
    scratch: Vec<u8>,
}

impl RecordingWriter<BufWriter<File>> {
    /// Creates (or truncates) `path` and writes the header and metadata.
    pub fn create(path: &Path, codec: Codec, meta: &RecordingMeta) -> io::Result<Self> {
        let file = File::create(path)?;
        RecordingWriter::new(BufWriter::with_capacity(1 << 20, file), codec, meta)
    }
}

impl<W: Write> RecordingWriter<W> {
    /// Starts a recording on `out`.
    pub fn new(mut out: W, codec: Codec, meta: &RecordingMeta) -> io::Result<Self> {
        out.write_all(&header(codec))?;
        let body = match codec {
            Codec::None => Body::Plain(out),
            Codec::Zstd => Body::Zstd(zstd::Encoder::new(out, 3)?),
        };
        let mut writer = RecordingWriter {
            body: Some(body),
            frames: 0,
            scratch: Vec::with_capacity(1 << 16),
        };
        let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
        writer.frame(kind::META, |buf| buf.extend_from_slice(&json))?;
        Ok(writer)
    }

    /// Appends an envelope (its `seq` is implied by its position and not stored).
    pub fn write_envelope(&mut self, env: &Envelope) -> io::Result<()> {
        let context = env.context.as_bytes();
        let context_len = u16::try_from(context.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "envelope context longer than 65535 bytes",
            )
        })?;
        self.frame(kind::ENVELOPE, |buf| {
            buf.push(env.endpoint.code());
            buf.extend_from_slice(&env.t_ms.to_le_bytes());
            buf.extend_from_slice(&context_len.to_le_bytes());
            buf.extend_from_slice(context);
            buf.extend_from_slice(&env.raw);
        })
    }

    /// Appends a watermark: no envelope of `source` with an earlier `t_ms` follows.
    pub fn write_watermark(&mut self, source: Source, t_ms: u64) -> io::Result<()> {
        self.frame(kind::WATERMARK, |buf| {
            buf.push(source.index() as u8);
            buf.extend_from_slice(&t_ms.to_le_bytes());
        })
    }

    /// Makes everything written so far readable by another process (a live tail).
    pub fn flush(&mut self) -> io::Result<()> {
        match self.body.as_mut() {
            Some(body) => body.flush(),
            None => Ok(()),
        }
    }

    /// Frames written so far, the metadata frame included.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Writes the end marker and flushes: the recording is whole.
    pub fn finish(mut self) -> io::Result<W> {
        let frames = self.frames;
        self.frame(kind::END, |buf| {
            buf.extend_from_slice(&frames.to_le_bytes())
        })?;
        let body = self
            .body
            .take()
            .ok_or_else(|| io::Error::other("recording already finished"))?;
        let mut out = match body {
            Body::Plain(w) => w,
            Body::Zstd(enc) => enc.finish()?,
        };
        out.flush()?;
        Ok(out)
    }

    fn frame(&mut self, kind: u8, fill: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        let body = self
            .body
            .as_mut()
            .ok_or_else(|| io::Error::other("recording already finished"))?;
        self.scratch.clear();
        self.scratch.push(kind);
        fill(&mut self.scratch);
        let len = u32::try_from(self.scratch.len())
            .ok()
            .filter(|len| *len <= MAX_FRAME_LEN)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "frame larger than 64 MiB")
            })?;
        body.write_all(&len.to_le_bytes())?;
        body.write_all(&checksum(&self.scratch).to_le_bytes())?;
        body.write_all(&self.scratch)?;
        self.frames += 1;
        Ok(())
    }
}
