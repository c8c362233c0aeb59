//! Counters a run keeps for its summary: envelopes, bytes, records, invalid inputs, events.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::Endpoint;

/// Counters shared by the workers of one process. Updated with relaxed atomics: they are
/// reports, never inputs to a decision.
#[derive(Debug, Default)]
pub struct RunStats {
    envelopes: [AtomicU64; Endpoint::ALL.len()],
    bytes: AtomicU64,
    prices: AtomicU64,
    snapshots: AtomicU64,
    targets: AtomicU64,
    invalid: AtomicU64,
    notices: AtomicU64,
    events: Mutex<BTreeMap<String, u64>>,
    failures: Mutex<Vec<String>>,
}

/// A snapshot of [`RunStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsReport {
    /// Envelopes parsed, by endpoint name.
    pub envelopes: BTreeMap<String, u64>,
    /// Payload bytes parsed.
    pub bytes: u64,
    /// Price records.
    pub prices: u64,
    /// Boost snapshots.
    pub snapshots: u64,
    /// Chain observations.
    pub targets: u64,
    /// Invalid inputs.
    pub invalid: u64,
    /// Source notices (Hermes `event: error`).
    pub notices: u64,
    /// Journal events written, by kind.
    pub events: BTreeMap<String, u64>,
    /// Sink failures that make the run's output incomplete.
    pub failures: Vec<String>,
}

impl StatsReport {
    /// Total envelopes.
    pub fn total_envelopes(&self) -> u64 {
        self.envelopes.values().sum()
    }

    /// Total records of every kind.
    pub fn records(&self) -> u64 {
        self.prices + self.snapshots + self.targets + self.invalid + self.notices
    }
}

impl RunStats {
    /// Counts one parsed envelope.
    pub fn envelope(&self, endpoint: Endpoint, bytes: usize) {
        let index = Endpoint::ALL
            .iter()
            .position(|e| *e == endpoint)
            .unwrap_or(0);
        self.envelopes[index].fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts parsed records.
    pub fn records(&self, prices: u64, snapshots: u64, targets: u64, invalid: u64, notices: u64) {
        for (counter, n) in [
            (&self.prices, prices),
            (&self.snapshots, snapshots),
            (&self.targets, targets),
            (&self.invalid, invalid),
            (&self.notices, notices),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Counts journal events written, by kind.
    pub fn events(&self, counts: &BTreeMap<String, u64>) {
        if let Ok(mut events) = self.events.lock() {
            for (kind, n) in counts {
                *events.entry(kind.clone()).or_default() += n;
            }
        }
    }

    /// Records a failure that makes the run's output incomplete.
    pub fn fail(&self, what: String) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.push(what);
        }
    }

    /// Price records so far (for progress displays).
    pub fn prices_so_far(&self) -> u64 {
        self.prices.load(Ordering::Relaxed)
    }

    /// A snapshot of every counter.
    pub fn report(&self) -> StatsReport {
        StatsReport {
            envelopes: Endpoint::ALL
                .iter()
                .zip(&self.envelopes)
                .map(|(e, n)| (e.name().to_owned(), n.load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            bytes: self.bytes.load(Ordering::Relaxed),
            prices: self.prices.load(Ordering::Relaxed),
            snapshots: self.snapshots.load(Ordering::Relaxed),
            targets: self.targets.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
            notices: self.notices.load(Ordering::Relaxed),
            events: self.events.lock().map(|e| e.clone()).unwrap_or_default(),
            failures: self.failures.lock().map(|f| f.clone()).unwrap_or_default(),
        }
    }
}
