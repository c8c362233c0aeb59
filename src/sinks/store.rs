//! The store sink: a thread that applies coalesced state writes and flushes on an interval.
//!
//! sled writes and fsyncs stay off the dataflow worker threads, so a slow disk never stalls
//! the computations.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use std::collections::HashMap;

use crate::store::{StateWrite, Store, StoreError, Tree};

/// Sends batches to the store thread.
#[derive(Clone)]
pub struct StoreSender(mpsc::Sender<Vec<StateWrite>>);

impl StoreSender {
    /// Queues one batch of writes.
    pub fn send(&self, batch: Vec<StateWrite>) {
        if !batch.is_empty() && self.0.send(batch).is_err() {
            warn!("state store thread has stopped; dropping a batch of state writes");
        }
    }
}

/// The running store thread.
pub struct StoreSink {
    handle: JoinHandle<StoreSinkReport>,
}

/// What the store thread did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreSinkReport {
    /// Batches applied.
    pub batches: u64,
    /// Writes applied.
    pub writes: u64,
    /// Errors met (each logged when it happened).
    pub errors: u64,
}

impl StoreSink {
    /// Starts the thread that owns `store`. It stops, after a final flush, once every
    /// [`StoreSender`] is dropped.
    pub fn start(store: Store, flush_every: Duration) -> std::io::Result<(StoreSink, StoreSender)> {
        let (tx, rx) = mpsc::channel::<Vec<StateWrite>>();
        let handle = std::thread::Builder::new()
            .name("sluice-store".into())
            .spawn(move || {
                let mut report = StoreSinkReport::default();
                let mut dirty = false;
                // The newest version written per versioned key: the same key may come from
                // several workers, in any order, and the newest must win.
                let mut versions: HashMap<(Tree, Vec<u8>), i64> = HashMap::new();
                let mut last_flush = Instant::now();
                let check = |result: Result<(), StoreError>, report: &mut StoreSinkReport| {
                    if let Err(e) = result {
                        report.errors += 1;
                        error!(error = %e, "state store write failed");
                    }
                };
                loop {
                    let wait = flush_every.saturating_sub(last_flush.elapsed());
                    match rx.recv_timeout(wait) {
                        Ok(mut batch) => {
                            batch.retain(|w| match w.version {
                                None => true,
                                Some(v) => match versions.get_mut(&(w.tree, w.key.clone())) {
                                    Some(newest) if *newest > v => false,
                                    Some(newest) => {
                                        *newest = v;
                                        true
                                    }
                                    None => {
                                        versions.insert((w.tree, w.key.clone()), v);
                                        true
                                    }
                                },
                            });
                            report.batches += 1;
                            report.writes += batch.len() as u64;
                            check(store.apply(&batch), &mut report);
                            dirty = true;
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    if dirty && last_flush.elapsed() >= flush_every {
                        check(store.flush(), &mut report);
                        dirty = false;
                        last_flush = Instant::now();
                    }
                }
                check(store.flush(), &mut report);
                report
            })?;
        Ok((StoreSink { handle }, StoreSender(tx)))
    }

    /// Waits for the thread to drain and flush.
    pub fn join(self) -> StoreSinkReport {
        self.handle.join().unwrap_or_else(|_| {
            error!("state store thread panicked");
            StoreSinkReport {
                errors: 1,
                ..StoreSinkReport::default()
            }
        })
    }
}
