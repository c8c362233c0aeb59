//! The seed's mesh API, every answer in its `{"success", "data"}` envelope:
//! `POST /api/mesh/provider/enable` and `/disable` (admin bearer token), `GET
//! /api/mesh/provider/status`, `GET /api/mesh/network/status` and `GET /api/mesh/prices`.
//! The Birdeye key an enable call carries is kept as a secret: never echoed, never logged.
//! Admin calls check the bearer token before they read their body (a caller without it learns
//! nothing, not even whether its body would parse), and a body that does not parse gets a
//! fixed answer: a parser's message could quote the key.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Secret;
use crate::mesh::MeshNode;
use crate::mesh::book::{Freshness, PriceBook};
use crate::mesh::provider::ProviderState;
use crate::sources::now_ms;

/// What the mesh routes read.
pub struct MeshApi {
    /// The node.
    pub node: Arc<MeshNode>,
    /// Its latest prices.
    pub book: Arc<Mutex<PriceBook>>,
    /// Its provider, if it runs one.
    pub provider: Option<Arc<ProviderState>>,
    /// The admin bearer token; empty disables enable/disable.
    pub admin_token: Secret,
    /// Origins heard from within this long count as active providers (ms).
    pub active_within_ms: i64,
}

/// The mesh routes.
pub fn router(api: Arc<MeshApi>) -> Router {
    Router::new()
        .route("/api/mesh/provider/enable", post(enable))
        .route("/api/mesh/provider/disable", post(disable))
        .route("/api/mesh/provider/status", get(provider_status))
        .route("/api/mesh/network/status", get(network_status))
        .route("/api/mesh/prices", get(prices))
        .with_state(api)
}

fn ok(data: Value) -> Response {
    (StatusCode::OK, Json(json!({"success": true, "data": data}))).into_response()
}

fn fail(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"success": false, "error": error}))).into_response()
}

/// Checks the admin bearer token; the refusal when it does not match.
fn authorize(api: &MeshApi, headers: &HeaderMap) -> Result<(), Refusal> {
    if api.admin_token.is_empty() {
        return Err(Refusal(StatusCode::FORBIDDEN, "the admin API is disabled"));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(given.as_bytes(), api.admin_token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "a valid admin bearer token is required",
        ))
    }
}

/// Why an admin call is refused.
struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        fail(self.0, self.1)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize, Default)]
struct EnableBody {
    #[serde(default)]
    api_key: Option<Secret>,
}

/// Largest enable body read (a JSON object holding an API key).
const MAX_ENABLE_BODY: usize = 4096;

async fn enable(State(api): State<Arc<MeshApi>>, headers: HeaderMap, body: Body) -> Response {
    if let Err(denied) = authorize(&api, &headers) {
        return denied.into_response();
    }
    // Read only now, for a caller holding the token.
    let Ok(body) = axum::body::to_bytes(body, MAX_ENABLE_BODY).await else {
        return fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body could not be read (at most 4096 bytes)",
        );
    };
    // An empty body enables with the key already held.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        EnableBody::default()
    } else {
        match serde_json::from_slice::<EnableBody>(&body) {
            Ok(body) => body,
            // Never the parser's message: it can quote what it read.
            Err(_) => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "the body must be a JSON object {\"api_key\": \"<string>\"}",
                );
            }
        }
    };
    let Some(provider) = &api.provider else {
        return fail(StatusCode::CONFLICT, "this node runs no provider");
    };
    let key = body.api_key.filter(|k| !k.is_empty());
    provider.enable(key);
    ok(json!(provider.status()))
}

async fn disable(State(api): State<Arc<MeshApi>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&api, &headers) {
        return denied.into_response();
    }
    let Some(provider) = &api.provider else {
        return fail(StatusCode::CONFLICT, "this node runs no provider");
    };
    provider.disable();
    ok(json!(provider.status()))
}

async fn provider_status(State(api): State<Arc<MeshApi>>) -> Response {
    match &api.provider {
        Some(provider) => ok(json!(provider.status())),
        None => ok(json!({"enabled": false, "has_api_key": false})),
    }
}

async fn network_status(State(api): State<Arc<MeshApi>>) -> Response {
    let now = now_ms() as i64;
    let status = match api.node.status().await {
        Ok(status) => status,
        Err(e) => return fail(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let (providers, last_update) = {
        let book = api.book.lock().unwrap_or_else(|p| p.into_inner());
        // The same numbers the node keeps in its gauges.
        book.export_gauges(now, api.active_within_ms);
        (
            book.origins(now - api.active_within_ms),
            book.last_update_ms(),
        )
    };
    let freshness = last_update.map(|t| Freshness::of_age(now - t));
    ok(json!({
        "peer_id": status.peer_id,
        "active_providers": providers,
        "connected_peers": status.peers.len(),
        "peers": status.peers.iter().map(|(p, score)| json!({"peer_id": p, "score": score})).collect::<Vec<_>>(),
        "data_freshness": freshness,
        "last_update_ms": last_update,
        "seen_messages": status.seen,
    }))
}

#[derive(Deserialize)]
struct PricesQuery {
    asset: Option<String>,
}

async fn prices(State(api): State<Arc<MeshApi>>, Query(query): Query<PricesQuery>) -> Response {
    let prices = api
        .book
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .prices(query.asset.as_deref());
    if prices.is_empty() {
        metrics::counter!("mesh_cache_misses_total").increment(1);
    } else {
        metrics::counter!("mesh_cache_hits_total").increment(1);
    }
    ok(json!(prices))
}
