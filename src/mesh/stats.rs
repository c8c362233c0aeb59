//! A node's counters (what tests and the API read) and the process metrics with the seed's
//! names.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ops::mesh::rules::Rejection;

/// What one node did.
#[derive(Debug, Default)]
pub struct NodeStats {
    accepted: AtomicU64,
    published: AtomicU64,
    rejected: [AtomicU64; Rejection::ALL.len()],
}

impl NodeStats {
    /// Messages accepted from peers.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Messages this node published.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Messages (or connections) refused for `reason`.
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.rejected[index(reason)].load(Ordering::Relaxed)
    }

    /// Everything refused, any reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn count_accepted(&self, latency_ms: i64) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("mesh_messages_accepted_total").increment(1);
        metrics::histogram!("mesh_message_propagation_latency_seconds")
            .record(latency_ms.max(0) as f64 / 1000.0);
    }

    pub(crate) fn count_published(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("mesh_messages_published_total").increment(1);
    }

    pub(crate) fn count_rejected(&self, reason: Rejection) {
        self.rejected[index(reason)].fetch_add(1, Ordering::Relaxed);
        metrics::counter!("mesh_messages_rejected_total", "reason" => reason.reason()).increment(1);
    }
}

fn index(reason: Rejection) -> usize {
    Rejection::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
}

/// Makes every mesh counter and gauge visible on `/metrics` from the start, at zero until
/// something happens (a provider's counters on a node that is not one, each rejection reason),
/// so dashboards and alert rules see a series, not a gap. Adds zero: safe to call again.
pub fn register_metrics() {
    for name in [
        "mesh_messages_accepted_total",
        "mesh_messages_published_total",
        "mesh_provider_fetch_attempts_total",
        "mesh_provider_fetch_success_total",
        "mesh_provider_broadcast_success_total",
        "mesh_cache_hits_total",
        "mesh_cache_misses_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for reason in Rejection::ALL {
        metrics::counter!("mesh_messages_rejected_total", "reason" => reason.reason()).increment(0);
    }
    for name in [
        "mesh_network_connected_peers",
        "mesh_network_active_providers",
        "mesh_seen_messages_cache_size",
        "mesh_cache_data_age_seconds",
    ] {
        metrics::gauge!(name).increment(0.0);
    }
    // A histogram appears (count 0) once registered, before its first sample.
    for name in [
        "mesh_provider_api_latency_seconds",
        "mesh_message_propagation_latency_seconds",
    ] {
        let _ = metrics::histogram!(name);
    }
}

/// Describes the mesh metrics (once, with the recorder).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "mesh_messages_accepted_total",
        "Mesh price messages accepted from peers"
    );
    metrics::describe_counter!(
        "mesh_messages_published_total",
        "Mesh price messages this node published"
    );
    metrics::describe_counter!(
        "mesh_messages_rejected_total",
        "Mesh messages and connections refused, by reason"
    );
    metrics::describe_histogram!(
        "mesh_message_propagation_latency_seconds",
        "From a message's publish time to its acceptance here"
    );
    metrics::describe_gauge!(
        "mesh_network_connected_peers",
        "Allowlisted peers connected now"
    );
    metrics::describe_gauge!(
        "mesh_seen_messages_cache_size",
        "Message ids in the seen cache"
    );
    metrics::describe_gauge!(
        "mesh_network_active_providers",
        "Price origins (providers) whose prices this node accepted within two fetch intervals"
    );
    metrics::describe_counter!(
        "mesh_provider_fetch_attempts_total",
        "Birdeye fetches this provider attempted"
    );
    metrics::describe_counter!(
        "mesh_provider_fetch_success_total",
        "Birdeye fetches that returned prices"
    );
    metrics::describe_counter!(
        "mesh_provider_broadcast_success_total",
        "Prices this provider published"
    );
    metrics::describe_histogram!(
        "mesh_provider_api_latency_seconds",
        "Birdeye multi_price latency seen by providers"
    );
    metrics::describe_counter!(
        "mesh_cache_hits_total",
        "Mesh price look-ups (/api/mesh/prices) that found prices"
    );
    metrics::describe_counter!(
        "mesh_cache_misses_total",
        "Mesh price look-ups (/api/mesh/prices) that found none"
    );
    metrics::describe_gauge!(
        "mesh_cache_data_age_seconds",
        "Age of the newest mesh price this node accepted (refreshed every second)"
    );
}
