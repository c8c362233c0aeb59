//! Running live: the sources on a tokio runtime, the dataflow on timely workers, the
//! operations server, and a shutdown that loses nothing.
//!
//! Each live source runs as a task and feeds one ingest operator on its owner worker (the
//! source's index modulo the workers); parsing spreads the envelopes over every worker from
//! there. Shutting down goes from the edge inwards: the sources stop, the clock sends every
//! source's final watermark (recorded too), the dataflow drains everything before it, the
//! journal and the store flush, and the recording is closed whole. A replay of that recording
//! then writes exactly the journal this run wrote.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::dataflow::operators::Concatenate;
use timely::dataflow::{ProbeHandle, StreamVec};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, Secret, SinkKind};
use crate::dataflow::channel::ChannelFeed;
use crate::dataflow::graph::{Wiring, WorkerSinks, build};
use crate::dataflow::ingest::source_operator;
use crate::dataflow::run::{Cluster, RunError, open_store};
use crate::dataflow::stats::{RunStats, StatsReport};
use crate::model::{Envelope, FeedId, Ingest, Source, TokenRef};
use crate::net::http::Api;
use crate::record::Codec;
use crate::serve::{ServeState, Server};
use crate::sinks::journal::{JournalWriter, WriteProbe};
use crate::sinks::store::{StoreSink, StoreSinkReport};
use crate::sources::hermes::ReceiptHook;
use crate::sources::{
    ActivatorSlot, LiveClock, Recorder, SourceRegistry, TrackedTokens, birdeye, chain, dexscreener,
    hermes, now_ms,
};

/// The sources this build can always run live (the chain observer only with `chain.rpc_urls`
/// and `chain.contract_address` set); the mesh joins them when `mesh.enabled`.
pub const LIVE_SOURCES: [Source; 4] = [
    Source::Dexscreener,
    Source::Birdeye,
    Source::Hermes,
    Source::Chain,
];

/// The sources a live run with `config` can run.
pub fn live_sources(config: &Config) -> Vec<Source> {
    let mut sources = LIVE_SOURCES.to_vec();
    if config.mesh.enabled {
        sources.push(Source::Mesh);
    }
    sources
}

/// How long stopping sources may take before they are abandoned.
const SOURCE_STOP_GRACE: Duration = Duration::from_secs(10);

/// How a live run is set up.
pub struct LiveOptions {
    /// Where the journal and the store go.
    pub out_dir: PathBuf,
    /// Record every envelope and watermark here.
    pub record: Option<PathBuf>,
    /// Timely worker threads.
    pub workers: usize,
    /// Serve `/health`, `/status`, `/metrics` on `serve.listen`.
    pub serve: bool,
    /// Cancel to stop the run (tests, benchmarks); SIGINT and SIGTERM also stop it when
    /// `signals` is set.
    pub stop: CancellationToken,
    /// Stop on SIGINT and SIGTERM.
    pub signals: bool,
    /// Called once everything runs, with the server's address.
    pub on_ready: Option<Box<dyn FnOnce(Ready) + Send>>,
    /// Told when each Hermes stream event arrived (the live benchmark).
    pub hermes_receipts: Option<ReceiptHook>,
    /// Told when each journal time reached the file (the live benchmark).
    pub journal_probe: Option<WriteProbe>,
    /// Notified to force a push of every feed whose source is newer than its target; SIGUSR1
    /// notifies it too when `signals` is set.
    pub force_push: Arc<tokio::sync::Notify>,
}

impl LiveOptions {
    /// Options writing under `out_dir`, with one worker, serving, stopping on signals.
    pub fn new(out_dir: PathBuf) -> Self {
        LiveOptions {
            out_dir,
            record: None,
            workers: 1,
            serve: true,
            stop: CancellationToken::new(),
            signals: true,
            on_ready: None,
            hermes_receipts: None,
            journal_probe: None,
            force_push: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

/// What a running live pipeline tells whoever started it.
#[derive(Clone, Debug)]
pub struct Ready {
    /// Where the operations server listens.
    pub serve_addr: Option<SocketAddr>,
    /// The sources running live.
    pub sources: Vec<Source>,
}

/// What a live run did.
#[derive(Debug)]
pub struct LiveReport {
    /// Dataflow counters.
    pub stats: StatsReport,
    /// How long it ran.
    pub elapsed: Duration,
    /// The journal.
    pub journal: PathBuf,
    /// The recording, if one was made.
    pub recording: Option<PathBuf>,
    /// What the store thread did.
    pub store: Option<StoreSinkReport>,
    /// The sources that ran.
    pub sources: Vec<Source>,
}

/// One live source's way into the dataflow, before a worker takes it.
struct Outlet {
    source: Source,
    rx: Mutex<Option<Receiver<Ingest>>>,
    activator: ActivatorSlot,
}

/// The Hermes feeds to stream: the configured ones, or else the debounce's and the assets'.
pub fn hermes_feeds(config: &Config) -> Result<Vec<FeedId>, String> {
    let mut ids: Vec<FeedId> = Vec::new();
    let mut add = |text: &str, what: &str| -> Result<(), String> {
        let id: FeedId = text.parse().map_err(|e| format!("{what}: {e}"))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
        Ok(())
    };
    if !config.hermes.feeds.is_empty() {
        for feed in &config.hermes.feeds {
            add(feed, "hermes.feeds")?;
        }
    } else {
        for feed in &config.debounce.feeds {
            add(&feed.id, "debounce.feeds")?;
        }
        for asset in &config.assets {
            if let Some(feed) = &asset.pyth_feed {
                add(feed, "assets.pyth_feed")?;
            }
        }
    }
    Ok(ids)
}

/// Every configured asset token (always priced).
fn asset_tokens(config: &Config) -> Vec<TokenRef> {
    config
        .assets
        .iter()
        .flat_map(|a| a.tokens.iter())
        .filter_map(|t| t.split_once(':'))
        .filter_map(|(chain, address)| TokenRef::parse(chain, address).ok())
        .collect()
}

/// Runs the live pipeline until stopped.
pub fn run(config: &Config, wiring: Wiring, options: LiveOptions) -> Result<LiveReport, RunError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| RunError::Setup(format!("{what}: {e}"));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let hermes_ids = hermes_feeds(config).map_err(RunError::Setup)?;
    let runnable = live_sources(config);
    let sources: Vec<Source> = Source::ALL
        .into_iter()
        .filter(|s| wiring.pipeline.has_source(*s))
        .filter(|s| {
            let live = runnable.contains(s);
            if !live && *s == Source::Mesh {
                warn!("mesh.enabled is false; the run goes without the mesh");
            } else if !live {
                warn!(source = %s, "this build has no live {s} source; the run goes without it");
            }
            let chain_set =
                !config.chain.rpc_urls.is_empty() && !config.chain.contract_address.is_empty();
            if live && *s == Source::Chain && !chain_set {
                warn!("no chain.rpc_urls or chain.contract_address: the run goes without the chain observer");
                return false;
            }
            live
        })
        .collect();

    std::fs::create_dir_all(&options.out_dir)
        .map_err(|e| setup(&format!("creating {}", options.out_dir.display()), &e))?;
    let journal_path = options.out_dir.join("journal.jsonl");
    let mut journal = JournalWriter::create(&journal_path)
        .map_err(|e| setup(&format!("creating {}", journal_path.display()), &e))?;
    if let Some(probe) = options.journal_probe.clone() {
        journal = journal.with_probe(probe);
    }
    // The store opens whatever the pipeline writes: the HTTP layer's stale cache and the mesh's
    // state live there too, so a pipeline without the store sink still gets the stale fallback.
    let (cache_store, report) = open_store(&options.out_dir)?;
    if let crate::store::OpenReport::Rebuilt { reason } = &report {
        warn!(reason = %reason, "state store was corrupt and has been rebuilt");
    }
    let (store, store_thread, store_sender) = if wiring.pipeline.writes(SinkKind::Store) {
        let (thread, sender) = StoreSink::start(cache_store.clone(), wiring.store_flush)
            .map_err(|e| setup("starting the store thread", &e))?;
        (Some(cache_store.clone()), Some(thread), Some(sender))
    } else {
        (None, None, None)
    };
    let recorder = match &options.record {
        Some(path) => Some(Arc::new(
            Recorder::create(path, Codec::Zstd, sources.clone())
                .map_err(|e| setup(&format!("creating the recording {}", path.display()), &e))?,
        )),
        None => None,
    };
    let clock = LiveClock::new(
        config.dataflow.tick_ms,
        Duration::from_millis(config.sources.watermark_interval_ms),
        recorder.clone(),
    );
    let mut emitters = Vec::new();
    let mut mesh_emitter = None;
    let mut outlets = Vec::new();
    for &source in &sources {
        let (emitter, rx, activator) = clock.attach(source);
        if source == Source::Mesh {
            mesh_emitter = Some(emitter);
        } else {
            emitters.push(emitter);
        }
        outlets.push(Outlet {
            source,
            rx: Mutex::new(Some(rx)),
            activator,
        });
    }
    let outlets = Arc::new(outlets);
    let mut apis = Vec::new();
    for emitter in &emitters {
        let spec = match emitter.source() {
            Source::Dexscreener => dexscreener::provider(&config.dexscreener),
            Source::Birdeye => birdeye::provider(&config.birdeye),
            Source::Hermes => hermes::provider(&config.hermes),
            // Not an HTTP API of the shared layer: the chain has its own RPC client.
            Source::Mesh | Source::Chain => continue,
        };
        let source = emitter.source();
        apis.push(
            Api::new(spec, &config.http, Some(cache_store.clone()))
                .map_err(|e| setup(source.name(), &e))?,
        );
    }
    let listen: SocketAddr = config
        .serve
        .listen
        .parse()
        .map_err(|e| setup("serve.listen", &e))?;
    let trending = Arc::clone(&wiring.trending);

    // The dataflow.
    let stats = Arc::new(RunStats::default());
    let (chain_tap, chain_inputs) = if wiring.pipeline.writes(SinkKind::Chain) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let keeper_hermes = match apis.iter().find(|a| a.provider() == "hermes") {
        Some(api) => Some(api.clone()),
        None if chain_inputs.is_some() => Some(
            Api::new(
                hermes::provider(&config.hermes),
                &config.http,
                Some(cache_store.clone()),
            )
            .map_err(|e| setup("hermes (keeper update data)", &e))?,
        ),
        None => None,
    };
    let sinks = Arc::new(Mutex::new(Some(WorkerSinks {
        journal: Some(journal),
        store: store_sender,
        chain: chain_tap,
    })));
    let started = Instant::now();
    let cluster = Cluster {
        workers: options.workers.max(1),
        ..Cluster::default()
    };
    let guards = {
        let wiring = Wiring {
            flush_journal: true,
            ..wiring
        };
        let stats = Arc::clone(&stats);
        let outlets = Arc::clone(&outlets);
        let tick_ms = config.dataflow.tick_ms;
        timely::execute(cluster.timely_config()?, move |worker| {
            let (index, peers) = (worker.index(), worker.peers());
            let done = ProbeHandle::new();
            let worker_sinks = if index == 0 {
                lock(&sinks).take().unwrap_or_default()
            } else {
                WorkerSinks::default()
            };
            worker.dataflow::<u64, _, _>(|scope| {
                let mut streams: Vec<StreamVec<'_, u64, Envelope>> = Vec::new();
                for outlet in outlets.iter() {
                    let owner = outlet.source.index() % peers == index;
                    let feed = if owner {
                        lock(&outlet.rx).take().map(ChannelFeed::new)
                    } else {
                        None
                    };
                    let (stream, handles) =
                        source_operator(scope, outlet.source, feed, tick_ms, done.clone());
                    if owner {
                        let _ = outlet.activator.set(handles.sync_activator);
                    }
                    streams.push(stream);
                }
                let envelopes = scope.concatenate(streams);
                build(
                    envelopes,
                    true,
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
        .map_err(RunError::Dataflow)?
    };

    // The sources, the clock, and the server.
    if options.serve {
        // Before any source runs: metrics recorded before the recorder exists are lost.
        let _ = crate::serve::metrics_handle();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sluice-io")
        .enable_all()
        .build()
        .map_err(|e| setup("starting the I/O runtime", &e))?;
    let health = SourceRegistry::default();
    let tracked = TrackedTokens::with_fixed(asset_tokens(config));
    // A panic's message is printed (log, /health): it must not carry a key.
    let secrets: Arc<[Secret]> = Arc::from(vec![
        config.dexscreener.api_key.clone(),
        config.birdeye.api_key.clone(),
        config.hermes.api_key.clone(),
    ]);
    let dataflow_result = runtime.block_on(async {
        let sources_stop = CancellationToken::new();
        let server_stop = CancellationToken::new();
        let started_ms = now_ms();
        let mut tasks = Vec::new();
        // The keeper's outcomes enter the pipeline as the chain source's envelopes.
        let chain_emitter = emitters
            .iter()
            .find(|e| e.source() == Source::Chain)
            .cloned();
        for emitter in emitters {
            let stop = sources_stop.clone();
            let source = emitter.source();
            let api = apis.iter().find(|a| a.provider() == source.name()).cloned();
            match (source, api) {
                (Source::Dexscreener, Some(api)) => {
                    health.register(source, config.dexscreener.stale_after_secs, started_ms);
                    let task = dexscreener::DexscreenerSource::new(
                        config.dexscreener.clone(),
                        api,
                        emitter,
                        health.clone(),
                        tracked.clone(),
                    );
                    tasks.push(spawn_source(source, &health, &secrets, task.run(stop)));
                }
                (Source::Birdeye, Some(api)) => {
                    health.register(source, config.birdeye.stale_after_secs, started_ms);
                    let task = birdeye::BirdeyeSource::new(
                        config.birdeye.clone(),
                        api,
                        emitter,
                        health.clone(),
                        tracked.clone(),
                    );
                    tasks.push(spawn_source(source, &health, &secrets, task.run(stop)));
                }
                (Source::Hermes, Some(api)) => {
                    health.register(source, config.hermes.stale_after_secs, started_ms);
                    let mut task = hermes::HermesSource::new(
                        config.hermes.clone(),
                        hermes_ids.clone(),
                        api,
                        emitter,
                        health.clone(),
                    );
                    if let Some(hook) = options.hermes_receipts.clone() {
                        task = task.with_receipts(hook);
                    }
                    tasks.push(spawn_source(source, &health, &secrets, task.run(stop)));
                }
                (Source::Chain, _) => {
                    let poll = Duration::from_millis(config.chain.poll_interval_ms);
                    // Stale after three missed rounds (at least a minute).
                    let stale_after = (config.chain.poll_interval_ms * 3 / 1000).max(60);
                    health.register(source, stale_after, started_ms);
                    let contract = crate::config::parse_address(&config.chain.contract_address)
                        .unwrap_or_default();
                    match crate::chain::ChainClient::connect(&config.chain.rpc_urls).await {
                        Ok(client) => {
                            let task = chain::ChainSource::new(
                                client,
                                contract,
                                hermes_ids.clone(),
                                poll,
                                emitter,
                                health.clone(),
                            );
                            tasks.push(spawn_source(source, &health, &secrets, task.run(stop)));
                        }
                        Err(e) => {
                            error!(error = %e, "chain observer: no RPC endpoint; the run goes without it");
                            health.failure(source, started_ms, "no RPC endpoint");
                        }
                    }
                }
                _ => {}
            }
        }
        let keeper = chain_inputs.map(|inputs| {
            tokio::spawn(crate::chain::task::run_keeper(
                config.chain.clone(),
                keeper_hermes.clone(),
                inputs,
                options.out_dir.clone(),
                false,
                chain_emitter.clone(),
                Some(Arc::clone(&options.force_push)),
            ))
        });
        #[cfg(unix)]
        if options.signals {
            let force = Arc::clone(&options.force_push);
            let stop = sources_stop.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let mut usr1 = match signal(SignalKind::user_defined1()) {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, "cannot watch SIGUSR1");
                        return;
                    }
                };
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        got = usr1.recv() => match got {
                            Some(()) => {
                                info!("SIGUSR1: forcing a push");
                                force.notify_one();
                            }
                            None => return,
                        },
                    }
                }
            });
        }
        let mesh = match mesh_emitter {
            Some(emitter) => {
                health.register(
                    Source::Mesh,
                    config
                        .mesh
                        .max_age_secs
                        .max(config.mesh.provider_fetch_interval_secs.saturating_mul(2)),
                    started_ms,
                );
                // The one handle: sled allows a single open per directory.
                crate::mesh::live::start(
                    crate::mesh::live::LiveMesh {
                        config: &config.mesh,
                        birdeye: &config.birdeye,
                        http: &config.http,
                        addresses: config.birdeye.addresses.clone(),
                        tracked: Some(tracked.clone()),
                        out_dir: &options.out_dir,
                    },
                    cache_store.clone(),
                    emitter,
                    health.clone(),
                )
                .await
                .map(Some)
                .map_err(|e| setup("the mesh", &e))
            }
            None => Ok(None),
        };
        let heartbeat = tokio::spawn(Arc::clone(&clock).heartbeat(sources_stop.clone()));
        if let Some(recorder) = recorder.clone() {
            let stop = sources_stop.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = ticks.tick() => recorder.flush(),
                    }
                }
            });
        }
        let server = if options.serve {
            let state = Arc::new(ServeState {
                health: health.clone(),
                providers: apis.clone(),
                store: store.clone(),
                trending,
                status_top: config.serve.status_top,
                started_ms,
                mesh: mesh
                    .as_ref()
                    .ok()
                    .and_then(|m| m.as_ref())
                    .map(|m| Arc::clone(&m.api)),
            });
            Server::start(listen, state, server_stop.clone())
                .await
                .map(Some)
                .map_err(|e| setup(&format!("listening on {listen}"), &e))
        } else {
            Ok(None)
        };
        if let Ok(Some(_)) = &mesh {
            // Now that the server's recorder is installed, every mesh series starts at zero.
            crate::mesh::stats::register_metrics();
        }
        if let (Ok(server), Ok(_)) = (&server, &mesh) {
            info!(sources = ?sources, workers = cluster.workers, "live pipeline running");
            if let Some(on_ready) = options.on_ready {
                on_ready(Ready {
                    serve_addr: server.as_ref().map(|s| s.addr),
                    sources: sources.clone(),
                });
            }
            wait_for_stop(&options.stop, options.signals).await;
        }

        // Shutting down, from the edge inwards (also after a failed start).
        info!("stopping: sources first, then the dataflow drains");
        sources_stop.cancel();
        let mut source_failures = join_sources(tasks, &secrets).await;
        if let Ok(Some(mesh)) = &mesh {
            mesh.stop().await;
        }
        let _ = heartbeat.await;
        clock.close();
        let joined = tokio::task::spawn_blocking(move || guards.join()).await;
        // The workers are gone, and with them the keeper's inputs: it settles and stops.
        if let Some(keeper) = keeper {
            match tokio::time::timeout(SOURCE_STOP_GRACE, keeper).await {
                Err(_) => warn!("the keeper did not stop in time; abandoning it"),
                // A panic must not pass as a clean stop: the run fails with it.
                Ok(Err(join)) if join.is_panic() => {
                    let failure = format!(
                        "the keeper panicked: {}",
                        panic_message(join.into_panic().as_ref(), &secrets)
                    );
                    error!("{failure}");
                    source_failures.push(failure);
                }
                Ok(_) => {}
            }
        }
        server_stop.cancel();
        mesh?;
        let server = server?;
        if let Some(server) = server {
            server.join().await;
        }
        let joined = joined.map_err(|e| RunError::Dataflow(format!("joining the workers: {e}")))?;
        for result in joined {
            result.map_err(|e| RunError::Dataflow(format!("a worker failed: {e}")))?;
        }
        // Everything drained and flushed first: a failed source loses nothing else.
        if !source_failures.is_empty() {
            return Err(RunError::Dataflow(source_failures.join("; ")));
        }
        Ok::<(), RunError>(())
    });
    // The workers are gone, and with them every store sender: the thread drains and flushes.
    let store_report = store_thread.map(StoreSink::join);
    if let Some(recorder) = &recorder
        && let Err(e) = recorder.finish()
    {
        error!(error = %e, "closing the recording failed");
        return Err(setup("closing the recording", &e));
    }
    dataflow_result?;
    let report = LiveReport {
        stats: stats.report(),
        elapsed: started.elapsed(),
        journal: journal_path,
        recording: options.record.clone(),
        store: store_report,
        sources,
    };
    if let Some(failure) = report.stats.failures.first() {
        return Err(RunError::Sink(failure.clone()));
    }
    Ok(report)
}

/// A source task on the runtime. A panic in it is caught here, where the source is known: it
/// is logged at once with the source's name, the source's state says so (`/health` reports
/// it), and the task ends with the panic's message for [`join_sources`].
fn spawn_source<F>(
    source: Source,
    health: &SourceRegistry,
    secrets: &Arc<[Secret]>,
    task: F,
) -> SourceTask
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use futures::FutureExt;
    let health = health.clone();
    let secrets = Arc::clone(secrets);
    let handle = tokio::spawn(async move {
        match std::panic::AssertUnwindSafe(task).catch_unwind().await {
            Ok(()) => Ok(()),
            Err(payload) => {
                let message = panic_message(payload.as_ref(), &secrets);
                error!(source = %source, panic = %message, "the {source} source panicked; it no longer runs");
                health.failure(source, now_ms(), "panicked");
                health.state(source, &format!("failed: panicked: {message}"));
                Err(format!("the {source} source panicked: {message}"))
            }
        }
    });
    SourceTask { source, handle }
}

/// A running source task.
struct SourceTask {
    source: Source,
    handle: tokio::task::JoinHandle<Result<(), String>>,
}

/// Waits for every source task (each up to [`SOURCE_STOP_GRACE`]); returns what went wrong
/// with them: panics (which make the run fail) and aborted tasks.
async fn join_sources(tasks: Vec<SourceTask>, secrets: &[Secret]) -> Vec<String> {
    let mut failures = Vec::new();
    for SourceTask { source, handle } in tasks {
        match tokio::time::timeout(SOURCE_STOP_GRACE, handle).await {
            Err(_) => {
                warn!(source = %source, "the {source} source did not stop in time; abandoning it")
            }
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(failure))) => failures.push(failure),
            Ok(Err(join)) => {
                let failure = if join.is_panic() {
                    format!(
                        "the {source} source panicked: {}",
                        panic_message(join.into_panic().as_ref(), secrets)
                    )
                } else {
                    format!("the {source} source was cancelled")
                };
                error!(source = %source, "{failure}");
                failures.push(failure);
            }
        }
    }
    failures
}

/// The text of a panic's payload (a `&str` or a `String`, as `panic!` makes them), cleaned of
/// `secrets` and URL queries.
fn panic_message(payload: &(dyn std::any::Any + Send), secrets: &[Secret]) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned());
    crate::net::http::redacted(&text, secrets)
}

/// Waits for `stop`, or for SIGINT/SIGTERM when `signals`.
async fn wait_for_stop(stop: &CancellationToken, signals: bool) {
    if !signals {
        stop.cancelled().await;
        return;
    }
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::signal::ctrl_c() => info!("SIGINT"),
        _ = terminate => info!("SIGTERM"),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_source_is_reported_with_its_name_and_fails_the_join() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let health = SourceRegistry::default();
        let secrets: Arc<[Secret]> = Arc::from(vec![Secret::new("planted-key-93f1")]);
        let failures = runtime.block_on(async {
            let tasks = vec![
                spawn_source(Source::Dexscreener, &health, &secrets, async {}),
                spawn_source(Source::Birdeye, &health, &secrets, async {
                    let shares: Vec<u32> = Vec::new();
                    // Indexing past the end: the kind of bug that must not pass silently.
                    let _ = shares[3];
                }),
                spawn_source(Source::Hermes, &health, &secrets, async {
                    panic!("lost with planted-key-93f1 at https://h.example/x?token=planted");
                }),
            ];
            join_sources(tasks, &secrets).await
        });
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(
            failures[0].contains("birdeye source panicked"),
            "{failures:?}"
        );
        assert!(failures[0].contains("index out of bounds"), "{failures:?}");
        assert!(
            failures[1].contains("hermes source panicked: lost with"),
            "{failures:?}"
        );
        let birdeye = &health.snapshot()[&Source::Birdeye];
        assert!(birdeye.state.starts_with("failed"), "{birdeye:?}");
        let hermes = &health.snapshot()[&Source::Hermes];
        for text in [&failures[1], &hermes.state] {
            assert!(!text.contains("planted"), "a secret in {text}");
        }
        assert!(!health.snapshot().contains_key(&Source::Dexscreener));
    }
}
