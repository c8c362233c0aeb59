//! The embedded state store: sled, one tree per concern, all access through this module.
//!
//! Everything kept here can be rebuilt — from the chain, the journal or the next polls — so a
//! store that is corrupt at open is reported, wiped and recreated instead of stopping the run.
//! Keeping all access behind [`Store`] means the engine can change without touching callers.

mod records;
pub mod risk;
pub mod trending;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use records::{StateRecord, price_key};

/// sled's page cache size.
const CACHE_BYTES: u64 = 32 << 20;

/// The trees, one per concern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tree {
    /// Latest price per (asset, source): the seed's `mesh_price_cache`.
    Prices,
    /// Mesh message ids already seen, with their expiry.
    MeshSeen,
    /// Trending state per token: position history and recent events.
    Trending,
    /// The last good HTTP response per endpoint (stale-cache fallback).
    HttpCache,
    /// Per feed: last pushed and in flight.
    Pushes,
    /// The paper portfolio, peak equity and drawdown tier.
    Risk,
}

impl Tree {
    /// Every tree.
    pub const ALL: [Tree; 6] = [
        Tree::Prices,
        Tree::MeshSeen,
        Tree::Trending,
        Tree::HttpCache,
        Tree::Pushes,
        Tree::Risk,
    ];

    /// The sled tree name.
    pub const fn name(self) -> &'static str {
        match self {
            Tree::Prices => "prices",
            Tree::MeshSeen => "mesh_seen_messages",
            Tree::Trending => "trending",
            Tree::HttpCache => "http_cache",
            Tree::Pushes => "pushes",
            Tree::Risk => "risk",
        }
    }
}

/// A key and its value, as stored.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// One write: a value for a key, or its removal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateWrite {
    /// The tree.
    pub tree: Tree,
    /// The key.
    pub key: Vec<u8>,
    /// The value, or `None` to remove the key.
    pub value: Option<Vec<u8>>,
    /// When set, the write only lands if no write with a greater version reached the key
    /// before it: keys written from several workers still end with the newest value.
    pub version: Option<i64>,
}

/// A store problem.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory cannot be used at all (permissions, another process holds it).
    #[error("state store at {path}: {reason}")]
    Unusable {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A read or write failed.
    #[error("state store: {0}")]
    Sled(#[from] sled::Error),
}

/// The state store.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
}

/// What opening found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenReport {
    /// The store opened as it was.
    Opened,
    /// The store was corrupt; it was wiped and recreated.
    Rebuilt {
        /// What was wrong.
        reason: String,
    },
}

impl Store {
    /// Opens (or creates) the store at `dir`. A corrupt store is wiped and recreated, and the
    /// report says why; only an unusable directory is an error.
    pub fn open(dir: &Path) -> Result<(Store, OpenReport), StoreError> {
        match Self::try_open(dir) {
            Ok(store) => Ok((store, OpenReport::Opened)),
            Err(OpenFailure::Unusable(reason)) => Err(StoreError::Unusable {
                path: dir.to_owned(),
                reason,
            }),
            Err(OpenFailure::Corrupt(reason)) => {
                std::fs::remove_dir_all(dir).map_err(|e| StoreError::Unusable {
                    path: dir.to_owned(),
                    reason: format!("corrupt ({reason}) and could not be removed: {e}"),
                })?;
                match Self::try_open(dir) {
                    Ok(store) => Ok((store, OpenReport::Rebuilt { reason })),
                    Err(OpenFailure::Unusable(r) | OpenFailure::Corrupt(r)) => {
                        Err(StoreError::Unusable {
                            path: dir.to_owned(),
                            reason: format!(
                                "rebuilt after corruption ({reason}) but still failing: {r}"
                            ),
                        })
                    }
                }
            }
        }
    }

    fn try_open(dir: &Path) -> Result<Store, OpenFailure> {
        // sled has been seen to panic on damaged files rather than return an error.
        let opened = std::panic::catch_unwind(|| {
            // sled's page cache defaults to 1 GiB; these trees are small caches.
            let db = sled::Config::new()
                .path(dir)
                .cache_capacity(CACHE_BYTES)
                .flush_every_ms(None)
                .open()?;
            for tree in Tree::ALL {
                db.open_tree(tree.name())?;
            }
            // Touch every tree's contents: corruption often only shows on first read.
            for tree in Tree::ALL {
                let t = db.open_tree(tree.name())?;
                t.first()?;
                t.last()?;
            }
            Ok::<_, sled::Error>(db)
        });
        match opened {
            Ok(Ok(db)) => Ok(Store {
                db,
                path: dir.to_owned(),
            }),
            Ok(Err(sled::Error::Io(e))) if is_environmental(&e) => {
                Err(OpenFailure::Unusable(e.to_string()))
            }
            Ok(Err(e)) => Err(OpenFailure::Corrupt(e.to_string())),
            Err(panic) => Err(OpenFailure::Corrupt(format!(
                "panic while opening: {}",
                panic_text(&panic)
            ))),
        }
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies writes, one sled batch per tree.
    pub fn apply(&self, writes: &[StateWrite]) -> Result<(), StoreError> {
        for tree in Tree::ALL {
            let mut batch = sled::Batch::default();
            let mut any = false;
            for w in writes.iter().filter(|w| w.tree == tree) {
                any = true;
                match &w.value {
                    Some(v) => batch.insert(w.key.as_slice(), v.as_slice()),
                    None => batch.remove(w.key.as_slice()),
                }
            }
            if any {
                self.db.open_tree(tree.name())?.apply_batch(batch)?;
            }
        }
        Ok(())
    }

    /// The value at `key`.
    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .open_tree(tree.name())?
            .get(key)?
            .map(|v| v.to_vec()))
    }

    /// Every (key, value) of a tree whose key starts with `prefix`, in key order.
    pub fn scan(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.open_tree(tree.name())?.scan_prefix(prefix) {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Number of keys in a tree.
    pub fn len(&self, tree: Tree) -> Result<usize, StoreError> {
        Ok(self.db.open_tree(tree.name())?.len())
    }

    /// Removes every key of a tree.
    pub fn clear(&self, tree: Tree) -> Result<(), StoreError> {
        self.db.open_tree(tree.name())?.clear()?;
        Ok(())
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

enum OpenFailure {
    /// Not the store's fault: permissions, a lock held by another process.
    Unusable(String),
    /// The files are damaged.
    Corrupt(String),
}

fn is_environmental(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        PermissionDenied | WouldBlock | ReadOnlyFilesystem | StorageFull | QuotaExceeded
    ) || e.to_string().contains("lock")
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(tree: Tree, key: &str, value: &str) -> StateWrite {
        StateWrite {
            tree,
            key: key.as_bytes().to_vec(),
            value: Some(value.as_bytes().to_vec()),
            version: None,
        }
    }

    #[test]
    fn writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        {
            let (store, report) = Store::open(&path).unwrap();
            assert_eq!(report, OpenReport::Opened);
            store
                .apply(&[
                    write(Tree::Prices, "BTC|hermes", "1"),
                    write(Tree::Risk, "tier", "normal"),
                ])
                .unwrap();
            store.flush().unwrap();
        }
        let (store, _) = Store::open(&path).unwrap();
        assert_eq!(
            store.get(Tree::Prices, b"BTC|hermes").unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(store.scan(Tree::Risk, b"").unwrap().len(), 1);
    }

    #[test]
    fn corrupt_files_are_rebuilt_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        {
            let (store, _) = Store::open(&path).unwrap();
            store.apply(&[write(Tree::Prices, "k", "v")]).unwrap();
            store.flush().unwrap();
        }
        // Overwrite every file sled wrote with garbage.
        for entry in walk(&path) {
            let len = std::fs::metadata(&entry).unwrap().len().max(64) as usize;
            let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            std::fs::write(&entry, garbage).unwrap();
        }
        let (store, report) = Store::open(&path).unwrap();
        assert!(matches!(report, OpenReport::Rebuilt { .. }), "{report:?}");
        assert_eq!(store.get(Tree::Prices, b"k").unwrap(), None);
        store.apply(&[write(Tree::Prices, "k", "again")]).unwrap();
        assert_eq!(
            store.get(Tree::Prices, b"k").unwrap(),
            Some(b"again".to_vec())
        );
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
