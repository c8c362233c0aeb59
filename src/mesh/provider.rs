//! Provider mode: fetch Birdeye `multi_price` once per window for the whole mesh and publish
//! each price, signed.
//!
//! Providers announce themselves on the control topic. For each fetch window every provider
//! ranks the live providers (itself and those heard from recently) by rendezvous hash of
//! (peer id, window) ([`crate::ops::mesh::rendezvous`]). The first claims the window
//! (`fetching`, repeated while its fetch runs), fetches, publishes and tells the others
//! (`fetched`); the one ranked `r` fetches `r` coordination windows into the window if by then
//! nobody fetched and no claim is live, and after a claim lapses the stand-bys take over in
//! turn ([`crate::ops::mesh::claims`]). So a healthy mesh makes one Birdeye call per window
//! however slow Birdeye answers, and a dead provider is covered within one coordination window
//! (of its last claim). Coordination assumes the providers' clocks agree to well within a
//! coordination window (NTP).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::node::{ControlMessage, MeshNode};
use crate::config::{BirdeyeConfig, HttpConfig, Secret};
use crate::model::parse::ParseContext;
use crate::model::parse::birdeye::parse_multi_price;
use crate::model::{AssetMap, Endpoint, Envelope, Record};
use crate::net::http::{Api, Call};
use crate::ops::mesh::claims::{Coordination, Turn};
use crate::ops::mesh::rendezvous;
use crate::sources::birdeye::{MAX_ADDRESSES, provider as birdeye_provider};
use crate::sources::{TrackedTokens, now_ms};

/// How often a provider announces itself.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(500);

/// How often the coordination loop looks at the clock.
const STEP: Duration = Duration::from_millis(50);

/// A control-topic message. Each carries its send time: message ids are content hashes, so
/// two providers' identical announcements would otherwise be one message.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Control {
    /// "I am a live provider."
    Announce {
        /// Sent at (ms).
        at_ms: i64,
    },
    /// "I am fetching this window": stand-bys wait while this is repeated.
    Fetching {
        /// The window.
        window: i64,
        /// Sent at (ms).
        at_ms: i64,
    },
    /// "I fetched and published this window."
    Fetched {
        /// The window.
        window: i64,
        /// Sent at (ms).
        at_ms: i64,
    },
}

/// How a provider runs.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    /// Birdeye.
    pub birdeye: BirdeyeConfig,
    /// The HTTP layer.
    pub http: HttpConfig,
    /// Addresses always priced on `birdeye.chain`.
    pub addresses: Vec<String>,
    /// The run's tracked tokens (assets, and trending ones when `birdeye.include_trending`),
    /// priced too.
    pub tracked: Option<TrackedTokens>,
    /// The fetch window (ms).
    pub interval_ms: i64,
    /// The stand-by delay per rank (ms).
    pub coordination_ms: i64,
    /// Start enabled (with `birdeye.api_key`).
    pub enabled: bool,
}

/// What a provider did, for the API and tests.
#[derive(Debug, Default)]
pub struct ProviderState {
    enabled: AtomicBool,
    api_key: Mutex<Secret>,
    attempts: AtomicU64,
    successes: AtomicU64,
    broadcasts: AtomicU64,
    last_fetch_ms: AtomicU64,
    providers: Mutex<BTreeMap<String, u64>>,
}

/// A provider's status, as `/api/mesh/provider/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderStatus {
    /// Provider mode on.
    pub enabled: bool,
    /// An API key is set (never the key).
    pub has_api_key: bool,
    /// Fetches attempted.
    pub fetch_attempts: u64,
    /// Fetches that returned prices.
    pub fetch_successes: u64,
    /// Prices published.
    pub broadcasts: u64,
    /// Last fetch (ms since the epoch), 0 if none.
    pub last_fetch_ms: u64,
}

impl ProviderState {
    /// Turns provider mode on, optionally with a new API key.
    pub fn enable(&self, api_key: Option<Secret>) {
        if let Some(key) = api_key {
            *self.api_key.lock().unwrap_or_else(|p| p.into_inner()) = key;
        }
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Turns provider mode off.
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::Relaxed);
    }

    /// The status.
    pub fn status(&self) -> ProviderStatus {
        ProviderStatus {
            enabled: self.enabled.load(Ordering::Relaxed),
            has_api_key: !self.key().is_empty(),
            fetch_attempts: self.attempts.load(Ordering::Relaxed),
            fetch_successes: self.successes.load(Ordering::Relaxed),
            broadcasts: self.broadcasts.load(Ordering::Relaxed),
            last_fetch_ms: self.last_fetch_ms.load(Ordering::Relaxed),
        }
    }

    /// Providers heard from (peer id → last seen ms), this one excluded.
    pub fn providers(&self) -> BTreeMap<String, u64> {
        self.providers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn key(&self) -> Secret {
        self.api_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A fetch this provider runs for the mesh.
struct InFlight {
    window: i64,
    task: JoinHandle<bool>,
    last_claim: Instant,
}

/// Waits for the fetch in flight, if any (never resolves without one).
async fn finished(in_flight: &mut Option<InFlight>) -> bool {
    match in_flight {
        Some(fetch) => (&mut fetch.task).await.unwrap_or(false),
        None => std::future::pending().await,
    }
}

/// Runs provider coordination on `node` until `stop`.
pub async fn run(
    node: Arc<MeshNode>,
    settings: ProviderSettings,
    state: Arc<ProviderState>,
    mut control: mpsc::UnboundedReceiver<ControlMessage>,
    stop: CancellationToken,
) {
    state.enable(Some(settings.birdeye.api_key.clone()));
    if !settings.enabled {
        state.disable();
    }
    let me = node.peer_id().to_string();
    let settings = Arc::new(settings);
    let interval_ms = settings.interval_ms.max(1);
    // Claims are repeated well within the coordination window, so one late message does not
    // let a claim lapse while the fetch still runs.
    let claim_every =
        Duration::from_millis(u64::try_from(settings.coordination_ms / 4).unwrap_or(0))
            .clamp(STEP, ANNOUNCE_EVERY);
    let mut coordination = Coordination::new(settings.coordination_ms);
    let mut api: Option<(Secret, Api)> = None;
    let mut in_flight: Option<InFlight> = None;
    let mut last_announce: Option<Instant> = None;
    let mut ticks = tokio::time::interval(STEP);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(peer = %me, "mesh provider running");
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            message = control.recv() => {
                let Some(message) = message else { break };
                let author = message.author.to_string();
                let now = now_ms() as i64;
                let current = rendezvous::window(now, interval_ms);
                let at_ms = match serde_json::from_slice::<Control>(&message.data) {
                    Ok(Control::Announce { at_ms }) => at_ms,
                    Ok(Control::Fetching { window, at_ms }) => {
                        // Only this window's and its neighbours' claims matter (and are kept);
                        // a claim dated ahead counts as made now, so it cannot hold for longer.
                        if window.abs_diff(current) <= 1 && author != me {
                            coordination.claim(window, &author, at_ms.min(now));
                        }
                        at_ms
                    }
                    Ok(Control::Fetched { window, at_ms }) => {
                        if window.abs_diff(current) <= 1 {
                            coordination.done(window);
                        }
                        at_ms
                    }
                    Err(_) => continue,
                };
                // Seen when it was sealed, not when it arrived: an old announcement that a peer
                // relays again (the seal does not expire) cannot keep a dead provider live.
                let seen = u64::try_from(at_ms).unwrap_or(0).min(now_ms());
                let mut providers = state.providers.lock().unwrap_or_else(|p| p.into_inner());
                let last = providers.entry(author).or_insert(seen);
                *last = (*last).max(seen);
            }
            published = finished(&mut in_flight) => {
                if let Some(fetch) = in_flight.take()
                    && published
                {
                    let _ = node
                        .publish_control(&control_bytes(&Control::Fetched {
                            window: fetch.window,
                            at_ms: now_ms() as i64,
                        }))
                        .await;
                }
            }
            _ = ticks.tick() => {}
        }
        if !state.enabled.load(Ordering::Relaxed) {
            continue;
        }
        let now = now_ms() as i64;
        if last_announce.is_none_or(|t| t.elapsed() >= ANNOUNCE_EVERY) {
            last_announce = Some(Instant::now());
            let _ = node
                .publish_control(&control_bytes(&Control::Announce { at_ms: now }))
                .await;
        }
        if let Some(fetch) = &mut in_flight {
            // One fetch at a time; while it runs, the claim is kept alive.
            if fetch.last_claim.elapsed() >= claim_every {
                fetch.last_claim = Instant::now();
                claim(&node, fetch.window, now).await;
            }
            continue;
        }
        let window = rendezvous::window(now, interval_ms);
        let live = live_providers(&state, &me, now, interval_ms);
        let ids: Vec<&str> = live.iter().map(String::as_str).collect();
        let window_start = window.saturating_mul(interval_ms);
        if coordination.turn(&me, &ids, window, window_start, now) != Turn::Fetch {
            continue;
        }
        coordination.done(window);
        let key = state.key();
        if key.is_empty() {
            // Enabled without a Birdeye key: nothing to fetch with until one is given.
            continue;
        }
        let fresh_api = match &api {
            Some((k, _)) if *k == key => None,
            _ => {
                let mut birdeye = settings.birdeye.clone();
                birdeye.api_key = key.clone();
                match Api::new(birdeye_provider(&birdeye), &settings.http, None) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        warn!(error = %e, "mesh provider: building the Birdeye client failed");
                        continue;
                    }
                }
            }
        };
        if let Some(a) = fresh_api {
            api = Some((key, a));
        }
        let Some((_, client)) = &api else { continue };
        debug!(window, "fetching for the mesh");
        // Claimed before the call, so the stand-bys wait for it however long Birdeye takes.
        claim(&node, window, now).await;
        let task = {
            let (node, client, settings, state) = (
                Arc::clone(&node),
                client.clone(),
                Arc::clone(&settings),
                Arc::clone(&state),
            );
            tokio::spawn(async move { fetch_and_publish(&node, &client, &settings, &state).await })
        };
        in_flight = Some(InFlight {
            window,
            task,
            last_claim: Instant::now(),
        });
    }
    if let Some(fetch) = in_flight.take() {
        fetch.task.abort();
    }
}

/// Tells the other providers this one is fetching `window`.
async fn claim(node: &MeshNode, window: i64, now: i64) {
    let _ = node
        .publish_control(&control_bytes(&Control::Fetching { window, at_ms: now }))
        .await;
}

fn control_bytes(control: &Control) -> Vec<u8> {
    serde_json::to_vec(control).unwrap_or_default()
}

/// Itself plus the providers heard from within two windows.
fn live_providers(state: &ProviderState, me: &str, now: i64, interval_ms: i64) -> Vec<String> {
    let horizon = now.saturating_sub(2 * interval_ms).max(0) as u64;
    let mut live: Vec<String> = state
        .providers()
        .into_iter()
        .filter(|(_, seen)| *seen >= horizon)
        .map(|(peer, _)| peer)
        .collect();
    live.push(me.to_owned());
    live
}

/// One fetch of every address and a publish of every price; true when prices went out.
async fn fetch_and_publish(
    node: &MeshNode,
    api: &Api,
    settings: &ProviderSettings,
    state: &ProviderState,
) -> bool {
    let chain = settings.birdeye.chain.as_str();
    let headers = [("x-chain", chain), ("accept", "application/json")];
    let assets = AssetMap::default();
    let ctx = ParseContext {
        assets: &assets,
        max_future_skew_ms: 5_000,
    };
    let mut published = false;
    let mut addresses = settings.addresses.clone();
    if let Some(tracked) = &settings.tracked
        && let Some(tokens) = tracked
            .by_chain(settings.birdeye.include_trending)
            .get(chain)
    {
        addresses.extend(tokens.iter().map(|t| t.request_address()));
    }
    addresses.sort();
    addresses.dedup();
    for batch in addresses.chunks(MAX_ADDRESSES) {
        state.attempts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("mesh_provider_fetch_attempts_total").increment(1);
        let path = format!("/defi/multi_price?list_address={}", batch.join(","));
        let started = Instant::now();
        let call = Call::new("mesh_provider_multi_price", "account", &path)
            .headers(&headers)
            .use_stale(false);
        let fetched = match api.get(call).await.and_then(|f| f.require_fresh()) {
            Ok(fetched) => fetched,
            Err(e) => {
                warn!(error = %e, "mesh provider: Birdeye fetch failed");
                continue;
            }
        };
        metrics::histogram!("mesh_provider_api_latency_seconds")
            .record(started.elapsed().as_secs_f64());
        let now = now_ms();
        state.successes.fetch_add(1, Ordering::Relaxed);
        state.last_fetch_ms.store(now, Ordering::Relaxed);
        metrics::counter!("mesh_provider_fetch_success_total").increment(1);
        let env = Envelope {
            endpoint: Endpoint::BirdeyeMultiPrice,
            t_ms: now,
            context: chain.to_owned(),
            raw: fetched.body,
            seq: 0,
        };
        let mut records = Vec::new();
        parse_multi_price(&env, &ctx, &mut records);
        for record in records {
            let Record::Price(tick) = record else {
                continue;
            };
            let change = tick.change_24h.map(|c| decimal_text(c.mantissa, c.expo));
            match node
                .publish_price(
                    &tick.instrument.to_string(),
                    tick.price.mantissa,
                    tick.price.expo,
                    tick.publish_ms,
                    change,
                )
                .await
            {
                Ok(()) => {
                    published = true;
                    state.broadcasts.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("mesh_provider_broadcast_success_total").increment(1);
                }
                Err(e) => warn!(error = %e, "mesh provider: publishing failed"),
            }
        }
    }
    published
}

/// `mantissa × 10^expo` as a plain decimal string.
fn decimal_text(mantissa: i64, expo: i32) -> String {
    let negative = mantissa < 0;
    let digits = mantissa.unsigned_abs().to_string();
    let body = if expo >= 0 {
        format!("{digits}{}", "0".repeat(expo as usize))
    } else {
        let places = expo.unsigned_abs() as usize;
        let padded = format!("{digits:0>width$}", width = places + 1);
        let (int, frac) = padded.split_at(padded.len() - places);
        format!("{int}.{frac}")
    };
    if negative { format!("-{body}") } else { body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_plainly() {
        assert_eq!(decimal_text(-231, -2), "-2.31");
        assert_eq!(decimal_text(5, -3), "0.005");
        assert_eq!(decimal_text(12, 2), "1200");
        assert_eq!(
            serde_json::to_string(&Control::Fetched {
                window: 3,
                at_ms: 9
            })
            .unwrap(),
            r#"{"kind":"fetched","window":3,"at_ms":9}"#
        );
    }
}
