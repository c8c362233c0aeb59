//! Reads recordings back, detecting truncated tails and corrupt frames by their byte offset.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::format::{
    Codec, FRAME_PREFIX_LEN, HEADER_LEN, MAGIC, MAX_FRAME_LEN, RecordingMeta, VERSION, checksum,
    kind,
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
    /// An uncompressed file, memory-mapped: frames are slices of the mapping, never copied.
    Mapped {
        data: Bytes,
        map: Arc<memmap2::Mmap>,
        at: usize,
        /// Pages before this have been given back (see [`Input::release_behind`]).
        released: usize,
        count: Arc<AtomicU64>,
    },
    /// An uncompressed file that could not be mapped, read without a buffer in between: frames are large, and each
    /// one is read straight into its own allocation.
    Plain {
        file: File,
        len: u64,
        count: Arc<AtomicU64>,
    },
    Zstd(Box<zstd::Decoder<'static, BufReader<Counting<File>>>>),
    /// Bytes in memory (the bundled recording), decompressed if they were compressed.
    Memory {
        body: io::Cursor<Bytes>,
        /// Why decompression stopped before the end, when the compressed bytes were damaged
        /// (rather than cut short): reading past the last good byte reports it.
        damage: Option<String>,
        /// Set to the position in the original bytes (header included), scaled from `body`.
        count: Arc<AtomicU64>,
        /// Length of the original bytes after the header.
        original_body_len: u64,
    },
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::Mapped {
                data, at, count, ..
            } => {
                let rest = data.get(*at..).unwrap_or_default();
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                *at += n;
                count.store(*at as u64, Ordering::Relaxed);
                Ok(n)
            }
            Input::Plain { file, count, .. } => {
                let n = file.read(buf)?;
                count.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Input::Zstd(r) => r.read(buf),
            Input::Memory { body, damage, .. } => {
                let n = body.read(buf)?;
                if n == 0
                    && !buf.is_empty()
                    && let Some(damage) = damage
                {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, damage.clone()));
                }
                self.report_memory_position();
                Ok(n)
            }
        }
    }
}

impl Input {
    /// A frame's payload: `head` (already read) and the `rest` bytes that follow it, or `None`
    /// when the input ends first.
    fn payload(&mut self, head: &[u8], rest: usize) -> io::Result<Option<Bytes>> {
        if let Input::Mapped {
            data, at, count, ..
        } = self
        {
            // The head sits right before `at` in the mapping: the payload is one slice of it.
            let start = *at - head.len();
            let end = match at.checked_add(rest) {
                Some(end) if end <= data.len() => end,
                _ => return Ok(None),
            };
            *at = end;
            count.store(end as u64, Ordering::Relaxed);
            let payload = data.slice(start..end);
            self.release_behind();
            return Ok(Some(payload));
        }
        // Filled by `read_to_end`, which writes into spare capacity: no zeroing first.
        let mut payload = Vec::with_capacity(head.len() + rest);
        payload.extend_from_slice(head);
        let got = self.read_into(rest as u64, &mut payload)?;
        Ok((got == rest).then(|| Bytes::from(payload)))
    }

    /// Gives the pages of a mapping well behind the read position back to the kernel, so a
    /// replay's resident memory stays flat however long the recording. Envelopes still
    /// holding slices there read them again from the file if they look (same bytes).
    fn release_behind(&mut self) {
        const STEP: usize = 64 << 20;
        const KEEP: usize = 16 << 20;
        if let Input::Mapped {
            map, at, released, ..
        } = self
            && *at > *released + STEP + KEEP
        {
            let upto = (*at - KEEP) & !(PAGE - 1);
            if release(map, *released, upto - *released) {
                *released = upto;
            }
        }
    }

    /// Appends up to `n` bytes to `out`; returns how many there were.
    fn read_into(&mut self, n: u64, out: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            // Through `File` itself, std writes into the vector's spare capacity: no zeroing
            // first, no copy through a buffer.
            Input::Plain { file, count, .. } => {
                let got = Read::take(&mut *file, n).read_to_end(out)?;
                count.fetch_add(got as u64, Ordering::Relaxed);
                Ok(got)
            }
            other => other.take(n).read_to_end(out),
        }
    }

    /// Skips `n` bytes without handing them out; returns how many were actually there.
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        match self {
            Input::Mapped {
                data, at, count, ..
            } => {
                let available = (data.len().saturating_sub(*at) as u64).min(n);
                *at += available as usize;
                count.store(*at as u64, Ordering::Relaxed);
                self.release_behind();
                Ok(available)
            }
            Input::Plain { file, len, count } => {
                // Seeking past the end would not report a short file, so only seek within it.
                let pos = file.stream_position()?;
                let available = len.saturating_sub(pos).min(n);
                let at = file.seek(io::SeekFrom::Current(available as i64))?;
                count.store(at, Ordering::Relaxed);
                Ok(available)
            }
            Input::Zstd(r) => io::copy(&mut r.by_ref().take(n), &mut io::sink()),
            Input::Memory { body, .. } => {
                let skipped = io::copy(&mut body.by_ref().take(n), &mut io::sink())?;
                self.report_memory_position();
                Ok(skipped)
            }
        }
    }

    /// For in-memory input, stores the read position as a share of the original bytes, so a
    /// progress bar over their length ends full even when they were compressed.
    fn report_memory_position(&self) {
        if let Input::Memory {
            body,
            count,
            original_body_len,
            ..
        } = self
        {
            let len = body.get_ref().len() as u128;
            let at = u128::from(body.position()).min(len);
            let scaled = match len {
                0 => u128::from(*original_body_len),
                _ => at * u128::from(*original_body_len) / len,
            };
            let scaled = u64::try_from(scaled).unwrap_or(u64::MAX);
            count.store(
                (HEADER_LEN as u64).saturating_add(scaled),
                Ordering::Relaxed,
            );
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
        let input = match codec {
            Codec::None => match map(&file) {
                Some(map) => Input::Mapped {
                    data: Bytes::from_owner(SharedMap(Arc::clone(&map))),
                    map,
                    at: HEADER_LEN,
                    released: 0,
                    count: Arc::clone(&count),
                },
                None => Input::Plain {
                    file,
                    len: file_len,
                    count: Arc::clone(&count),
                },
            },
            Codec::Zstd => {
                let counted = Counting {
                    inner: file,
                    count: Arc::clone(&count),
                };
                Input::Zstd(Box::new(zstd::Decoder::with_buffer(
                    BufReader::with_capacity(256 << 10, counted),
                )?))
            }
        };
        Self::start(input, codec, Some(file_len), count)
    }

    /// Reads a recording held in memory.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, RecordError> {
        Self::from_bytes_counted(bytes, Arc::new(AtomicU64::new(0)))
    }

    /// As [`RecordingReader::from_bytes`], counting the bytes consumed into `counter` (for a
    /// progress bar on another thread; for compressed bytes, the share decoded so far).
    pub fn from_bytes_counted(bytes: Bytes, counter: Arc<AtomicU64>) -> Result<Self, RecordError> {
        let head = bytes.slice(..HEADER_LEN.min(bytes.len()));
        let codec = check_header(&head, &PathBuf::from("<memory>"))?;
        let body = bytes.slice(HEADER_LEN..);
        let original_body_len = body.len() as u64;
        let (body, damage) = match codec {
            Codec::None => (body, None),
            Codec::Zstd => {
                // Decompress up front, keeping what decoded before any damage: a stream cut
                // short is a truncated tail, any other decoder error is corruption, reported
                // where the good bytes end.
                let mut out = Vec::new();
                let mut decoder = zstd::Decoder::new(io::Cursor::new(body))?;
                let damage = match decoder.read_to_end(&mut out) {
                    Ok(_) => None,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
                    Err(e) => Some(e.to_string()),
                };
                (Bytes::from(out), damage)
            }
        };
        counter.store(HEADER_LEN as u64, Ordering::Relaxed);
        let input = Input::Memory {
            body: io::Cursor::new(body),
            damage,
            count: Arc::clone(&counter),
            original_body_len,
        };
        Self::start(input, codec, Some(bytes.len() as u64), counter)
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
        let rest = len - head_len;
        let payload = match self.input.payload(head, rest) {
            Ok(Some(payload)) => payload,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.stream_error(e, start)),
        };
        if checksum(&payload) != crc {
            return Err(RecordError::Corrupt {
                offset: start,
                reason: "checksum mismatch".into(),
            });
        }
        self.offset = start + (FRAME_PREFIX_LEN + len) as u64;
        self.frames += 1;
        Ok(Some((frame_kind, Some(payload))))
    }

    fn read_full(&mut self, buf: &mut [u8], frame_start: u64) -> Result<usize, RecordError> {
        read_full(&mut self.input, buf).map_err(|e| self.stream_error(e, frame_start))
    }

    /// A compressed stream that ends mid-frame is a truncated tail (zstd says
    /// `UnexpectedEof`); any other decoder error is corruption, wherever in the file it is.
    fn stream_error(&self, err: io::Error, frame_start: u64) -> RecordError {
        if self.codec == Codec::Zstd {
            if err.kind() == io::ErrorKind::UnexpectedEof {
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

/// A page, the unit mappings are released in.
const PAGE: usize = 4096;

/// A mapping shared between the reader and the envelopes sliced from it.
struct SharedMap(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Maps `file` into memory, or `None` if it cannot be (then it is read instead).
///
/// Replaying a mapped recording copies nothing: each envelope's bytes are a slice of the
/// mapping, and a worker that skips another's envelopes never touches their pages.
#[allow(unsafe_code)]
fn map(file: &File) -> Option<Arc<memmap2::Mmap>> {
    // SAFETY: the mapping is read-only and private to this process. The one hazard of a
    // file mapping is another process truncating the file while it is mapped: reading the
    // vanished pages then raises SIGBUS. Recordings are only ever appended to by their writer
    // (which keeps the bytes already written), so this happens only if someone truncates a
    // recording during its own replay — the same caveat ripgrep documents for its mapped
    // searches.
    let mapped = unsafe { memmap2::Mmap::map(file) }.ok()?;
    Some(Arc::new(mapped))
}

/// Drops `len` bytes of `map` from `offset` out of this process's memory; true on success.
#[allow(unsafe_code)]
fn release(map: &memmap2::Mmap, offset: usize, len: usize) -> bool {
    // SAFETY: `MADV_DONTNEED` is unsafe in general because on a writable private mapping it
    // throws away changes. This mapping is read-only: nothing can have changed, and a later
    // read of the range faults the same bytes back in from the file.
    unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) }.is_ok()
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
