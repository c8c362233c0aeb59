//! Birdeye: prices of the tracked tokens on one chain, up to 100 per `/defi/multi_price` call.
//!
//! Birdeye needs an API key (`X-API-KEY`) and names the chain in the `x-chain` header, which
//! is also the envelope's context (the body does not say which chain it is about). Stale
//! responses are never handed over: an old price would look current. A malformed body (not
//! JSON) is handed over for the dataflow to journal as invalid input, and counts as a failure.
//!
//! The account's rate limit comes from `birdeye.requests_per_second` and
//! `birdeye.requests_per_minute` (by default the `birdeye.tier` preset's). The layer's buckets
//! pace requests evenly with no burst, so the two combine into one bucket at the tighter of
//! the two steady rates.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::tracked::TrackedTokens;
use super::{Emitter, SourceRegistry, every, now_ms};
use crate::config::BirdeyeConfig;
use crate::model::{Endpoint, Source, TokenRef};
use crate::net::http::{Api, Call, ProviderSpec, RateLimit};

/// Birdeye allows at most this many addresses per `multi_price` call.
pub const MAX_ADDRESSES: usize = 100;

const MULTI_PRICE: &str = "birdeye_multi_price";

/// Birdeye as a provider of the HTTP layer.
pub fn provider(config: &BirdeyeConfig) -> ProviderSpec {
    ProviderSpec {
        name: "birdeye",
        base_url: config.base_url.clone(),
        buckets: vec![("account", account_limit(config))],
        headers: vec![("X-API-KEY".to_owned(), config.api_key.clone())],
        default_pause_on_429: Duration::from_secs(2),
    }
}

/// The account's bucket: the tighter of its per-second and per-minute limits.
pub fn account_limit(config: &BirdeyeConfig) -> RateLimit {
    let per_second = RateLimit::per_second(config.requests_per_second);
    match config.requests_per_minute {
        Some(rpm) if u64::from(rpm) < u64::from(config.requests_per_second) * 60 => {
            RateLimit::per_minute(rpm)
        }
        _ => per_second,
    }
}

/// The Birdeye source.
pub struct BirdeyeSource {
    config: BirdeyeConfig,
    api: Api,
    emitter: Emitter,
    health: SourceRegistry,
    tracked: TrackedTokens,
}

impl BirdeyeSource {
    /// A source pricing the tokens of `tracked` on the configured chain.
    pub fn new(
        config: BirdeyeConfig,
        api: Api,
        emitter: Emitter,
        health: SourceRegistry,
        tracked: TrackedTokens,
    ) -> Self {
        BirdeyeSource {
            config,
            api,
            emitter,
            health,
            tracked,
        }
    }

    /// Polls until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        if self.config.api_key.is_empty() {
            warn!("birdeye: no API key (BIRDEYE_API_KEY); the source stays idle");
            self.health.state(Source::Birdeye, "idle: no API key");
            stop.cancelled().await;
            return;
        }
        self.health.state(Source::Birdeye, "polling");
        let interval = Duration::from_secs(self.config.poll_interval_secs);
        let this = std::sync::Arc::new(self);
        every(interval, stop, move || {
            let this = std::sync::Arc::clone(&this);
            async move { this.poll().await }
        })
        .await;
    }

    /// The addresses to price on the configured chain, sorted.
    fn addresses(&self) -> Vec<String> {
        let chain = self.config.chain.as_str();
        let tokens = self.tracked.by_chain(self.config.include_trending);
        let mut addresses: Vec<String> = tokens
            .get(chain)
            .map(|tokens| tokens.iter().map(TokenRef::request_address).collect())
            .unwrap_or_default();
        for address in &self.config.addresses {
            match TokenRef::parse(chain, address) {
                Ok(token) => addresses.push(token.request_address()),
                Err(e) => warn!(error = %e, "birdeye: skipping a configured address"),
            }
        }
        addresses.sort();
        addresses.dedup();
        addresses
    }

    async fn poll(&self) {
        let addresses = self.addresses();
        let chain = self.config.chain.as_str();
        let headers = [("x-chain", chain), ("accept", "application/json")];
        for batch in addresses.chunks(MAX_ADDRESSES) {
            let path = format!("/defi/multi_price?list_address={}", batch.join(","));
            let call = Call::new(MULTI_PRICE, "account", &path)
                .headers(&headers)
                .json(true);
            match self.api.get(call).await {
                Ok(fetched) if fetched.is_stale() => {
                    debug!("birdeye: serving stale; not handed over");
                    self.health.state(Source::Birdeye, "stale-cache");
                }
                Ok(fetched) => {
                    let prices = price_count(&fetched.body);
                    let handed = self
                        .emitter
                        .envelope(Endpoint::BirdeyeMultiPrice, chain, fetched.body)
                        .is_some();
                    match fetched.malformed {
                        _ if !handed => {}
                        Some(e) => {
                            warn!(error = %e, "birdeye: malformed response");
                            self.health
                                .failure(Source::Birdeye, now_ms(), e.category().name());
                        }
                        None => {
                            self.health.success(Source::Birdeye, now_ms(), 1);
                            self.health.state(Source::Birdeye, "polling");
                            metrics::counter!("price_updates_total", "source" => Source::Birdeye.name())
                                .increment(prices);
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "birdeye: poll failed");
                    self.health
                        .failure(Source::Birdeye, now_ms(), e.category().name());
                }
            }
        }
    }
}

/// The prices in a `multi_price` body: the entries of `data` that are not `null` (an address
/// Birdeye does not know comes back as `null`).
fn price_count(body: &[u8]) -> u64 {
    #[derive(serde::Deserialize)]
    struct MultiPrice {
        data: std::collections::HashMap<String, Option<serde::de::IgnoredAny>>,
    }
    serde_json::from_slice::<MultiPrice>(body).map_or(0, |doc| {
        doc.data.values().filter(|price| price.is_some()).count() as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_the_known_addresses() {
        let body = br#"{"success":true,"data":{"a":{"value":1.5},"b":null,"c":{"value":2}}}"#;
        assert_eq!(price_count(body), 2);
        assert_eq!(price_count(br#"{"success":false}"#), 0);
        assert_eq!(price_count(b"{\"data\":{"), 0);
    }

    #[test]
    fn the_account_bucket_is_the_tighter_limit() {
        let config = |tier: &str| {
            crate::config::Config::load(None, &[("birdeye.tier", tier.into())])
                .unwrap()
                .birdeye
        };
        // Premium: 50/s, but 1000/min is the tighter steady rate.
        assert_eq!(
            account_limit(&config("premium")),
            RateLimit::per_minute(1000)
        );
        assert_eq!(
            account_limit(&config("business")),
            RateLimit::per_minute(1500)
        );
        assert_eq!(account_limit(&config("starter")), RateLimit::per_second(15));
        let mut generous = config("premium");
        generous.requests_per_second = 10;
        assert_eq!(account_limit(&generous), RateLimit::per_second(10));
    }
}
