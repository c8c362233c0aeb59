//! Reads recordings back, detecting truncated tails and corrupt frames by their byte offset.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::format::{
    Codec, FRAME_PREFIX_LEN, HEADER_LEN, MAGIC, MAX_FRAME_LEN, RecordingMeta, VERSION, kind,
};
use crate::model::{Endpoint, Envelope, Source};

/// Why a recording cannot be read (further).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file is not a sluice recording at all.
    #[error("{path}: not a sluice recording ({reason})")]
    NotARecording {
        /// The file.
        path: String,
        /// What gave it away.
        reason: String,
    },
    /// The recording ends mid-frame or without its end marker: a crash while writing.
    /// Everything before `offset` was intact.
    #[error("recording truncated at byte offset {offset}: the writer did not close it (a crash?)")]
    Truncated {
        /// First byte of the incomplete frame.
        offset: u64,
    },
    /// A frame is damaged.
    #[error("corrupt frame at byte offset {offset}: {reason}")]
    Corrupt {
        /// First byte of the damaged frame.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Reading failed.
    #[error("reading recording: {0}")]
    Io(#[from] io::Error),
}

/// One item of a recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// An envelope, with its per-source `seq` filled in.
    Envelope(Envelope),
    /// A source's watermark.
    Watermark {
        /// Whose.
        source: Source,
        /// No envelope of `source` with an earlier time follows.
        t_ms: u64,
    },
}

/// Counts the bytes pulled from the underlying file (for progress on compressed input).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let at = self.inner.seek(pos)?;
        // The counter is the file position: skipping ahead counts as consumed.
        self.count.store(at, Ordering::Relaxed);
        Ok(at)
    }
}

enum Input {
    Plain(BufReader<Counting<File>>),
    Zstd(Box<zstd::Decoder<'static, BufReader<Counting<File>>>>),
    Memory(io::Cursor<Bytes>),
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::Plain(r) => r.read(buf),
            Input::Zstd(r) => r.read(buf),
            Input::Memory(r) => r.read(buf),
        }
    }
}

impl Input {
    /// Skips `n` bytes without handing them out; returns how many were actually there.
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        match self {
            Input::Plain(r) => {
                // Seeking past the end would not report a short file, so only seek within it.
                let buffered = r.buffer().len() as u64;
                if n <= buffered {
                    r.consume(n as usize);
                    return Ok(n);
                }
                let pos = r.stream_position()?;
                let len = r.get_ref().inner.metadata()?.len();
                let available = len.saturating_sub(pos).min(n);
                r.seek_relative(available as i64)?;
                Ok(available)
            }
            Input::Zstd(r) => io::copy(&mut r.by_ref().take(n), &mut io::sink()),
            Input::Memory(r) => io::copy(&mut r.by_ref().take(n), &mut io::sink()),
        }
    }
}

/// Reads a recording frame by frame.
///
/// ```
/// use sluice::record::{Codec, Item, RecordingMeta, RecordingReader, RecordingWriter};
/// use sluice::model::{Endpoint, Envelope, Source};
/// let mut w = RecordingWriter::new(Vec::new(), Codec::Zstd, &RecordingMeta::default()).unwrap();
/// let env = Envelope { endpoint: Endpoint::MeshPrice, t_ms: 5, context: String::new(),
///                      raw: bytes::Bytes::from_static(b"{}"), seq: 0 };
/// w.write_envelope(&env).unwrap();
/// w.write_watermark(Source::Mesh, 6).unwrap();
/// let bytes = w.finish().unwrap();
/// let mut r = RecordingReader::from_bytes(bytes.into()).unwrap();
/// assert_eq!(r.next_item().unwrap(), Some(Item::Envelope(env)));
/// assert_eq!(r.next_item().unwrap(), Some(Item::Watermark { source: Source::Mesh, t_ms: 6 }));
/// assert_eq!(r.next_item().unwrap(), None);
/// ```
pub struct RecordingReader {
    input: Input,
    meta: RecordingMeta,
    codec: Codec,
    /// Offset of the next frame in the uncompressed stream.
    offset: u64,
    /// Frames read, the metadata frame included.
    frames: u64,
    next_seq: [u64; Source::ALL.len()],
    ended: bool,
    /// The stream ended before the metadata frame was complete.
    cut_short: bool,
    file_len: Option<u64>,
    file_read: Arc<AtomicU64>,
}

impl RecordingReader {
    /// Opens `path`, checks the header and reads the metadata frame.
    pub fn open(path: &Path) -> Result<Self, RecordError> {
        Self::open_counted(path, Arc::new(AtomicU64::new(0)))
    }

    /// As [`RecordingReader::open`], counting file bytes consumed into `counter` (for a
    /// progress bar on another thread).
    pub fn open_counted(path: &Path, counter: Arc<AtomicU64>) -> Result<Self, RecordError> {
        let mut file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let mut head = [0u8; HEADER_LEN];
        let got = read_full(&mut file, &mut head)?;
        let codec = check_header(&head[..got], path)?;
        counter.store(HEADER_LEN as u64, Ordering::Relaxed);
        let count = counter;
        let counted = Counting {
            inner: file,
            count: Arc::clone(&count),
        };
        let input = match codec {
            Codec::None => Input::Plain(BufReader::with_capacity(256 << 10, counted)),
            Codec::Zstd => Input::Zstd(Box::new(zstd::Decoder::with_buffer(
                BufReader::with_capacity(256 << 10, counted),
            )?)),
        };
        Self::start(input, codec, Some(file_len), count)
    }

    /// Reads a recording held in memory.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, RecordError> {
        let head = bytes.slice(..HEADER_LEN.min(bytes.len()));
        let codec = check_header(&head, &PathBuf::from("<memory>"))?;
        let body = bytes.slice(HEADER_LEN..);
        let input = match codec {
            Codec::None => Input::Memory(io::Cursor::new(body)),
            Codec::Zstd => {
                // Decompress up front; truncated streams keep what decoded before the damage.
                let mut out = Vec::new();
                let mut decoder = zstd::Decoder::new(io::Cursor::new(body))?;
                let _ = decoder.read_to_end(&mut out);
                Input::Memory(io::Cursor::new(Bytes::from(out)))
            }
        };
        let len = bytes.len() as u64;
        Self::start(input, codec, Some(len), Arc::new(AtomicU64::new(len)))
    }

    fn start(
        input: Input,
        codec: Codec,
        file_len: Option<u64>,
        file_read: Arc<AtomicU64>,
    ) -> Result<Self, RecordError> {
        let mut reader = RecordingReader {
            input,
            meta: RecordingMeta::default(),
            codec,
            offset: HEADER_LEN as u64,
            frames: 0,
            next_seq: [0; Source::ALL.len()],
            ended: false,
            cut_short: false,
            file_len,
            file_read,
        };
        let (frame_kind, payload) = match reader.read_frame(|_| true) {
            Ok(Some((k, Some(p)))) => (k, p),
            // Cut off before the metadata was written whole: a recording with nothing intact,
            // which `next` reports as truncated at its first frame.
            Ok(_) | Err(RecordError::Truncated { .. }) => {
                reader.cut_short = true;
                return Ok(reader);
            }
            Err(e) => return Err(e),
        };
        if frame_kind != kind::META {
            return Err(RecordError::Corrupt {
                offset: HEADER_LEN as u64,
                reason: format!("first frame is kind {frame_kind}, expected metadata"),
            });
        }
        reader.meta = serde_json::from_slice(&payload[1..]).map_err(|e| RecordError::Corrupt {
            offset: HEADER_LEN as u64,
            reason: format!("metadata is not valid JSON: {e}"),
        })?;
        Ok(reader)
    }

    /// The recording's metadata.
    pub fn meta(&self) -> &RecordingMeta {
        &self.meta
    }

    /// The body codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Bytes of the file consumed so far and the file's length: for progress bars.
    pub fn progress(&self) -> (u64, Option<u64>) {
        (self.file_read.load(Ordering::Relaxed), self.file_len)
    }

    /// A shared counter of file bytes consumed, readable from another thread.
    pub fn progress_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.file_read)
    }

    /// Offset of the next frame in the uncompressed stream.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next item, or `None` after the end marker.
    pub fn next_item(&mut self) -> Result<Option<Item>, RecordError> {
        self.next_where(|_, _| true)
    }

    /// The next watermark, or the next envelope for which `keep(endpoint, seq)` holds.
    /// Other envelopes are skipped without being copied (each replay worker keeps its share).
    pub fn next_where(
        &mut self,
        mut keep: impl FnMut(Endpoint, u64) -> bool,
    ) -> Result<Option<Item>, RecordError> {
        if self.cut_short {
            return Err(RecordError::Truncated {
                offset: HEADER_LEN as u64,
            });
        }
        loop {
            if self.ended {
                return Ok(None);
            }
            let frame_start = self.offset;
            let mut seq_of_skipped = None;
            let next_seq = self.next_seq;
            let frame = self.read_frame(|prefix| {
                // Decide from the first bytes whether the payload is wanted.
                if prefix.first() != Some(&kind::ENVELOPE) {
                    return true;
                }
                match prefix.get(1).copied().and_then(Endpoint::from_code) {
                    Some(endpoint) => {
                        let seq = next_seq[endpoint.source().index()];
                        let wanted = keep(endpoint, seq);
                        if !wanted {
                            seq_of_skipped = Some(endpoint.source());
                        }
                        wanted
                    }
                    None => true, // let the full decode report it
                }
            })?;
            let Some((frame_kind, payload)) = frame else {
                return Err(RecordError::Truncated {
                    offset: frame_start,
                });
            };
            let Some(payload) = payload else {
                if let Some(source) = seq_of_skipped {
                    self.next_seq[source.index()] += 1;
                }
                continue;
            };
            let corrupt = |reason: String| RecordError::Corrupt {
                offset: frame_start,
                reason,
            };
            match frame_kind {
                kind::ENVELOPE => {
                    let env = decode_envelope(&payload).map_err(corrupt)?;
                    let source = env.endpoint.source().index();
                    let seq = self.next_seq[source];
                    self.next_seq[source] += 1;
                    return Ok(Some(Item::Envelope(Envelope { seq, ..env })));
                }
                kind::WATERMARK => {
                    if payload.len() != 10 {
                        return Err(corrupt(format!(
                            "watermark frame of {} bytes",
                            payload.len()
                        )));
                    }
                    let source = Source::from_index(usize::from(payload[1]))
                        .ok_or_else(|| corrupt(format!("unknown source {}", payload[1])))?;
                    let t_ms = u64::from_le_bytes(
                        payload[2..10]
                            .try_into()
                            .map_err(|_| corrupt("watermark".into()))?,
                    );
                    return Ok(Some(Item::Watermark { source, t_ms }));
                }
                kind::END => {
                    self.ended = true;
                    let mut probe = [0u8; 1];
                    if read_full(&mut self.input, &mut probe).unwrap_or(0) != 0 {
                        return Err(RecordError::Corrupt {
                            offset: self.offset,
                            reason: "data after the end marker".into(),
                        });
                    }
                    return Ok(None);
                }
                kind::META => return Err(corrupt("a second metadata frame".into())),
                other => return Err(corrupt(format!("unknown frame kind {other}"))),
            }
        }
    }

    /// Reads one frame. `Ok(None)` means the stream ended before a complete frame (truncation).
    /// The payload is `None` when `want(first bytes)` declined it (it was skipped unread).
    fn read_frame(
        &mut self,
        want: impl FnOnce(&[u8]) -> bool,
    ) -> Result<Option<(u8, Option<Bytes>)>, RecordError> {
        let start = self.offset;
        let mut prefix = [0u8; FRAME_PREFIX_LEN + 2];
        let got = self.read_full(&mut prefix[..FRAME_PREFIX_LEN], start)?;
        if got < FRAME_PREFIX_LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let crc = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
        if len == 0 || len > MAX_FRAME_LEN {
            return Err(RecordError::Corrupt {
                offset: start,
                reason: format!("frame length {len} is out of range"),
            });
        }
        let len = len as usize;
        let head_len = len.min(2);
        let got = self.read_full(
            &mut prefix[FRAME_PREFIX_LEN..FRAME_PREFIX_LEN + head_len],
            start,
        )?;
        if got < head_len {
            return Ok(None);
        }
        let head = &prefix[FRAME_PREFIX_LEN..FRAME_PREFIX_LEN + head_len];
        let frame_kind = head[0];
        if !want(head) {
            let rest = (len - head_len) as u64;
            let skipped = self
                .input
                .skip(rest)
                .map_err(|e| self.stream_error(e, start))?;
            if skipped < rest {
                return Ok(None);
            }
            self.offset = start + (FRAME_PREFIX_LEN + len) as u64;
            self.frames += 1;
            return Ok(Some((frame_kind, None)));
        }
        let mut payload = vec![0u8; len];
        payload[..head_len].copy_from_slice(head);
        let got = self.read_full(&mut payload[head_len..], start)?;
        if got < len - head_len {
            return Ok(None);
        }
        if crc32fast::hash(&payload) != crc {
            return Err(RecordError::Corrupt {
                offset: start,
                reason: "checksum mismatch".into(),
            });
        }
        self.offset = start + (FRAME_PREFIX_LEN + len) as u64;
        self.frames += 1;
        Ok(Some((frame_kind, Some(Bytes::from(payload)))))
    }

    fn read_full(&mut self, buf: &mut [u8], frame_start: u64) -> Result<usize, RecordError> {
        read_full(&mut self.input, buf).map_err(|e| self.stream_error(e, frame_start))
    }

    /// A decoder error at the very end of the file is a truncated tail; elsewhere, corruption.
    fn stream_error(&self, err: io::Error, frame_start: u64) -> RecordError {
        if self.codec == Codec::Zstd {
            let at_end = self
                .file_len
                .is_some_and(|len| self.file_read.load(Ordering::Relaxed) >= len);
            if at_end {
                return RecordError::Truncated {
                    offset: frame_start,
                };
            }
            return RecordError::Corrupt {
                offset: frame_start,
                reason: format!("compressed stream damaged: {err}"),
            };
        }
        RecordError::Io(err)
    }
}

fn check_header(head: &[u8], path: &Path) -> Result<Codec, RecordError> {
    let refuse = |reason: &str| RecordError::NotARecording {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    };
    if head.len() < HEADER_LEN {
        return Err(refuse("shorter than the 16-byte header"));
    }
    if &head[..8] != MAGIC {
        return Err(refuse("it does not start with the SLUICREC magic bytes"));
    }
    let version = u16::from_le_bytes([head[8], head[9]]);
    if version != VERSION {
        return Err(refuse(&format!(
            "format version {version}; this build reads version {VERSION}"
        )));
    }
    Codec::from_byte(head[10]).ok_or_else(|| refuse(&format!("unknown codec {}", head[10])))
}

fn decode_envelope(payload: &Bytes) -> Result<Envelope, String> {
    if payload.len() < 12 {
        return Err(format!(
            "envelope frame of {} bytes is too short",
            payload.len()
        ));
    }
    let endpoint = Endpoint::from_code(payload[1])
        .ok_or_else(|| format!("unknown endpoint code {}", payload[1]))?;
    let t_ms = u64::from_le_bytes(
        payload[2..10]
            .try_into()
            .map_err(|_| "time field".to_owned())?,
    );
    let context_len = usize::from(u16::from_le_bytes([payload[10], payload[11]]));
    let context_end = 12 + context_len;
    let context = payload
        .get(12..context_end)
        .ok_or_else(|| "context runs past the frame".to_owned())?;
    let context = std::str::from_utf8(context)
        .map_err(|_| "context is not UTF-8".to_owned())?
        .to_owned();
    Ok(Envelope {
        endpoint,
        t_ms,
        context,
        raw: payload.slice(context_end..),
        seq: 0,
    })
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
