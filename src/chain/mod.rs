//! The chain: IPyth bindings, an RPC client over several endpoints in failover order, and the
//! observer that reads every configured feed's on-chain price as one chain-read round.
//!
//! Only the I/O lives here. What to push and when is [`crate::ops::keeper`]; the sink that
//! sends transactions is [`sink`].

pub mod sink;
pub mod task;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder, WsConnect};
use alloy::transports::RpcError;

use crate::model::parse::chain::{ChainRead, ChainReadRound, to_json};
use crate::model::{FeedId, OnChainPrice};

alloy::sol! {
    /// The part of Pyth's `IPyth` (and its errors and events) the keeper uses.
    #[sol(rpc)]
    #[derive(Debug)]
    interface IPyth {
        /// `PythStructs.Price`.
        #[derive(PartialEq, Eq)]
        struct Price {
            int64 price;
            uint64 conf;
            int32 expo;
            uint publishTime;
        }

        /// The feed was never pushed.
        error PriceFeedNotFound();
        /// `updatePriceFeedsIfNecessary`: nothing in the update is newer than what is stored.
        error NoFreshUpdate();
        /// `msg.value` below `getUpdateFee`.
        error InsufficientFee();
        /// A price older than the age asked for.
        error StalePrice();
        /// Arrays of different lengths.
        error InvalidArgument();
        /// Update data that does not verify.
        error InvalidUpdateData();

        /// A stored price changed.
        event PriceFeedUpdate(bytes32 indexed id, uint64 publishTime, int64 price, uint64 conf);

        /// The stored price, however old.
        function getPriceUnsafe(bytes32 id) external view returns (Price memory price);
        /// The fee for `updateData`, in wei.
        function getUpdateFee(bytes[] calldata updateData) external view returns (uint feeAmount);
        /// Stores every update newer than what is stored.
        function updatePriceFeeds(bytes[] calldata updateData) external payable;
        /// `updatePriceFeeds`, only if some `priceIds[i]` is stored older than `publishTimes[i]`.
        function updatePriceFeedsIfNecessary(bytes[] calldata updateData, bytes32[] calldata priceIds, uint64[] calldata publishTimes) external payable;
    }
}

/// A failed chain call.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// No endpoint could be reached; the last reason.
    #[error("no RPC endpoint reachable ({tried} tried): {last}")]
    Unreachable {
        /// Endpoints tried.
        tried: usize,
        /// The last endpoint's error.
        last: String,
    },
    /// An endpoint answered with an error (a revert, a refused transaction, ...).
    #[error("{0}")]
    Call(Box<alloy::contract::Error>),
    /// Anything else (bad configuration, a signing failure).
    #[error("{0}")]
    Other(String),
}

impl ChainError {
    /// The decoded IPyth error, if the node reverted with one.
    pub fn pyth_error(&self) -> Option<IPyth::IPythErrors> {
        match self {
            ChainError::Call(e) => e.as_decoded_interface_error::<IPyth::IPythErrors>(),
            _ => None,
        }
    }

    /// True when the node refused for lack of funds.
    pub fn is_insufficient_funds(&self) -> bool {
        matches!(self, ChainError::Call(_))
            && self
                .to_string()
                .to_ascii_lowercase()
                .contains("insufficient funds")
    }
}

impl From<alloy::contract::Error> for ChainError {
    fn from(e: alloy::contract::Error) -> Self {
        ChainError::Call(Box::new(e))
    }
}

impl From<alloy::transports::TransportError> for ChainError {
    fn from(e: alloy::transports::TransportError) -> Self {
        ChainError::Call(Box::new(e.into()))
    }
}

/// True when `e` says the endpoint could not be reached (try the next one), not that it
/// answered.
fn is_unreachable(e: &alloy::contract::Error) -> bool {
    matches!(
        e,
        alloy::contract::Error::TransportError(RpcError::Transport(_))
    )
}

pub use crate::config::shown_url;

/// True for `ws://` and `wss://` URLs.
fn is_websocket_url(url: &str) -> bool {
    url.starts_with("ws://") || url.starts_with("wss://")
}

/// How long a WebSocket connect may take before the endpoint counts as unreachable.
const WS_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One endpoint.
struct Endpoint {
    url: String,
    shown: String,
    /// HTTP: built at once (it connects per request). WebSocket: connected when first needed,
    /// and again on a later call while it is down, so a node that was down when the keeper
    /// started is used once it is back.
    provider: tokio::sync::Mutex<Option<DynProvider>>,
}

impl Endpoint {
    fn is_websocket(&self) -> bool {
        is_websocket_url(&self.url)
    }

    /// The provider, connecting a WebSocket now if it is not connected; the reason (redacted)
    /// when it cannot be.
    async fn provider(&self) -> Result<DynProvider, String> {
        let mut slot = self.provider.lock().await;
        if let Some(provider) = slot.as_ref() {
            return Ok(provider.clone());
        }
        let connect = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_ws(WsConnect::new(self.url.clone()));
        match tokio::time::timeout(WS_CONNECT_TIMEOUT, connect).await {
            Ok(Ok(provider)) => {
                let provider = provider.erased();
                *slot = Some(provider.clone());
                Ok(provider)
            }
            Ok(Err(e)) => Err(self.redact(&e.to_string())),
            Err(_) => Err(format!("no connection within {WS_CONNECT_TIMEOUT:?}")),
        }
    }

    /// `text` with the full URL (which may carry an API key) replaced by its shown form.
    fn redact(&self, text: &str) -> String {
        let mut out = text.replace(&self.url, &self.shown);
        let bare = self.url.trim_end_matches('/');
        if bare != self.shown && !bare.is_empty() {
            out = out.replace(bare, &self.shown);
        }
        out
    }
}

/// RPC endpoints in failover order. A call goes to the endpoint that last worked; when it
/// cannot reach it, to the next, round the list once.
pub struct ChainClient {
    endpoints: Vec<Endpoint>,
    current: AtomicUsize,
}

impl ChainClient {
    /// Connects to `urls`: HTTP lazily; a WebSocket at once, and one that does not connect
    /// now is kept (with a warning) and tried again when calls reach it. Fails only on a bad
    /// URL or an empty list.
    pub async fn connect(urls: &[String]) -> Result<ChainClient, ChainError> {
        if urls.is_empty() {
            return Err(ChainError::Unreachable {
                tried: 0,
                last: "no rpc_urls configured".into(),
            });
        }
        let mut endpoints = Vec::new();
        for url in urls {
            let shown = shown_url(url);
            let provider = if is_websocket_url(url) {
                None
            } else {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| ChainError::Other(format!("RPC URL {shown}: {e}")))?;
                Some(
                    ProviderBuilder::new()
                        .disable_recommended_fillers()
                        .connect_http(parsed)
                        .erased(),
                )
            };
            let endpoint = Endpoint {
                url: url.clone(),
                shown,
                provider: tokio::sync::Mutex::new(provider),
            };
            if endpoint.is_websocket()
                && let Err(reason) = endpoint.provider().await
            {
                tracing::warn!(endpoint = %endpoint.shown, error = %reason, "RPC endpoint down; tried again when needed");
            }
            endpoints.push(endpoint);
        }
        Ok(ChainClient {
            endpoints,
            current: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on the current endpoint, failing over to the next ones while it cannot reach
    /// them. An answer, even an error, is returned as it is.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, ChainError>
    where
        F: Fn(DynProvider) -> Fut,
        Fut: Future<Output = Result<T, alloy::contract::Error>>,
    {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        let mut last = String::new();
        for k in 0..n {
            let i = (start + k) % n;
            let endpoint = &self.endpoints[i];
            let provider = match endpoint.provider().await {
                Ok(provider) => provider,
                Err(reason) => {
                    tracing::warn!(endpoint = %endpoint.shown, error = %reason, "RPC endpoint unreachable");
                    last = format!("{}: {reason}", endpoint.shown);
                    continue;
                }
            };
            match f(provider).await {
                Ok(value) => {
                    if i != start {
                        tracing::warn!(endpoint = %endpoint.shown, "RPC failover");
                        self.current.store(i, Ordering::Relaxed);
                    }
                    return Ok(value);
                }
                Err(e) if is_unreachable(&e) => {
                    if endpoint.is_websocket() {
                        // Connected again on the next call that reaches it.
                        *endpoint.provider.lock().await = None;
                    }
                    let reason = endpoint.redact(&e.to_string());
                    tracing::warn!(endpoint = %endpoint.shown, error = %reason, "RPC endpoint unreachable");
                    last = format!("{}: {reason}", endpoint.shown);
                }
                Err(e) => {
                    if i != start {
                        self.current.store(i, Ordering::Relaxed);
                    }
                    return Err(e.into());
                }
            }
        }
        Err(ChainError::Unreachable { tried: n, last })
    }

    /// A subscription to the `PriceFeedUpdate` logs of `contract`, from the first WebSocket
    /// endpoint that grants one (`None` without one: HTTP endpoints are only polled).
    pub async fn price_updates(
        &self,
        contract: [u8; 20],
    ) -> Option<futures::stream::BoxStream<'static, alloy::rpc::types::Log>> {
        use alloy::sol_types::SolEvent;
        use futures::StreamExt;
        let filter = alloy::rpc::types::Filter::new()
            .address(Address::from(contract))
            .event_signature(IPyth::PriceFeedUpdate::SIGNATURE_HASH);
        for endpoint in &self.endpoints {
            if !endpoint.is_websocket() {
                continue;
            }
            let provider = match endpoint.provider().await {
                Ok(provider) => provider,
                Err(reason) => {
                    tracing::debug!(endpoint = %endpoint.shown, error = %reason, "no log subscription");
                    continue;
                }
            };
            match provider.subscribe_logs(&filter).await {
                Ok(sub) => return Some(sub.into_stream().boxed()),
                Err(e) => {
                    let reason = endpoint.redact(&e.to_string());
                    tracing::debug!(endpoint = %endpoint.shown, error = %reason, "no log subscription");
                }
            }
        }
        None
    }

    /// True when some endpoint is a WebSocket (logs can be subscribed to).
    pub fn has_websocket(&self) -> bool {
        self.endpoints.iter().any(Endpoint::is_websocket)
    }

    /// The endpoint calls go to now, as shown.
    pub fn current_endpoint(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        &self.endpoints[i].shown
    }
}

/// Reads the on-chain price of every configured feed.
pub struct Observer<'a> {
    client: &'a ChainClient,
    contract: Address,
    feeds: Vec<FeedId>,
}

impl<'a> Observer<'a> {
    /// An observer of `feeds` on the IPyth contract at `contract`.
    pub fn new(client: &'a ChainClient, contract: [u8; 20], feeds: Vec<FeedId>) -> Self {
        Observer {
            client,
            contract: Address::from(contract),
            feeds,
        }
    }

    /// One round: the block number, then `getPriceUnsafe` of every feed at that block. A feed
    /// never pushed reads as `PriceFeedNotFound`; another failed read is kept with its reason.
    /// Fails only when no endpoint answers.
    pub async fn read_round(&self) -> Result<ChainReadRound, ChainError> {
        let block = self
            .client
            .call(|p| async move { Ok(p.get_block_number().await?) })
            .await?;
        let mut reads = Vec::with_capacity(self.feeds.len());
        for feed in &self.feeds {
            let id = B256::from(feed.0);
            let contract = self.contract;
            let result = self
                .client
                .call(|p| async move {
                    IPyth::new(contract, p)
                        .getPriceUnsafe(id)
                        .block(block.into())
                        .call()
                        .await
                })
                .await;
            reads.push(match result {
                Ok(price) => match i64::try_from(price.publishTime) {
                    Ok(publish_time) => ChainRead::found(
                        *feed,
                        OnChainPrice {
                            price: price.price,
                            conf: price.conf,
                            expo: price.expo,
                            publish_time,
                        },
                    ),
                    Err(_) => ChainRead::failed(*feed, "publish time out of range"),
                },
                Err(e @ ChainError::Unreachable { .. }) => return Err(e),
                Err(e) => match e.pyth_error() {
                    Some(IPyth::IPythErrors::PriceFeedNotFound(_)) => ChainRead::not_found(*feed),
                    _ => ChainRead::failed(*feed, &short_reason(&e)),
                },
            });
        }
        Ok(ChainReadRound::new(Some(block), reads))
    }

    /// One round as the chain-read JSON an envelope carries.
    pub async fn read_round_json(&self) -> Result<String, ChainError> {
        Ok(to_json(&self.read_round().await?))
    }
}

/// An error as one short line for a journal or a chain read.
pub fn short_reason(e: &ChainError) -> String {
    if let Some(err) = e.pyth_error() {
        return format!("{err:?}")
            .split(['(', ' '])
            .next()
            .unwrap_or("revert")
            .to_owned();
    }
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("");
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use alloy::sol_types::{SolCall, SolError};

    use super::*;

    #[test]
    fn urls_are_shown_without_paths() {
        assert_eq!(
            shown_url("https://eth.example.org/v2/SECRETKEY"),
            "https://eth.example.org"
        );
        assert_eq!(shown_url("ws://127.0.0.1:8546/x"), "ws://127.0.0.1:8546");
        assert_eq!(shown_url("nope"), "<bad url>");
    }

    #[test]
    fn selectors_match_pyth() {
        assert_eq!(IPyth::PriceFeedNotFound::SELECTOR, [0x14, 0xae, 0xbe, 0x68]);
        assert_eq!(IPyth::NoFreshUpdate::SELECTOR, [0xde, 0x2c, 0x57, 0xfa]);
        assert_eq!(
            IPyth::getPriceUnsafeCall::SELECTOR,
            [0x96, 0x83, 0x4a, 0xd3]
        );
        assert_eq!(
            IPyth::updatePriceFeedsIfNecessaryCall::SELECTOR,
            [0xb9, 0x25, 0x6d, 0x28]
        );
        assert_eq!(IPyth::getUpdateFeeCall::SELECTOR, [0xd4, 0x7e, 0xed, 0x45]);
    }

    #[tokio::test]
    async fn no_endpoint_is_an_error() {
        let err = ChainClient::connect(&[]).await.err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("no RPC endpoint reachable (0 tried): no rpc_urls configured")
        );
    }
}
