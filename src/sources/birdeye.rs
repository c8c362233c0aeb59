//! Birdeye: prices of the tracked tokens on one chain, up to 100 per `/defi/multi_price` call.
//!
//! Birdeye needs an API key (`X-API-KEY`) and names the chain in the `x-chain` header, which
//! is also the envelope's context (the body does not say which chain it is about). Stale
//! responses are never handed over: an old price would look current.

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
        buckets: vec![("account", RateLimit::per_second(config.requests_per_second))],
        headers: vec![("X-API-KEY".to_owned(), config.api_key.clone())],
        default_pause_on_429: Duration::from_secs(2),
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
            let call = Call::new(MULTI_PRICE, "account", &path).headers(&headers);
            match self.api.get(call).await {
                Ok(fetched) if fetched.is_stale() => {
                    debug!("birdeye: serving stale; not handed over");
                    self.health.state(Source::Birdeye, "stale-cache");
                }
                Ok(fetched) => {
                    if self
                        .emitter
                        .envelope(Endpoint::BirdeyeMultiPrice, chain, fetched.body)
                        .is_some()
                    {
                        self.health.success(Source::Birdeye, now_ms(), 1);
                        self.health.state(Source::Birdeye, "polling");
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
