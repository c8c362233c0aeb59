//! Stable routing: which worker owns a key, and the ingest-time quantum a record belongs to.
//!
//! Exchange must use a hash that every process computes alike: never `std`'s randomly seeded
//! hasher, or a key's state would be split across workers of different processes. FxHash is
//! unseeded and deterministic, and it takes eight bytes a step where FNV takes one: every
//! record crossing an exchange is hashed, so that matters.

use std::hash::{Hash, Hasher};

use rustc_hash::FxHasher;

/// FxHash over the key's `Hash` stream: the same value in every process of a cluster.
///
/// ```
/// use sluice::dataflow::route;
/// assert_eq!(route(&("BTC", 1u8)), route(&("BTC", 1u8)));
/// assert_ne!(route(&"BTC"), route(&"ETH"));
/// ```
pub fn route<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = FxHasher::default();
    key.hash(&mut hasher);
    hasher.finish()
}

/// The dataflow time of an ingest time: rounded down to a multiple of `tick_ms`.
///
/// ```
/// assert_eq!(sluice::dataflow::tick_of(1_005, 10), 1_000);
/// assert_eq!(sluice::dataflow::tick_of(1_010, 10), 1_010);
/// ```
pub fn tick_of(t_ms: u64, tick_ms: u64) -> u64 {
    t_ms - t_ms % tick_ms.max(1)
}
