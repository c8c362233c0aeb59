//! Which message ids count as seen: a bounded map with expiry.
//!
//! An id is remembered until the message it names could no longer pass the age rule (after
//! that the age rule refuses it anyway), and at most `capacity` ids are kept: past that, the
//! ids expiring first go. The cache says what to persist and what to drop; storing it is the
//! caller's business, so this stays free of I/O and clocks.

use std::collections::{BTreeSet, HashMap};

/// A message id (sha256).
pub type Id = [u8; 32];

/// The seen ids and their expiries.
#[derive(Debug, Default)]
pub struct SeenCache {
    by_id: HashMap<Id, i64>,
    by_expiry: BTreeSet<(i64, Id)>,
    capacity: usize,
}

/// What an insert changed, for whoever persists the cache.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Ids dropped (expired, or the oldest beyond the capacity).
    pub removed: Vec<Id>,
}

impl SeenCache {
    /// An empty cache holding at most `capacity` ids.
    pub fn new(capacity: usize) -> SeenCache {
        SeenCache {
            capacity: capacity.max(1),
            ..SeenCache::default()
        }
    }

    /// True when `id` was seen and has not expired at `now_ms`.
    pub fn contains(&self, id: &Id, now_ms: i64) -> bool {
        self.by_id.get(id).is_some_and(|&expiry| expiry > now_ms)
    }

    /// Ids held now.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Remembers `id` until `expiry_ms`, dropping expired ids and then the ones expiring first
    /// while over capacity.
    pub fn insert(&mut self, id: Id, expiry_ms: i64, now_ms: i64) -> Changes {
        if let Some(old) = self.by_id.insert(id, expiry_ms) {
            self.by_expiry.remove(&(old, id));
        }
        self.by_expiry.insert((expiry_ms, id));
        let mut changes = Changes::default();
        while let Some(&(expiry, oldest)) = self.by_expiry.first() {
            if expiry > now_ms && self.by_id.len() <= self.capacity {
                break;
            }
            self.by_expiry.pop_first();
            self.by_id.remove(&oldest);
            changes.removed.push(oldest);
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        [n; 32]
    }

    #[test]
    fn expiry_and_capacity() {
        let mut cache = SeenCache::new(2);
        assert!(cache.insert(id(1), 100, 0).removed.is_empty());
        assert!(cache.contains(&id(1), 99));
        assert!(!cache.contains(&id(1), 100));
        cache.insert(id(2), 300, 0);
        // Over capacity: the id expiring first goes.
        assert_eq!(cache.insert(id(3), 200, 0).removed, vec![id(1)]);
        assert_eq!(cache.len(), 2);
        // Expired ids go on the next insert.
        assert_eq!(cache.insert(id(4), 900, 250).removed, vec![id(3)]);
        assert!(cache.contains(&id(2), 250) && cache.contains(&id(4), 250));
    }
}
