//! Running the dataflow: timely configuration (threads, processes), sinks, and replay.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use timely::WorkerConfig;
use timely::communication::Config as CommunicationConfig;
use timely::dataflow::operators::Concatenate;
use timely::dataflow::{ProbeHandle, StreamVec};

use super::graph::{Wiring, WorkerSinks, build};
use super::ingest::source_operator;
use super::replay::{ReplayDemux, ReplayOutcome};
use super::stats::{RunStats, StatsReport};
use crate::config::Config;
use crate::model::{Envelope, Source};
use crate::record::{RecordError, RecordingReader};
use crate::sinks::journal::JournalWriter;
use crate::sinks::store::{StoreSink, StoreSinkReport};
use crate::store::{OpenReport, Store, Tree};

/// How many timely workers, in how many processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Worker threads in this process.
    pub workers: usize,
    /// Processes in the cluster.
    pub processes: usize,
    /// This process's index.
    pub process: usize,
    /// `host:port` per process, in process order; `None` means `127.0.0.1:2101+i`.
    pub hostfile: Option<PathBuf>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            workers: 1,
            processes: 1,
            process: 0,
            hostfile: None,
        }
    }
}

impl Cluster {
    /// True for the process that writes the journal and the store (it holds worker 0).
    pub fn is_leader(&self) -> bool {
        self.process == 0
    }

    /// The timely configuration.
    pub fn timely_config(&self) -> Result<timely::Config, RunError> {
        let workers = self.workers.max(1);
        let communication = if self.processes <= 1 {
            if workers == 1 {
                CommunicationConfig::Thread
            } else {
                CommunicationConfig::Process(workers)
            }
        } else {
            if self.process >= self.processes {
                return Err(RunError::Setup(format!(
                    "--process {} is out of range for --processes {}",
                    self.process, self.processes
                )));
            }
            let addresses = match &self.hostfile {
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        RunError::Setup(format!("hostfile {}: {e}", path.display()))
                    })?;
                    let hosts: Vec<String> = text
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_owned)
                        .collect();
                    if hosts.len() < self.processes {
                        return Err(RunError::Setup(format!(
                            "hostfile {} lists {} hosts for {} processes",
                            path.display(),
                            hosts.len(),
                            self.processes
                        )));
                    }
                    hosts
                }
                None => (0..self.processes)
                    .map(|i| format!("127.0.0.1:{}", 2101 + i))
                    .collect(),
            };
            CommunicationConfig::Cluster {
                threads: workers,
                process: self.process,
                addresses,
                report: false,
                zerocopy: false,
            }
        };
        Ok(timely::Config {
            communication,
            worker: WorkerConfig::default(),
        })
    }
}

/// Where a replay reads from.
#[derive(Clone, Debug)]
pub enum RecordingInput {
    /// A file.
    File(PathBuf),
    /// Bytes in memory (the bundled recording).
    Bytes(Bytes),
}

impl RecordingInput {
    fn open(&self, progress: Option<Arc<AtomicU64>>) -> Result<RecordingReader, RecordError> {
        match self {
            RecordingInput::File(path) => match progress {
                Some(counter) => RecordingReader::open_counted(path, counter),
                None => RecordingReader::open(path),
            },
            RecordingInput::Bytes(bytes) => match progress {
                Some(counter) => RecordingReader::from_bytes_counted(bytes.clone(), counter),
                None => RecordingReader::from_bytes(bytes.clone()),
            },
        }
    }

    /// The input's size in bytes, when known.
    pub fn size(&self) -> Option<u64> {
        match self {
            RecordingInput::File(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            RecordingInput::Bytes(bytes) => Some(bytes.len() as u64),
        }
    }
}

/// What a replay writes and how it runs.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// The recording.
    pub input: RecordingInput,
    /// Output directory: `journal.jsonl` and `store/`.
    pub out_dir: PathBuf,
    /// Workers and processes.
    pub cluster: Cluster,
    /// Recording bytes consumed by worker 0, for a progress bar.
    pub progress: Option<Arc<AtomicU64>>,
}

/// What a replay did.
#[derive(Debug)]
pub struct ReplayReport {
    /// Counters from this process.
    pub stats: StatsReport,
    /// Wall time of the dataflow.
    pub elapsed: Duration,
    /// Where the recording was cut short, if it was.
    pub truncated_at: Option<u64>,
    /// What opening the store found (leader process only).
    pub store_open: Option<OpenReport>,
    /// What the store thread did (leader process only).
    pub store: Option<StoreSinkReport>,
    /// The journal path (leader process only).
    pub journal: Option<PathBuf>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad options or environment.
    #[error("{0}")]
    Setup(String),
    /// The recording is not readable.
    #[error(transparent)]
    Recording(#[from] RecordError),
    /// timely failed.
    #[error("dataflow: {0}")]
    Dataflow(String),
    /// A sink could not write everything.
    #[error("{0}")]
    Sink(String),
}

/// Per-process sinks handed to worker 0 of the leader process.
struct LeaderSinks {
    journal: Mutex<Option<JournalWriter>>,
    store: Mutex<Option<crate::sinks::store::StoreSender>>,
    chain: Mutex<Option<super::chain::ChainTap>>,
}

/// Replays a recording through the dataflow and writes the journal and store under `out_dir`.
pub fn replay(
    config: &Config,
    wiring: Wiring,
    options: ReplayOptions,
) -> Result<ReplayReport, RunError> {
    // Fail on an unreadable recording before starting workers.
    let probe_reader = options.input.open(None)?;
    let recorded: Vec<Source> = probe_reader.meta().sources.clone();
    drop(probe_reader);

    let leader = options.cluster.is_leader();
    let mut store_open = None;
    let mut store_thread = None;
    let sinks = Arc::new(LeaderSinks {
        journal: Mutex::new(None),
        store: Mutex::new(None),
        chain: Mutex::new(None),
    });
    let mut keeper_thread = None;
    let journal_path = options.out_dir.join("journal.jsonl");
    if leader {
        std::fs::create_dir_all(&options.out_dir)
            .map_err(|e| RunError::Setup(format!("creating {}: {e}", options.out_dir.display())))?;
        let writer = JournalWriter::create(&journal_path)
            .map_err(|e| RunError::Setup(format!("creating {}: {e}", journal_path.display())))?;
        *lock(&sinks.journal) = Some(writer);
        if wiring.pipeline.writes(crate::config::SinkKind::Store) {
            let (store, report) = open_store(&options.out_dir)?;
            if let OpenReport::Rebuilt { reason } = &report {
                tracing::warn!(reason = %reason, "state store was corrupt and has been rebuilt");
            }
            // A replay starts from nothing: state left by an earlier run would otherwise still
            // claim that tokens are trending, or show another run's portfolio.
            for tree in [Tree::Trending, Tree::Risk] {
                store.clear(tree).map_err(|e| {
                    RunError::Setup(format!("clearing the {} tree: {e}", tree.name()))
                })?;
            }
            store_open = Some(report);
            let (thread, sender) = StoreSink::start(store, wiring.store_flush)
                .map_err(|e| RunError::Setup(format!("starting the store thread: {e}")))?;
            *lock(&sinks.store) = Some(sender);
            store_thread = Some(thread);
        }
        if wiring.pipeline.writes(crate::config::SinkKind::Chain) {
            // History is never pushed: the keeper only plans (tx_planned), whatever the mode.
            let (tap, inputs) = tokio::sync::mpsc::unbounded_channel();
            *lock(&sinks.chain) = Some(tap);
            let chain = config.chain.clone();
            let out_dir = options.out_dir.clone();
            let thread = std::thread::Builder::new()
                .name("sluice-keeper".into())
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(crate::chain::task::run_keeper(
                            chain, None, inputs, out_dir, true, None, None,
                        )),
                        Err(e) => tracing::error!(error = %e, "keeper: no runtime"),
                    }
                })
                .map_err(|e| RunError::Setup(format!("starting the keeper thread: {e}")))?;
            keeper_thread = Some(thread);
        }
    }

    let stats = Arc::new(RunStats::default());
    let outcome = Arc::new(Mutex::new(ReplayOutcome::default()));
    let wanted: [bool; Source::ALL.len()] = std::array::from_fn(|i| {
        let source = Source::ALL[i];
        wiring.pipeline.has_source(source) && (recorded.is_empty() || recorded.contains(&source))
    });
    let frames_per_step = config.replay.frames_per_step;
    let lookahead_ms = config.replay.lookahead_ms;
    let tick_ms = config.dataflow.tick_ms;
    let started = Instant::now();
    {
        let stats = Arc::clone(&stats);
        let outcome = Arc::clone(&outcome);
        let sinks = Arc::clone(&sinks);
        let input = options.input.clone();
        let progress = options.progress.clone();
        let wiring = wiring.clone();
        let guards = timely::execute(options.cluster.timely_config()?, move |worker| {
            let (index, peers) = (worker.index(), worker.peers());
            // Every worker must build the same graph, so a worker that cannot read still
            // builds it, with feeds that are closed from the start.
            let reader = match input.open(if index == 0 { progress.clone() } else { None }) {
                Ok(reader) => Some(reader),
                Err(e) => {
                    lock(&outcome).error.get_or_insert(e);
                    None
                }
            };
            let done = ProbeHandle::new();
            let worker_sinks = if index == 0 {
                WorkerSinks {
                    journal: lock(&sinks.journal).take(),
                    store: lock(&sinks.store).take(),
                    chain: lock(&sinks.chain).take(),
                }
            } else {
                WorkerSinks::default()
            };
            let demux = ReplayDemux::new(
                reader,
                wanted,
                index,
                peers,
                frames_per_step,
                lookahead_ms,
                done.clone(),
                Arc::clone(&outcome),
            );
            worker.dataflow::<u64, _, _>(|scope| {
                let mut streams: Vec<StreamVec<'_, u64, Envelope>> = Vec::new();
                for source in Source::ALL.into_iter().filter(|s| wanted[s.index()]) {
                    let feed = ReplayDemux::feed(&demux, source);
                    let (stream, handles) =
                        source_operator(scope, source, Some(feed), tick_ms, done.clone());
                    demux.borrow_mut().set_activator(source, handles.activator);
                    streams.push(stream);
                }
                let envelopes = scope.concatenate(streams);
                build(
                    envelopes,
                    false,
                    &wiring,
                    worker_sinks,
                    Arc::clone(&stats),
                    &done,
                );
            });
            while worker.has_dataflows() {
                worker.step_or_park(Some(Duration::from_millis(100)));
            }
        })
        .map_err(RunError::Dataflow)?;
        for result in guards.join() {
            result.map_err(|e| RunError::Dataflow(format!("a worker failed: {e}")))?;
        }
    }
    let elapsed = started.elapsed();
    // Dropping the workers dropped every store sender: the thread drains and flushes.
    drop(sinks);
    let store = store_thread.map(StoreSink::join);
    // The workers are gone, and with them the keeper's inputs: it finishes planning.
    if let Some(thread) = keeper_thread
        && thread.join().is_err()
    {
        tracing::error!("the keeper thread panicked");
    }

    let report = ReplayReport {
        stats: stats.report(),
        elapsed,
        truncated_at: None,
        store_open,
        store,
        journal: leader.then_some(journal_path),
    };
    let error = lock(&outcome).error.take();
    let report = match error {
        None => report,
        Some(RecordError::Truncated { offset }) => ReplayReport {
            truncated_at: Some(offset),
            ..report
        },
        Some(other) => return Err(RunError::Recording(other)),
    };
    if let Some(failure) = report.stats.failures.first() {
        return Err(RunError::Sink(failure.clone()));
    }
    Ok(report)
}

/// Opens the state store under `out_dir`.
pub fn open_store(out_dir: &Path) -> Result<(Store, OpenReport), RunError> {
    Store::open(&out_dir.join("store")).map_err(|e| RunError::Setup(e.to_string()))
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
