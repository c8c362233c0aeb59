//! The mesh in a live run: a node whose accepted prices become `mesh_price` envelopes on the
//! live clock (recorded and replayed like any other source) and enter the price book the API
//! serves, plus the Birdeye provider when `mesh.provider` is set.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{BirdeyeConfig, HttpConfig, MeshConfig};
use crate::model::{Endpoint, Source};
use crate::serve::mesh::MeshApi;
use crate::sources::{Emitter, SourceRegistry, TrackedTokens, now_ms};
use crate::store::Store;

use super::book::PriceBook;
use super::provider::{self, ProviderSettings, ProviderState};
use super::{MeshError, MeshNode, NodeSettings};

/// A running mesh: the node, its API, and the provider task if any.
pub struct MeshRuntime {
    /// The node.
    pub node: Arc<MeshNode>,
    /// What the operations server serves of it.
    pub api: Arc<MeshApi>,
    provider: Option<(CancellationToken, JoinHandle<()>)>,
    gauges: CancellationToken,
}

/// How often the book's gauges are refreshed without a new price (so they fall when prices
/// stop coming).
const GAUGES_EVERY: Duration = Duration::from_secs(1);

impl MeshRuntime {
    /// Stops the provider, then the node.
    pub async fn stop(&self) {
        self.gauges.cancel();
        if let Some((stop, _)) = &self.provider {
            stop.cancel();
        }
        self.node.stop().await;
    }
}

/// What the mesh of a live run needs besides its own settings.
pub struct LiveMesh<'a> {
    /// `mesh.*`.
    pub config: &'a MeshConfig,
    /// Birdeye, for a provider.
    pub birdeye: &'a BirdeyeConfig,
    /// The HTTP layer, for a provider.
    pub http: &'a HttpConfig,
    /// Addresses a provider always prices.
    pub addresses: Vec<String>,
    /// The run's tracked tokens, which a provider prices too.
    pub tracked: Option<TrackedTokens>,
    /// The run's output directory (the identity file's default home).
    pub out_dir: &'a Path,
}

/// Starts the node (and the provider) of a live run.
pub async fn start(
    mesh: LiveMesh<'_>,
    store: Store,
    emitter: Emitter,
    health: SourceRegistry,
) -> Result<MeshRuntime, MeshError> {
    let config = mesh.config;
    let settings = NodeSettings::from_config(config, mesh.out_dir)?;
    health.state(Source::Mesh, "running");
    let interval_ms =
        i64::try_from(config.provider_fetch_interval_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    // Origins heard from within two fetch windows count as active providers.
    let active_within_ms = interval_ms.saturating_mul(2);
    let book = Arc::new(Mutex::new(PriceBook::default()));
    let sink = Arc::clone(&book);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let node = MeshNode::start(
        settings,
        store,
        Box::new(move |price| {
            if emitter
                .envelope(Endpoint::MeshPrice, "", price.wire.clone())
                .is_some()
            {
                health.success(Source::Mesh, now_ms(), 1);
            }
            let now = now_ms() as i64;
            let mut book = sink.lock().unwrap_or_else(|p| p.into_inner());
            book.accept(price, now);
            book.export_gauges(now, active_within_ms);
        }),
        config.provider.then_some(control_tx),
    )
    .await?;
    let node = Arc::new(node);
    let gauges = CancellationToken::new();
    tokio::spawn(refresh_gauges(
        Arc::clone(&book),
        active_within_ms,
        gauges.clone(),
    ));
    let (provider_state, provider_task) = if config.provider {
        let state = Arc::new(ProviderState::default());
        let stop = CancellationToken::new();
        let settings = ProviderSettings {
            birdeye: mesh.birdeye.clone(),
            http: mesh.http.clone(),
            addresses: mesh.addresses,
            tracked: mesh.tracked,
            interval_ms,
            coordination_ms: i64::try_from(config.coordination_window_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            enabled: true,
        };
        let task = tokio::spawn(provider::run(
            Arc::clone(&node),
            settings,
            Arc::clone(&state),
            control_rx,
            stop.clone(),
        ));
        (Some(state), Some((stop, task)))
    } else {
        (None, None)
    };
    let api = Arc::new(MeshApi {
        node: Arc::clone(&node),
        book,
        provider: provider_state,
        admin_token: config.admin_token.clone(),
        active_within_ms,
    });
    Ok(MeshRuntime {
        node,
        api,
        provider: provider_task,
        gauges,
    })
}

/// Refreshes the book's gauges every [`GAUGES_EVERY`] until `stop`.
async fn refresh_gauges(
    book: Arc<Mutex<PriceBook>>,
    active_within_ms: i64,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(GAUGES_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {
                book.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .export_gauges(now_ms() as i64, active_within_ms);
            }
        }
    }
}
