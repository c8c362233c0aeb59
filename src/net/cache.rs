//! The stale cache: the last good response per endpoint key, kept in sled
//! ([`Tree::HttpCache`]) so a failing upstream can still be answered, marked stale, after a
//! restart.

use bytes::Bytes;

use crate::store::{StateWrite, Store, StoreError, Tree};

/// Layout version of a stored value: `[1][received_ms: u64 BE][status: u16 BE][body]`.
const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 1 + 8 + 2;

/// A good response as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CachedResponse {
    /// When it was received (ms since the epoch): wall clock, since it outlives the process.
    pub(crate) received_ms: u64,
    /// Its HTTP status.
    pub(crate) status: u16,
    /// Its body, as received.
    pub(crate) body: Bytes,
}

/// The key of a request: the endpoint name, then its path and query, then for a request with
/// a body (Birdeye's POST) a hash of that body, since the same path asks different questions.
pub(crate) fn cache_key(endpoint: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut key = endpoint_prefix(endpoint);
    key.extend_from_slice(path.as_bytes());
    if let Some(body) = body {
        key.push(0);
        key.extend_from_slice(format!("{:016x}", fnv1a(body)).as_bytes());
    }
    key
}

/// Every key of `endpoint` starts with this (endpoint names hold no NUL).
fn endpoint_prefix(endpoint: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(endpoint.len() + 1);
    prefix.extend_from_slice(endpoint.as_bytes());
    prefix.push(0);
    prefix
}

/// FNV-1a, 64 bit: stable across runs and platforms, unlike `std`'s hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn encode(response: &CachedResponse) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER_LEN + response.body.len());
    value.push(FORMAT_V1);
    value.extend_from_slice(&response.received_ms.to_be_bytes());
    value.extend_from_slice(&response.status.to_be_bytes());
    value.extend_from_slice(&response.body);
    value
}

/// `None` for a value this code did not write (another layout, truncated): a cache miss.
fn decode(value: &[u8]) -> Option<CachedResponse> {
    let (&format, rest) = value.split_first()?;
    if format != FORMAT_V1 {
        return None;
    }
    let (received, rest) = rest.split_first_chunk::<8>()?;
    let (status, body) = rest.split_first_chunk::<2>()?;
    Some(CachedResponse {
        received_ms: u64::from_be_bytes(*received),
        status: u16::from_be_bytes(*status),
        body: Bytes::copy_from_slice(body),
    })
}

/// The HTTP cache tree of a [`Store`].
#[derive(Clone)]
pub(crate) struct StaleCache {
    store: Store,
}

impl StaleCache {
    pub(crate) fn new(store: Store) -> Self {
        StaleCache { store }
    }

    /// Stores the latest good response for `key`. Not flushed here: the store's owner flushes
    /// on an interval and at shutdown, and losing the last seconds of cache in a crash is
    /// harmless.
    pub(crate) fn put(&self, key: &[u8], response: &CachedResponse) -> Result<(), StoreError> {
        self.store.apply(&[StateWrite {
            tree: Tree::HttpCache,
            key: key.to_vec(),
            value: Some(encode(response)),
            version: None,
        }])
    }

    /// The stored response for `key`, if any.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<CachedResponse>, StoreError> {
        Ok(self
            .store
            .get(Tree::HttpCache, key)?
            .and_then(|value| decode(&value)))
    }

    /// When the newest stored response of `endpoint` was received.
    pub(crate) fn newest_received_ms(&self, endpoint: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .store
            .scan(Tree::HttpCache, &endpoint_prefix(endpoint))?
            .iter()
            .filter_map(|(_, value)| decode(value).map(|r| r.received_ms))
            .max())
    }

    /// Removes `endpoint`'s responses received before `cutoff_ms` (too old to ever be
    /// served), so paths that are not asked again (token batches that changed) do not pile
    /// up. Returns how many were removed.
    pub(crate) fn prune(&self, endpoint: &str, cutoff_ms: u64) -> Result<usize, StoreError> {
        let removals: Vec<StateWrite> = self
            .store
            .scan(Tree::HttpCache, &endpoint_prefix(endpoint))?
            .into_iter()
            .filter(|(_, value)| decode(value).is_none_or(|r| r.received_ms < cutoff_ms))
            .map(|(key, _)| StateWrite {
                tree: Tree::HttpCache,
                key,
                value: None,
                version: None,
            })
            .collect();
        if !removals.is_empty() {
            self.store.apply(&removals)?;
        }
        Ok(removals.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_foreign_values_miss() {
        let response = CachedResponse {
            received_ms: 1_700_000_000_123,
            status: 200,
            body: Bytes::from_static(b"[1,2,3]"),
        };
        assert_eq!(decode(&encode(&response)), Some(response));
        assert_eq!(decode(b""), None);
        assert_eq!(decode(&[2, 0, 0]), None);
        assert_eq!(decode(&[1, 0, 0]), None);
    }

    #[test]
    fn keys_separate_endpoints_paths_and_bodies() {
        let a = cache_key(
            "birdeye_multi_price",
            "/defi/multi_price",
            Some(b"{\"a\":1}"),
        );
        let b = cache_key(
            "birdeye_multi_price",
            "/defi/multi_price",
            Some(b"{\"a\":2}"),
        );
        assert_ne!(a, b);
        assert!(a.starts_with(&endpoint_prefix("birdeye_multi_price")));
        assert!(!cache_key("ds_boosts_x", "/p", None).starts_with(&endpoint_prefix("ds_boosts")));
    }

    #[test]
    fn prune_keeps_only_fresh_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("s")).unwrap();
        let cache = StaleCache::new(store);
        let at = |ms| CachedResponse {
            received_ms: ms,
            status: 200,
            body: Bytes::from_static(b"x"),
        };
        cache.put(&cache_key("e", "/old", None), &at(100)).unwrap();
        cache.put(&cache_key("e", "/new", None), &at(900)).unwrap();
        cache.put(&cache_key("f", "/old", None), &at(100)).unwrap();
        assert_eq!(cache.newest_received_ms("e").unwrap(), Some(900));
        assert_eq!(cache.prune("e", 500).unwrap(), 1);
        assert_eq!(cache.get(&cache_key("e", "/old", None)).unwrap(), None);
        assert!(cache.get(&cache_key("e", "/new", None)).unwrap().is_some());
        assert!(cache.get(&cache_key("f", "/old", None)).unwrap().is_some());
    }
}
