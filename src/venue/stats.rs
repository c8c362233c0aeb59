//! What the venue has served, per endpoint: requests, responses by status, SSE connections and
//! events. Tests assert on it; `GET /_venue/stats` shows it to people.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use super::faults::{SERVED_ENDPOINTS, served_index, target_name};
use crate::model::Endpoint;

/// Counts for one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EndpointStats {
    /// Requests received (every one, whatever became of it).
    pub requests: u64,
    /// Responses by HTTP status (an SSE stream counts as one 200 when it opens).
    pub statuses: BTreeMap<u16, u64>,
    /// Requests held unanswered by `timeout_rate`.
    pub held: u64,
    /// Bodies (or SSE events) sent malformed on purpose.
    pub malformed: u64,
    /// SSE: streams opened.
    pub sse_opened: u64,
    /// SSE: streams open now.
    pub sse_active: u64,
    /// SSE: streams cut by `drop_every`.
    pub sse_dropped: u64,
    /// SSE: streams ended by an `event:error` (recorded, or `max_stream`).
    pub sse_ended: u64,
    /// SSE: streams gone silent by `stall_after`.
    pub sse_stalled: u64,
    /// SSE: update events sent.
    pub events_sent: u64,
    /// SSE: error events sent.
    pub error_events_sent: u64,
    /// SSE: keep-alive comments sent.
    pub keepalives_sent: u64,
}

impl EndpointStats {
    /// Responses with `status`.
    pub fn status(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

/// A snapshot of everything the venue has served.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VenueStats {
    /// The venue's recording time when the snapshot was taken (ms since the epoch).
    pub venue_time_ms: u64,
    /// Per endpoint, keyed by the venue's endpoint names (`dexscreener/boosts`, ...,
    /// `hermes/latest`; see [`target_name`]).
    pub endpoints: BTreeMap<String, EndpointStats>,
}

impl VenueStats {
    /// The counts of one endpoint (zeros for one never requested or not served).
    pub fn endpoint(&self, endpoint: Endpoint) -> EndpointStats {
        target_name(endpoint)
            .and_then(|name| self.endpoints.get(name))
            .cloned()
            .unwrap_or_default()
    }
}

/// Which counter to bump.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Count {
    Request,
    Status(u16),
    Held,
    Malformed,
    SseOpened,
    SseClosed,
    SseDropped,
    SseEnded,
    SseStalled,
    Event,
    ErrorEvent,
    KeepAlive,
}

/// The live counters behind [`VenueStats`].
pub(crate) struct StatsBook {
    endpoints: Mutex<Vec<EndpointStats>>,
}

impl StatsBook {
    pub(crate) fn new() -> StatsBook {
        StatsBook {
            endpoints: Mutex::new(vec![EndpointStats::default(); SERVED_ENDPOINTS.len()]),
        }
    }

    pub(crate) fn count(&self, endpoint: Endpoint, what: Count) {
        let Some(index) = served_index(endpoint) else {
            return;
        };
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(stats) = endpoints.get_mut(index) else {
            return;
        };
        match what {
            Count::Request => stats.requests += 1,
            Count::Status(status) => *stats.statuses.entry(status).or_default() += 1,
            Count::Held => stats.held += 1,
            Count::Malformed => stats.malformed += 1,
            Count::SseOpened => {
                stats.sse_opened += 1;
                stats.sse_active += 1;
            }
            Count::SseClosed => stats.sse_active = stats.sse_active.saturating_sub(1),
            Count::SseDropped => stats.sse_dropped += 1,
            Count::SseEnded => stats.sse_ended += 1,
            Count::SseStalled => stats.sse_stalled += 1,
            Count::Event => stats.events_sent += 1,
            Count::ErrorEvent => stats.error_events_sent += 1,
            Count::KeepAlive => stats.keepalives_sent += 1,
        }
    }

    pub(crate) fn snapshot(&self, venue_time_ms: u64) -> VenueStats {
        let endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        VenueStats {
            venue_time_ms,
            endpoints: SERVED_ENDPOINTS
                .iter()
                .zip(endpoints.iter())
                .filter_map(|(e, s)| target_name(*e).map(|name| (name.to_owned(), s.clone())))
                .collect(),
        }
    }
}
