//! The recording file format: a fixed header, then length-prefixed, checksummed frames.
//!
//! ```text
//! header (16 bytes, never compressed)
//!   magic    8 bytes  "SLUICREC"
//!   version  u16 LE   1
//!   codec    u8       0 = none, 1 = zstd (the whole body is one zstd stream)
//!   reserved 5 bytes  zero
//! body: frames, back to back
//!   len      u32 LE   length of the payload
//!   crc      u32 LE   CRC-32 (IEEE) of the payload
//!   payload  len bytes: a kind byte, then
//!     1 meta       JSON (`RecordingMeta`), always the first frame
//!     2 envelope   endpoint u8 · t_ms u64 LE · context_len u16 LE · context · raw bytes
//!     3 watermark  source u8 · t_ms u64 LE
//!     4 end        frame count u64 LE: the clean close; its absence means a crash
//! ```
//!
//! Offsets in errors count bytes of the uncompressed stream, header included, so for an
//! uncompressed file they are file offsets.

use serde::{Deserialize, Serialize};

/// The first eight bytes of every recording.
pub const MAGIC: &[u8; 8] = b"SLUICREC";
/// The format version this build reads and writes.
pub const VERSION: u16 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 16;
/// Frame prefix length (len + crc).
pub const FRAME_PREFIX_LEN: usize = 8;
/// The largest payload a frame may carry; a longer length field is corruption.
pub const MAX_FRAME_LEN: u32 = 64 << 20;

/// Frame kinds.
pub mod kind {
    /// Recording metadata (JSON).
    pub const META: u8 = 1;
    /// An envelope.
    pub const ENVELOPE: u8 = 2;
    /// A source watermark.
    pub const WATERMARK: u8 = 3;
    /// The clean close.
    pub const END: u8 = 4;
}

/// How the body is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    /// Plain frames: fastest to replay.
    #[default]
    None,
    /// One zstd stream: several times smaller.
    Zstd,
}

impl Codec {
    pub(crate) fn byte(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Zstd => 1,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Codec> {
        match b {
            0 => Some(Codec::None),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// What a recording says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingMeta {
    /// A human label ("synthetic market, seed 7, 10 minutes").
    #[serde(default)]
    pub label: String,
    /// True when the data was generated, not received from real APIs.
    #[serde(default)]
    pub synthetic: bool,
    /// What wrote it (`sluice 0.1.0 run`, `sluice 0.1.0 synth --seed 7`).
    #[serde(default)]
    pub writer: String,
    /// The sources the recording holds (their envelopes and watermarks). Empty means unknown:
    /// replay then expects every source. A source replay expects but never sees would hold
    /// the frontier back until the end of the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<crate::model::Source>,
}

/// A frame's checksum: CRC-32 (IEEE) of its payload. Every replayed frame is checked, so it
/// must be cheap: crc32fast picks carry-less-multiply instructions at run time.
pub fn checksum(payload: &[u8]) -> u32 {
    crc32fast::hash(payload)
}

/// The header bytes for `codec`.
pub fn header(codec: Codec) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h[10] = codec.byte();
    h
}
