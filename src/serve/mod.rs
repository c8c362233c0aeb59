//! The operations server of a live run: `/health`, `/status`, `/metrics` and
//! `/api/trending/{chain}/{token}`, on loopback by default.
//!
//! Everything it shows comes from three places: the sources' health registry, the HTTP
//! layer's provider status (breakers, rates, cache ages), and the state store the dataflow
//! writes (trending, latest prices, the portfolio). None of them holds a secret; the metrics
//! carry only source, endpoint and outcome labels.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub mod mesh;

use crate::model::TokenRef;
use crate::net::http::{Api, ProviderStatus};
use crate::ops::trending::TrendingParams;
use crate::sources::{SourceRegistry, now_ms};
use crate::store::{Store, Tree};

/// What the server reads.
pub struct ServeState {
    /// The live sources' health.
    pub health: SourceRegistry,
    /// The HTTP providers.
    pub providers: Vec<Api>,
    /// The state the dataflow writes, if the run keeps one.
    pub store: Option<Store>,
    /// Trending settings, for the metrics of a token now.
    pub trending: Arc<TrendingParams>,
    /// Trending tokens listed on `/status`.
    pub status_top: usize,
    /// When the run started (ms since the epoch).
    pub started_ms: u64,
    /// The mesh API, when the run has a mesh node.
    pub mesh: Option<Arc<mesh::MeshApi>>,
}

/// Latency buckets (s) for the request histograms: loopback to slow upstreams.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The process's Prometheus recorder, installed on first use (a process has one recorder).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS);
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => {
                    crate::net::http::describe_metrics();
                    crate::mesh::stats::describe_metrics();
                    describe_metrics();
                    Some(handle)
                }
                Err(e) => {
                    warn!(error = %e, "metrics recorder not installed; /metrics stays empty");
                    None
                }
            }
        })
        .clone()
}

fn describe_metrics() {
    metrics::describe_counter!(
        "price_updates_total",
        "Price updates handed to the dataflow, by source"
    );
    metrics::describe_gauge!(
        "sse_connection_status",
        "1 while the source's SSE stream is connected, else 0"
    );
    metrics::describe_gauge!(
        "last_update_age_seconds",
        "Seconds since the source last received good data"
    );
    metrics::describe_counter!(
        "hermes_repeated_updates_total",
        "Hermes feed updates dropped because the stream or the poller had already delivered them"
    );
}

/// A running server.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `state` on `listen` until `stop`.
    pub async fn start(
        listen: SocketAddr,
        state: Arc<ServeState>,
        stop: CancellationToken,
    ) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let handle = metrics_handle();
        let upkeep = handle.clone();
        let upkeep_stop = stop.clone();
        tokio::spawn(async move {
            let Some(handle) = upkeep else { return };
            let mut ticks = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = upkeep_stop.cancelled() => return,
                    _ = ticks.tick() => handle.run_upkeep(),
                }
            }
        });
        let mesh_routes = state.mesh.clone().map(mesh::router);
        let mut app = Router::new()
            .route("/health", get(health))
            .route("/status", get(status))
            .route("/metrics", get(render_metrics))
            .route("/api/trending/{chain}/{token}", get(trending))
            .with_state(AppState {
                serve: state,
                metrics: handle,
            });
        if let Some(routes) = mesh_routes {
            app = app.merge(routes);
        }
        info!(%addr, "serving /health, /status, /metrics and /api/trending");
        let task = tokio::spawn(async move {
            let shutdown = async move { stop.cancelled().await };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                warn!(error = %e, "the operations server stopped");
            }
        });
        Ok(Server { addr, task })
    }

    /// Waits for the server to finish after its stop token fired.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

#[derive(Clone)]
struct AppState {
    serve: Arc<ServeState>,
    metrics: Option<PrometheusHandle>,
}

/// Why the run is unhealthy now; empty when healthy.
pub fn health_reasons(state: &ServeState, now_ms: u64) -> Vec<String> {
    let mut reasons = Vec::new();
    for (source, health) in state.health.snapshot() {
        if health.state.starts_with("idle") {
            continue;
        }
        // A source task that died (a panic) never comes back in this run: say so at once
        // rather than only once it has gone stale.
        if health.state.starts_with("failed") {
            reasons.push(format!("source {source} {}", health.state));
            continue;
        }
        if health.is_stale(now_ms) {
            reasons.push(format!(
                "source {source} is stale: no good data for {:.0} s (limit {} s)",
                health.age_secs(now_ms),
                health.stale_after_secs
            ));
        }
    }
    for provider in &state.providers {
        for endpoint in provider.status().endpoints {
            // Half-open is still unhealthy: the endpoint failed and has not yet answered a probe.
            if endpoint.breaker != "closed" {
                reasons.push(format!(
                    "circuit breaker {}: {}",
                    endpoint.breaker, endpoint.endpoint
                ));
            }
        }
    }
    reasons
}

async fn health(State(app): State<AppState>) -> Response {
    let reasons = health_reasons(&app.serve, now_ms());
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "reasons": reasons})),
        )
            .into_response()
    }
}

#[derive(Serialize)]
struct SourceView {
    state: String,
    last_success_ms: Option<u64>,
    age_secs: f64,
    stale: bool,
    stale_after_secs: u64,
    last_error: Option<String>,
    last_error_ms: Option<u64>,
    envelopes: u64,
}

async fn status(State(app): State<AppState>) -> Response {
    let state = &app.serve;
    let now = now_ms();
    let sources: serde_json::Map<String, serde_json::Value> = state
        .health
        .snapshot()
        .into_iter()
        .map(|(source, h)| {
            let view = SourceView {
                age_secs: h.age_secs(now),
                stale: h.is_stale(now),
                stale_after_secs: h.stale_after_secs,
                last_error: h.last_error.as_ref().map(|(_, what)| what.clone()),
                last_error_ms: h.last_error.as_ref().map(|(at, _)| *at),
                state: h.state,
                last_success_ms: h.last_success_ms,
                envelopes: h.envelopes,
            };
            (
                source.name().to_owned(),
                serde_json::to_value(view).unwrap_or_default(),
            )
        })
        .collect();
    let providers: Vec<ProviderStatus> = state.providers.iter().map(Api::status).collect();
    let mut body = json!({
        "now_ms": now,
        "uptime_secs": now.saturating_sub(state.started_ms) / 1000,
        "healthy": health_reasons(state, now).is_empty(),
        "sources": sources,
        "providers": providers,
    });
    if let Some(store) = &state.store {
        body["trending_top"] = trending_top(store, state, now);
        body["prices"] = latest_prices(store);
        body["risk"] = match crate::store::risk::load_portfolio(store) {
            Ok(Some(portfolio)) => json!({
                "tier": portfolio.tier,
                "equity": portfolio.equity,
                "peak": portfolio.peak,
                "cash": portfolio.cash,
                "positions": portfolio.positions.len(),
                "updated_ms": portfolio.updated_ms,
            }),
            Ok(None) => serde_json::Value::Null,
            Err(e) => json!({"error": e.to_string()}),
        };
    }
    Json(body).into_response()
}

fn trending_top(store: &Store, state: &ServeState, now: u64) -> serde_json::Value {
    match crate::store::trending::trending_top(store, state.status_top, now, &state.trending) {
        Ok(top) => top
            .into_iter()
            .map(|(token, metrics)| json!({"token": token.to_string(), "metrics": metrics}))
            .collect(),
        Err(e) => json!({"error": e.to_string()}),
    }
}

fn latest_prices(store: &Store) -> serde_json::Value {
    match store.scan(Tree::Prices, b"") {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|(_, value)| serde_json::from_slice::<serde_json::Value>(&value).ok())
            .collect(),
        Err(e) => json!({"error": e.to_string()}),
    }
}

async fn render_metrics(State(app): State<AppState>) -> Response {
    for (source, h) in app.serve.health.snapshot() {
        metrics::gauge!("last_update_age_seconds", "source" => source.name())
            .set(h.age_secs(now_ms()));
    }
    match &app.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n",
        )
            .into_response(),
    }
}

async fn trending(
    State(app): State<AppState>,
    Path((chain, address)): Path<(String, String)>,
) -> Response {
    let token = match TokenRef::parse(&chain, &address) {
        Ok(token) => token,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response();
        }
    };
    let Some(store) = &app.serve.store else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "this run keeps no state store"})),
        )
            .into_response();
    };
    match crate::store::trending::trending_metrics(store, &token, now_ms(), &app.serve.trending) {
        Ok(Some(metrics)) => Json(metrics).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("{token} has never been seen trending")})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Decimal, Source};

    #[test]
    fn a_failed_source_is_a_health_reason_at_once() {
        let health = SourceRegistry::default();
        health.register(Source::Dexscreener, 30, now_ms());
        health.register(Source::Birdeye, 30, now_ms());
        let state = ServeState {
            health: health.clone(),
            providers: Vec::new(),
            store: None,
            trending: Arc::new(TrendingParams {
                min_trending_rank: 100,
                velocity_window_ms: 60_000,
                high_momentum: Decimal::new(5, 0),
                rearm: Decimal::new(1, 0),
                max_history: 10,
            }),
            status_top: 5,
            started_ms: now_ms(),
            mesh: None,
        };
        assert!(health_reasons(&state, now_ms()).is_empty());
        health.state(Source::Birdeye, "failed: panicked: boom");
        let reasons = health_reasons(&state, now_ms());
        assert_eq!(reasons, ["source birdeye failed: panicked: boom"]);
    }
}
