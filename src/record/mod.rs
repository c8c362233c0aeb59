//! Recordings: every envelope and watermark a run received, losslessly, to replay later.
//!
//! The format ([`format`]) is length-prefixed, checksummed frames, optionally one zstd stream.
//! A recording cut short by a crash still replays up to the damage ([`RecordError::Truncated`]
//! names the offset); a damaged frame in the middle is an error naming its offset.

mod dump;
pub mod format;
mod import;
mod reader;
mod writer;

pub use dump::{DumpError, DumpLine, DumpSummary, dump};
pub use format::{Codec, RecordingMeta};
pub use import::{ImportError, ImportFormat, ImportSummary, ImportTiming, import, import_meta};
pub use reader::{Item, RecordError, RecordingReader};
pub use writer::RecordingWriter;
