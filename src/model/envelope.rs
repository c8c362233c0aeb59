//! The unit of ingest: bytes exactly as a source received them, stamped with the ingest time.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Endpoint, Source};

/// Bytes exactly as received from an endpoint, with the ingest time at this node.
///
/// Envelopes are what recordings hold and what the dataflow parses, so a replay runs the same
/// parsing code as a live run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// What the bytes are.
    pub endpoint: Endpoint,
    /// Ingest time at this node, in ms since the Unix epoch.
    pub t_ms: u64,
    /// What the bytes alone do not say (request chain, SSE event type); see [`Endpoint`].
    pub context: String,
    /// The payload, untouched.
    pub raw: Bytes,
    /// Position among this source's envelopes (0, 1, 2, ... in ingest order). Not stored in
    /// recordings: replay and live count the same way.
    pub seq: u64,
}

impl Envelope {
    /// The source owning the envelope's endpoint.
    pub fn source(&self) -> Source {
        self.endpoint.source()
    }
}

/// What a source tells the dataflow: an envelope, or a watermark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ingest {
    /// Bytes received.
    Envelope(Envelope),
    /// No envelope with `t_ms` below this follows from the source.
    Watermark(u64),
}
