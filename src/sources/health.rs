//! What each live source last managed, for `/status`, `/health` and the metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::model::Source;

/// One source's recent history.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SourceHealth {
    /// When the source last received good data (ms since the epoch).
    pub last_success_ms: Option<u64>,
    /// When it last failed, and how (an error category, never a secret).
    pub last_error: Option<(u64, String)>,
    /// Envelopes handed to the dataflow.
    pub envelopes: u64,
    /// A source-specific state: `connected`, `polling-fallback`, `stale-cache`, ...
    pub state: String,
    /// After this long without success the source counts as stale (s).
    pub stale_after_secs: u64,
    /// When the source started (ms since the epoch): staleness counts from here at first.
    pub started_ms: u64,
}

impl SourceHealth {
    /// Seconds since the last success (or since the start, before any), at `now_ms`.
    pub fn age_secs(&self, now_ms: u64) -> f64 {
        let since = self.last_success_ms.unwrap_or(self.started_ms);
        now_ms.saturating_sub(since) as f64 / 1000.0
    }

    /// True when the source has gone longer than its limit without success.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        self.age_secs(now_ms) > self.stale_after_secs as f64
    }
}

/// The health of every running source, shared between the sources and the server.
#[derive(Clone, Debug, Default)]
pub struct SourceRegistry {
    inner: Arc<Mutex<BTreeMap<Source, SourceHealth>>>,
}

impl SourceRegistry {
    /// Registers a source that starts now.
    pub fn register(&self, source: Source, stale_after_secs: u64, now_ms: u64) {
        self.update(source, |h| {
            h.stale_after_secs = stale_after_secs;
            h.started_ms = now_ms;
            h.state = "starting".into();
        });
    }

    /// Changes a source's record.
    pub fn update(&self, source: Source, f: impl FnOnce(&mut SourceHealth)) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(source).or_default());
    }

    /// Records a success at `now_ms`, with `envelopes` more handed over.
    pub fn success(&self, source: Source, now_ms: u64, envelopes: u64) {
        self.update(source, |h| {
            h.last_success_ms = Some(now_ms);
            h.envelopes += envelopes;
        });
    }

    /// Records a failure at `now_ms`.
    pub fn failure(&self, source: Source, now_ms: u64, what: &str) {
        self.update(source, |h| h.last_error = Some((now_ms, what.to_owned())));
    }

    /// Sets a source's state word.
    pub fn state(&self, source: Source, state: &str) {
        self.update(source, |h| h.state = state.to_owned());
    }

    /// A copy of every source's record.
    pub fn snapshot(&self) -> BTreeMap<Source, SourceHealth> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
