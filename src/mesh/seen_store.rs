//! The seen-message cache backed by the sled tree `mesh_seen_messages` (id → expiry ms, big
//! endian), so a restarted node still refuses what it saw before.
//!
//! Lookups are answered from memory. Writes go to sled in batches: when [`BATCH`] are pending,
//! when the node calls [`SeenStore::persist`] (every few hundred ms), and at shutdown. One sled
//! write per message would halve the validation rate; the price is that a crash (not a stop)
//! can forget the ids of the last moments, which the age rule still bounds.

use crate::ops::mesh::seen::{Id, SeenCache};
use crate::store::{StateWrite, Store, StoreError, Tree};

/// Pending writes that trigger a batch.
pub const BATCH: usize = 512;

/// A [`SeenCache`] that writes behind to the store.
pub struct SeenStore {
    cache: SeenCache,
    store: Store,
    pending: Vec<StateWrite>,
}

impl SeenStore {
    /// Loads the persisted ids still valid at `now_ms`, at most `capacity` of them.
    pub fn open(store: Store, capacity: usize, now_ms: i64) -> Result<SeenStore, StoreError> {
        let mut cache = SeenCache::new(capacity);
        let mut stale = Vec::new();
        for (key, value) in store.scan(Tree::MeshSeen, b"")? {
            match (
                <Id>::try_from(key.as_slice()),
                <[u8; 8]>::try_from(value.as_slice()),
            ) {
                (Ok(id), Ok(expiry)) => {
                    let removed = cache.insert(id, i64::from_be_bytes(expiry), now_ms).removed;
                    stale.extend(removed.iter().map(|id| id.to_vec()));
                }
                _ => stale.push(key),
            }
        }
        let mut seen = SeenStore {
            cache,
            store,
            pending: Vec::new(),
        };
        seen.pending.extend(stale.into_iter().map(removal));
        seen.persist()?;
        Ok(seen)
    }

    /// True when `id` was seen and is still remembered at `now_ms`.
    pub fn contains(&self, id: &Id, now_ms: i64) -> bool {
        self.cache.contains(id, now_ms)
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Remembers `id` until `expiry_ms`, in memory now and in the store with the next batch.
    pub fn insert(&mut self, id: Id, expiry_ms: i64, now_ms: i64) -> Result<(), StoreError> {
        let removed = self.cache.insert(id, expiry_ms, now_ms).removed;
        self.pending.push(StateWrite {
            tree: Tree::MeshSeen,
            key: id.to_vec(),
            value: Some(expiry_ms.to_be_bytes().to_vec()),
            version: None,
        });
        self.pending
            .extend(removed.iter().map(|id| removal(id.to_vec())));
        if self.pending.len() >= BATCH {
            self.persist()?;
        }
        Ok(())
    }

    /// Writes the pending changes to the store, in order.
    pub fn persist(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let writes = std::mem::take(&mut self.pending);
        self.store.apply(&writes)
    }

    /// Persists and flushes the store (at shutdown).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.persist()?;
        self.store.flush()
    }
}

fn removal(key: Vec<u8>) -> StateWrite {
    StateWrite {
        tree: Tree::MeshSeen,
        key,
        value: None,
        version: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(dir.path()).unwrap();
            let mut seen = SeenStore::open(store, 10, 0).unwrap();
            seen.insert([1; 32], 1_000, 0).unwrap();
            seen.insert([2; 32], 50, 0).unwrap();
            seen.flush().unwrap();
        }
        let (store, _) = Store::open(dir.path()).unwrap();
        let seen = SeenStore::open(store.clone(), 10, 100).unwrap();
        assert!(seen.contains(&[1; 32], 100));
        assert!(!seen.contains(&[2; 32], 100));
        assert_eq!(store.len(Tree::MeshSeen).unwrap(), 1);
    }
}
