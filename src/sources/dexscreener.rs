//! DEX Screener: the boost list (the trending snapshot) and the tracked tokens' pair prices.
//!
//! Two loops share the source. The boost loop polls `/token-boosts/top/v1` from the 60/min
//! bucket at high priority and hands every fresh list over as a snapshot; it also tells the
//! price pollers which tokens rank highly enough to be priced. The pairs loop prices those and
//! the configured tokens through `/tokens/v1/{chain}/{≤30 addresses}` from the 300/min bucket.
//!
//! A response served from the stale cache is never handed over: an old boost list is no new
//! snapshot, and an old pair price would look current. It still keeps the tracked tokens as
//! they were, and `/status` shows the source as serving stale. A malformed body (not JSON) is
//! handed over all the same, for the dataflow to journal as invalid input, but counts as a
//! failure of the source, not a success.
//!
//! Priorities within DEX Screener's buckets: the boost list (the trending snapshot everything
//! else follows) is `High`; pair prices are routine (`Medium`).

use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::tracked::TrackedTokens;
use super::{Emitter, SourceRegistry, every, now_ms};
use crate::config::DexscreenerConfig;
use crate::model::parse::{ParseContext, parse_envelope};
use crate::model::{AssetMap, Endpoint, Envelope, Record, Source, TokenRef};
use crate::net::http::{Api, Call, Fetched, Priority, ProviderSpec, RateLimit};

/// DEX Screener allows at most this many addresses per `/tokens/v1` call.
pub const MAX_ADDRESSES: usize = 30;

const BOOSTS: &str = "dexscreener_boosts";
const TOKENS: &str = "dexscreener_tokens";

/// DEX Screener as a provider of the HTTP layer.
pub fn provider(config: &DexscreenerConfig) -> ProviderSpec {
    let mut headers = Vec::new();
    if !config.api_key.is_empty() {
        headers.push(("X-API-KEY".to_owned(), config.api_key.clone()));
    }
    ProviderSpec {
        name: "dexscreener",
        base_url: config.base_url.clone(),
        buckets: vec![
            ("boosts", RateLimit::per_minute(config.boosts_per_minute)),
            ("pairs", RateLimit::per_minute(config.pairs_per_minute)),
        ],
        headers,
        // DEX Screener sends no Retry-After; clients commonly wait a few seconds.
        default_pause_on_429: Duration::from_secs(5),
    }
}

/// The DEX Screener source.
#[derive(Clone)]
pub struct DexscreenerSource {
    config: DexscreenerConfig,
    api: Api,
    emitter: Emitter,
    health: SourceRegistry,
    tracked: TrackedTokens,
}

impl DexscreenerSource {
    /// A source pricing `tracked` (and adding the boost list's top tokens to it).
    pub fn new(
        config: DexscreenerConfig,
        api: Api,
        emitter: Emitter,
        health: SourceRegistry,
        tracked: TrackedTokens,
    ) -> Self {
        DexscreenerSource {
            config,
            api,
            emitter,
            health,
            tracked,
        }
    }

    /// Polls until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        self.health.state(Source::Dexscreener, "polling");
        let boosts = {
            let this = self.clone();
            let stop = stop.clone();
            let interval = Duration::from_secs(self.config.polling_interval_secs);
            every(interval, stop, move || {
                let this = this.clone();
                async move { this.poll_boosts().await }
            })
        };
        let pairs = {
            let this = self.clone();
            let interval = Duration::from_secs(self.config.pairs_interval_secs);
            every(interval, stop, move || {
                let this = this.clone();
                async move { this.poll_pairs().await }
            })
        };
        tokio::join!(boosts, pairs);
    }

    async fn poll_boosts(&self) {
        let call = Call::new(BOOSTS, "boosts", "/token-boosts/top/v1")
            .priority(Priority::High)
            .json(true);
        match self.api.get(call).await {
            Ok(fetched) => {
                self.track(&fetched.body);
                if self.hand_over(Endpoint::DexscreenerBoosts, "", &fetched) {
                    self.health.state(Source::Dexscreener, "polling");
                }
            }
            Err(e) => self.failed(&e.to_string(), e.category().name()),
        }
    }

    /// Makes the boost list's top tokens the tracked trending ones.
    fn track(&self, body: &Bytes) {
        let assets = AssetMap::default();
        let ctx = ParseContext {
            assets: &assets,
            max_future_skew_ms: i64::MAX,
        };
        let env = Envelope {
            endpoint: Endpoint::DexscreenerBoosts,
            t_ms: now_ms(),
            context: String::new(),
            raw: body.clone(),
            seq: 0,
        };
        let mut records = Vec::new();
        parse_envelope(&env, &ctx, &mut records);
        let mut snapshot = None;
        for record in records {
            if let Record::Boosts(boosts) = record {
                snapshot = Some(boosts);
            }
        }
        // An unreadable list (reported by the dataflow's parser) leaves the tokens as they were.
        if let Some(snapshot) = snapshot {
            let top = self.config.price_top_ranks;
            self.tracked.set_trending(
                snapshot
                    .entries
                    .into_iter()
                    .filter(|e| e.rank <= top)
                    .map(|e| e.token),
            );
        }
    }

    async fn poll_pairs(&self) {
        for (chain, tokens) in self.tracked.by_chain(true) {
            for batch in tokens.chunks(MAX_ADDRESSES) {
                let path = format!("/tokens/v1/{chain}/{}", join_addresses(batch));
                let call = Call::new(TOKENS, "pairs", &path).json(true);
                match self.api.get(call).await {
                    Ok(fetched) => {
                        self.hand_over(Endpoint::DexscreenerTokens, &chain, &fetched);
                    }
                    Err(e) => self.failed(&e.to_string(), e.category().name()),
                }
            }
        }
    }

    /// Hands a fresh response to the dataflow; a stale one is only noted. True if handed over.
    fn hand_over(&self, endpoint: Endpoint, context: &str, fetched: &Fetched) -> bool {
        if let Some(age) = fetched.stale {
            debug!(endpoint = ?endpoint, age_ms = age.as_millis() as u64, "dexscreener: serving stale; not handed over");
            self.health.state(Source::Dexscreener, "stale-cache");
            return false;
        }
        if self
            .emitter
            .envelope(endpoint, context, fetched.body.clone())
            .is_none()
        {
            return true;
        }
        match &fetched.malformed {
            Some(error) => self.failed(&error.to_string(), error.category().name()),
            None => {
                self.health.success(Source::Dexscreener, now_ms(), 1);
                if endpoint == Endpoint::DexscreenerTokens {
                    metrics::counter!("price_updates_total", "source" => Source::Dexscreener.name())
                        .increment(pair_count(&fetched.body));
                }
            }
        }
        true
    }

    fn failed(&self, error: &str, category: &str) {
        warn!(error = %error, "dexscreener: poll failed");
        self.health.failure(Source::Dexscreener, now_ms(), category);
    }
}

/// The pairs in a `/tokens/v1` body (a JSON array of pairs): the price updates it carries.
fn pair_count(body: &[u8]) -> u64 {
    serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(body).map_or(0, |pairs| pairs.len() as u64)
}

fn join_addresses(batch: &[TokenRef]) -> String {
    batch
        .iter()
        .map(TokenRef::request_address)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_counted_from_the_array() {
        assert_eq!(
            pair_count(br#"[{"pairAddress":"a"},{"pairAddress":"b"}]"#),
            2
        );
        assert_eq!(pair_count(b"[]"), 0);
        assert_eq!(pair_count(b"<html>"), 0);
    }
}
