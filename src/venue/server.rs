//! The venue's HTTP side: routes under `/dexscreener`, `/birdeye` and `/hermes` with the real
//! paths beneath, the control routes under `/_venue`, and the order in which a request meets
//! faults, auth and rate limits.
//!
//! Every API request goes through [`gate`] in this order: counted; `latency` waited out; maybe
//! held unanswered (`timeout_rate`); auth checked (401); rate limit checked (429); maybe
//! answered with an injected error (`error_rate`). Then the recorded payload is served,
//! maybe malformed (`malformed_rate`) or dribbled out (`slow_body`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::faults::{Die, EndpointFaults, FaultDice, FaultSpec};
use super::filter::{self, Filtered, HermesRequest};
use super::limits::RateLimits;
use super::query;
use super::sse;
use super::stats::{Count, StatsBook};
use super::timeline::{Clock, Timeline, latest};
use crate::model::Endpoint;

/// Most addresses DEX Screener takes in one `/tokens/v1` request.
pub const DEXSCREENER_MAX_ADDRESSES: usize = 30;
/// Most addresses Birdeye takes in one `multi_price` request.
pub const BIRDEYE_MAX_ADDRESSES: usize = 100;

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

const BIRDEYE_400: &str = r#"{"success":false,"message":"Invalid request parameters or payload."}"#;
const BIRDEYE_401: &str = r#"{"success":false,"message":"Unauthorized. Authentication required."}"#;
const BIRDEYE_429: &str = r#"{"success":false,"message":"Too many requests"}"#;

/// Everything the handlers share.
pub(crate) struct Shared {
    pub(crate) timeline: Timeline,
    pub(crate) clock: Clock,
    pub(crate) speed: f64,
    pub(crate) faults: Mutex<Arc<FaultSpec>>,
    pub(crate) dice: FaultDice,
    pub(crate) limits: RateLimits,
    pub(crate) stats: StatsBook,
    pub(crate) birdeye_api_key: Option<String>,
    pub(crate) hermes_api_key: Option<String>,
    /// When set, DEX Screener requests need `X-API-KEY` (see `Venue::require_dexscreener_key`).
    pub(crate) dexscreener_api_key: Mutex<Option<String>>,
    pub(crate) keepalive: Duration,
    /// Cancelled at shutdown: held requests, slow bodies and streams end early.
    pub(crate) shutdown: CancellationToken,
}

impl Shared {
    /// The faults in force at `endpoint` now.
    pub(crate) fn faults_for(&self, endpoint: Endpoint) -> EndpointFaults {
        let spec = Arc::clone(&self.faults.lock().unwrap_or_else(PoisonError::into_inner));
        spec.for_endpoint(endpoint)
    }

    pub(crate) fn set_faults(&self, spec: FaultSpec) {
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(spec);
    }

    pub(crate) fn current_faults(&self) -> FaultSpec {
        FaultSpec::clone(&self.faults.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Waits `duration`, or less if the venue shuts down; false when it did.
    pub(crate) async fn wait(&self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.shutdown.cancelled() => false,
        }
    }
}

/// The venue's routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/dexscreener/token-boosts/top/v1", get(dexscreener_boosts))
        .route(
            "/dexscreener/tokens/v1/{chain}/{addresses}",
            get(dexscreener_tokens),
        )
        .route(
            "/birdeye/defi/multi_price",
            get(birdeye_multi_price).post(birdeye_multi_price),
        )
        .route("/birdeye/defi/price", get(birdeye_price))
        .route("/hermes/v2/updates/price/stream", get(hermes_stream))
        .route("/hermes/v2/updates/price/latest", get(hermes_latest))
        .route("/_venue/stats", get(venue_stats))
        .route("/_venue/faults", get(venue_faults).post(venue_set_faults))
        .with_state(shared)
}

/// A response with a content type.
fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Counts the response's status and hands it on.
fn counted(shared: &Shared, endpoint: Endpoint, response: Response) -> Response {
    shared
        .stats
        .count(endpoint, Count::Status(response.status().as_u16()));
    response
}

/// An error in the provider's own style.
fn provider_error(endpoint: Endpoint, status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    match endpoint.source() {
        crate::model::Source::Birdeye => {
            let message = match status.as_u16() {
                400 => "Invalid request parameters or payload.",
                401 => "Unauthorized. Authentication required.",
                403 => "Access Denied. You don't have permission to access this resource.",
                422 => "Invalid data. Please check the provided data and try again.",
                429 => "Too many requests",
                _ => reason,
            };
            // Built by hand: Birdeye writes `success` first, and `json!` would sort the keys.
            let message = serde_json::Value::from(message);
            let body = format!(r#"{{"success":false,"message":{message}}}"#);
            reply(status, JSON, body)
        }
        crate::model::Source::Dexscreener => {
            let body = serde_json::json!({ "error": reason }).to_string();
            reply(status, JSON, body)
        }
        _ => reply(status, TEXT, reason.to_owned()),
    }
}

/// 429 as each provider sends it (no `Retry-After`: none is documented).
fn rate_limited(endpoint: Endpoint) -> Response {
    match endpoint.source() {
        crate::model::Source::Birdeye => reply(StatusCode::TOO_MANY_REQUESTS, JSON, BIRDEYE_429),
        crate::model::Source::Dexscreener => reply(
            StatusCode::TOO_MANY_REQUESTS,
            JSON,
            r#"{"error":"rate limited"}"#,
        ),
        _ => reply(StatusCode::TOO_MANY_REQUESTS, TEXT, "Too Many Requests"),
    }
}

/// What a request has come through: the faults in force for the rest of it.
///
/// `authorized` is the endpoint's credential check (true where none is needed). `Err` is the
/// response already decided (timeout, 401, 429, injected error).
async fn gate(
    shared: &Shared,
    endpoint: Endpoint,
    authorized: bool,
) -> Result<EndpointFaults, Response> {
    shared.stats.count(endpoint, Count::Request);
    let faults = shared.faults_for(endpoint);
    if !faults.latency.is_zero() && !shared.wait(faults.latency).await {
        return Err(provider_error(endpoint, StatusCode::SERVICE_UNAVAILABLE));
    }
    if shared
        .dice
        .roll(endpoint, Die::Timeout, faults.timeout_rate)
    {
        // Held so long that the client's own timeout fires first; 504 if it waits it out.
        shared.stats.count(endpoint, Count::Held);
        shared.wait(faults.hold).await;
        return Err(provider_error(endpoint, StatusCode::GATEWAY_TIMEOUT));
    }
    if !authorized {
        return Err(match endpoint.source() {
            crate::model::Source::Birdeye => reply(StatusCode::UNAUTHORIZED, JSON, BIRDEYE_401),
            crate::model::Source::Dexscreener => reply(
                StatusCode::UNAUTHORIZED,
                JSON,
                r#"{"error":"Unauthorized"}"#,
            ),
            _ => reply(StatusCode::UNAUTHORIZED, TEXT, "Unauthorized"),
        });
    }
    if !shared.limits.admit(endpoint) {
        return Err(rate_limited(endpoint));
    }
    if shared.dice.roll(endpoint, Die::Error, faults.error_rate) {
        let status =
            StatusCode::from_u16(faults.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = provider_error(endpoint, status);
        if let Some(after) = faults.retry_after {
            // Retry-After counts whole seconds: round up so the client never comes back early.
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        return Err(response);
    }
    Ok(faults)
}

/// The bytes a malformed response carries instead of the real body: half of it (never valid
/// JSON: a cut object or array lacks its closing bracket), or an HTML error page.
pub(crate) fn malformed(shared: &Shared, endpoint: Endpoint, body: &[u8]) -> Bytes {
    let truncate = shared.dice.roll(endpoint, Die::MalformedKind, 0.5);
    if truncate && body.len() >= 2 {
        Bytes::copy_from_slice(body.get(..body.len() / 2).unwrap_or_default())
    } else {
        Bytes::from_static(
            b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
        )
    }
}

/// Serves a 200 body, with the body faults in force.
fn success(
    shared: &Arc<Shared>,
    endpoint: Endpoint,
    faults: &EndpointFaults,
    content_type: &'static str,
    body: Bytes,
) -> Response {
    let body = if shared
        .dice
        .roll(endpoint, Die::Malformed, faults.malformed_rate)
    {
        shared.stats.count(endpoint, Count::Malformed);
        malformed(shared, endpoint, &body)
    } else {
        body
    };
    match faults.slow_body {
        Some(spread) => reply(
            StatusCode::OK,
            content_type,
            slow_body(Arc::clone(shared), body, spread),
        ),
        None => reply(StatusCode::OK, content_type, body),
    }
}

/// The body in up to 16 chunks, one every `spread / chunks`, the last at `spread`.
fn slow_body(shared: Arc<Shared>, body: Bytes, spread: Duration) -> Body {
    let chunks = body.len().clamp(1, 16);
    let chunk_len = body.len().div_ceil(chunks).max(1);
    let pause = spread / chunks as u32;
    let stream = futures::stream::unfold((body, shared), move |(mut rest, shared)| async move {
        if rest.is_empty() || !shared.wait(pause).await {
            return None;
        }
        let chunk = rest.split_to(chunk_len.min(rest.len()));
        Some((Ok::<Bytes, std::io::Error>(chunk), (rest, shared)))
    });
    Body::from_stream(stream)
}

async fn index(State(shared): State<Arc<Shared>>) -> Response {
    let timeline = &shared.timeline;
    let text = format!(
        "sluice venue: a recording played back as the real APIs\n\
         speed: {}x, recording {} .. {} (ms), now {}\n\
         /dexscreener/token-boosts/top/v1\n\
         /dexscreener/tokens/v1/{{chain}}/{{addresses}}\n\
         /birdeye/defi/multi_price?list_address=a,b (GET or POST)\n\
         /birdeye/defi/price?address=a\n\
         /hermes/v2/updates/price/stream?ids[]=...\n\
         /hermes/v2/updates/price/latest?ids[]=...\n\
         /_venue/stats (GET), /_venue/faults (GET, POST a spec)\n",
        shared.speed,
        timeline.first_ms().unwrap_or(0),
        timeline.last_ms().unwrap_or(0),
        shared.clock.now_ms(),
    );
    reply(StatusCode::OK, TEXT, text)
}

fn dexscreener_authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let required = shared
        .dexscreener_api_key
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    match required.as_deref() {
        None => true,
        Some(key) => headers
            .get("x-api-key")
            .is_some_and(|given| given.as_bytes() == key.as_bytes()),
    }
}

async fn dexscreener_boosts(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let endpoint = Endpoint::DexscreenerBoosts;
    let authorized = dexscreener_authorized(&shared, &headers);
    let response = match gate(&shared, endpoint, authorized).await {
        Err(response) => response,
        Ok(faults) => {
            let body = latest(&shared.timeline.boosts, shared.clock.now_ms())
                .map_or_else(|| Bytes::from_static(b"[]"), |e| e.raw.clone());
            success(&shared, endpoint, &faults, JSON, body)
        }
    };
    counted(&shared, endpoint, response)
}

async fn dexscreener_tokens(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((chain, addresses)): Path<(String, String)>,
) -> Response {
    let endpoint = Endpoint::DexscreenerTokens;
    let authorized = dexscreener_authorized(&shared, &headers);
    let response = match gate(&shared, endpoint, authorized).await {
        Err(response) => response,
        Ok(faults) => {
            let addresses = filter::address_list(&addresses);
            if addresses.len() > DEXSCREENER_MAX_ADDRESSES {
                let body = serde_json::json!({
                    "error": format!("at most {DEXSCREENER_MAX_ADDRESSES} addresses per request"),
                })
                .to_string();
                reply(StatusCode::BAD_REQUEST, JSON, body)
            } else {
                let recorded = shared
                    .timeline
                    .tokens
                    .get(&chain)
                    .and_then(|entries| latest(entries, shared.clock.now_ms()));
                let body = match recorded {
                    None => Bytes::from_static(b"[]"),
                    Some(entry) => match filter::dex_tokens(&entry.raw, &addresses) {
                        Some(cut) => Bytes::from(cut),
                        None => entry.raw.clone(),
                    },
                };
                success(&shared, endpoint, &faults, JSON, body)
            }
        }
    };
    counted(&shared, endpoint, response)
}

fn birdeye_authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    match &shared.birdeye_api_key {
        None => true,
        Some(key) => headers
            .get("x-api-key")
            .is_some_and(|given| given.as_bytes() == key.as_bytes()),
    }
}

fn birdeye_chain(headers: &HeaderMap) -> String {
    headers
        .get("x-chain")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or("solana")
        .to_owned()
}

/// `list_address` of a `multi_price` request: the query for GET, the JSON body for POST.
fn birdeye_list(method: &Method, query: &[(String, String)], body: &[u8]) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct PostBody {
        list_address: String,
    }
    let list = if method == Method::POST {
        filter::address_list(&serde_json::from_slice::<PostBody>(body).ok()?.list_address)
    } else {
        filter::address_list(query::first(query, "list_address")?)
    };
    (!list.is_empty() && list.len() <= BIRDEYE_MAX_ADDRESSES).then_some(list)
}

async fn birdeye_multi_price(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
    body: Bytes,
) -> Response {
    let endpoint = Endpoint::BirdeyeMultiPrice;
    let authorized = birdeye_authorized(&shared, &headers);
    let response = match gate(&shared, endpoint, authorized).await {
        Err(response) => response,
        Ok(faults) => {
            let query = query::pairs(raw_query.as_deref().unwrap_or(""));
            match birdeye_list(&method, &query, &body) {
                None => reply(StatusCode::BAD_REQUEST, JSON, BIRDEYE_400),
                Some(addresses) => {
                    let recorded = shared
                        .timeline
                        .multi_price
                        .get(&birdeye_chain(&headers))
                        .and_then(|entries| latest(entries, shared.clock.now_ms()));
                    let body = match recorded {
                        Some(entry) => match filter::birdeye_multi(&entry.raw, &addresses) {
                            Some(cut) => Bytes::from(cut),
                            None => entry.raw.clone(),
                        },
                        None => {
                            // Nothing recorded yet: every address unknown.
                            let data: serde_json::Map<String, serde_json::Value> = addresses
                                .into_iter()
                                .map(|a| (a, serde_json::Value::Null))
                                .collect();
                            let body = serde_json::json!({"success": true, "data": data});
                            Bytes::from(body.to_string())
                        }
                    };
                    success(&shared, endpoint, &faults, JSON, body)
                }
            }
        }
    };
    counted(&shared, endpoint, response)
}

async fn birdeye_price(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    let endpoint = Endpoint::BirdeyePrice;
    let authorized = birdeye_authorized(&shared, &headers);
    let response = match gate(&shared, endpoint, authorized).await {
        Err(response) => response,
        Ok(faults) => {
            let query = query::pairs(raw_query.as_deref().unwrap_or(""));
            match query::first(&query, "address").map(str::trim) {
                None | Some("") => reply(StatusCode::BAD_REQUEST, JSON, BIRDEYE_400),
                Some(address) => {
                    let body = birdeye_price_body(&shared, &birdeye_chain(&headers), address);
                    success(&shared, endpoint, &faults, JSON, body)
                }
            }
        }
    };
    counted(&shared, endpoint, response)
}

/// The newer of: the latest recorded `/defi/price` body for the address, and its entry in the
/// latest recorded `multi_price` body. `data` is `null` when neither has it.
fn birdeye_price_body(shared: &Shared, chain: &str, address: &str) -> Bytes {
    let now = shared.clock.now_ms();
    let timeline = &shared.timeline;
    let single = timeline
        .price
        .iter()
        .find(|(context, _)| {
            context
                .split_once('/')
                .is_some_and(|(c, a)| c == chain && filter::same_address(address, a))
        })
        .and_then(|(_, entries)| latest(entries, now));
    let multi = timeline
        .multi_price
        .get(chain)
        .and_then(|entries| latest(entries, now))
        .and_then(|entry| {
            filter::birdeye_price_in_multi(&entry.raw, address).map(|price| (entry.t_ms, price))
        });
    match (single, multi) {
        (Some(single), Some((t_ms, price))) if t_ms > single.t_ms => price_body(&price),
        (Some(single), _) => single.raw.clone(),
        (None, Some((_, price))) => price_body(&price),
        (None, None) => Bytes::from_static(br#"{"data":null,"success":true}"#),
    }
}

fn price_body(price: &str) -> Bytes {
    Bytes::from(format!(r#"{{"data":{price},"success":true}}"#))
}

fn hermes_authorized(shared: &Shared, headers: &HeaderMap, query: &[(String, String)]) -> bool {
    let Some(key) = &shared.hermes_api_key else {
        return true;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token.trim() == key);
    // Hermes also takes the token as `?ACCESS_TOKEN=`.
    bearer || query::first(query, "ACCESS_TOKEN") == Some(key.as_str())
}

/// A request Hermes refuses: the status and its plain-text message.
struct Refusal(StatusCode, String);

impl Refusal {
    fn into_response(self) -> Response {
        reply(self.0, TEXT, self.1)
    }
}

/// A Hermes request's options; `Err` is the 400 or 404 Hermes would answer.
fn hermes_request(shared: &Shared, query: &[(String, String)]) -> Result<HermesRequest, Refusal> {
    let flag = |key: &str, default: bool| match query::first(query, key) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!("Invalid value for {key}: {other}"),
        )),
    };
    let parsed = flag("parsed", true)?;
    let ignore_invalid = flag("ignore_invalid_price_ids", false)?;
    let base64 = match query::first(query, "encoding") {
        None | Some("hex") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                format!("Invalid encoding: {other}"),
            ));
        }
    };
    let mut ids: Vec<String> = Vec::new();
    for (_, id) in query.iter().filter(|(k, _)| k == "ids[]" || k == "ids") {
        let id = filter::normalize_feed_id(id);
        if !id.is_empty() && !ids.contains(&id) {
            ids.push(id);
        }
    }
    let (known, unknown): (Vec<String>, Vec<String>) = ids
        .into_iter()
        .partition(|id| shared.timeline.hermes_ids.contains(id));
    // As Hermes: any unknown id refuses the request, unless told to ignore them.
    if !unknown.is_empty() && (!ignore_invalid || known.is_empty()) {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("Price ids not found: {}", unknown.join(", ")),
        ));
    }
    Ok(HermesRequest {
        ids: known,
        base64,
        parsed,
    })
}

async fn hermes_latest(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    let endpoint = Endpoint::HermesLatest;
    let query = query::pairs(raw_query.as_deref().unwrap_or(""));
    let authorized = hermes_authorized(&shared, &headers, &query);
    let response = match gate(&shared, endpoint, authorized).await {
        Err(response) => response,
        Ok(faults) => match hermes_request(&shared, &query) {
            Err(refusal) => refusal.into_response(),
            Ok(request) => {
                let updates = &shared.timeline.hermes_updates;
                let now = shared.clock.now_ms();
                let upto = updates.partition_point(|e| e.t_ms <= now);
                let newest_first = updates
                    .get(..upto)
                    .unwrap_or_default()
                    .iter()
                    .rev()
                    .map(|e| &e.raw[..]);
                match filter::hermes_latest(newest_first, &request) {
                    None => reply(StatusCode::NOT_FOUND, TEXT, "Update data not found"),
                    Some(outcome) => {
                        let body = match outcome {
                            Filtered::Rendered(cut) => Bytes::from(cut),
                            // `hermes_latest` answers `Recorded` for the newest update as is.
                            Filtered::Recorded | Filtered::Nothing => upto
                                .checked_sub(1)
                                .and_then(|i| updates.get(i))
                                .map_or_else(Bytes::new, |e| e.raw.clone()),
                        };
                        success(&shared, endpoint, &faults, JSON, body)
                    }
                }
            }
        },
    };
    counted(&shared, endpoint, response)
}

async fn hermes_stream(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    let endpoint = Endpoint::HermesStream;
    let query = query::pairs(raw_query.as_deref().unwrap_or(""));
    let authorized = hermes_authorized(&shared, &headers, &query);
    let response = match gate(&shared, endpoint, authorized).await {
        Err(response) => response,
        Ok(faults) => match hermes_request(&shared, &query) {
            Err(refusal) => refusal.into_response(),
            Ok(request) => {
                let mut response =
                    Response::new(sse::stream(Arc::clone(&shared), request, &faults));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                response
            }
        },
    };
    counted(&shared, endpoint, response)
}

async fn venue_stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.stats.snapshot(shared.clock.now_ms());
    match serde_json::to_string_pretty(&stats) {
        Ok(body) => reply(StatusCode::OK, JSON, body),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, e.to_string()),
    }
}

async fn venue_faults(State(shared): State<Arc<Shared>>) -> Response {
    reply(
        StatusCode::OK,
        TEXT,
        format!("{}\n", shared.current_faults()),
    )
}

async fn venue_set_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    match text.parse::<FaultSpec>() {
        Ok(spec) => {
            let canonical = spec.to_string();
            tracing::info!(faults = %canonical, "venue faults changed");
            shared.set_faults(spec);
            reply(StatusCode::OK, TEXT, format!("{canonical}\n"))
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}
