//! The chain observer as a live source: every `chain.poll_interval_ms`, one round of
//! `getPriceUnsafe` reads of every configured feed becomes a `chain_read` envelope, recorded
//! and replayed like any other input, so the debounce's targets are the same in replay.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{Emitter, SourceRegistry, every, now_ms};
use crate::chain::{ChainClient, Observer, short_reason};
use crate::model::{Endpoint, FeedId, Source};

/// The chain source task.
pub struct ChainSource {
    client: ChainClient,
    contract: [u8; 20],
    feeds: Vec<FeedId>,
    interval: Duration,
    emitter: Emitter,
    health: SourceRegistry,
}

impl ChainSource {
    /// A source reading `feeds` from the IPyth contract at `contract` through `client`.
    pub fn new(
        client: ChainClient,
        contract: [u8; 20],
        feeds: Vec<FeedId>,
        interval: Duration,
        emitter: Emitter,
        health: SourceRegistry,
    ) -> Self {
        ChainSource {
            client,
            contract,
            feeds,
            interval,
            emitter,
            health,
        }
    }

    /// One round, emitted. Returns the envelope's ingest time, if one was emitted.
    pub async fn poll_once(&self) -> Option<u64> {
        let observer = Observer::new(&self.client, self.contract, self.feeds.clone());
        match observer.read_round_json().await {
            Ok(json) => {
                let t = self
                    .emitter
                    .envelope(Endpoint::ChainRead, "", Bytes::from(json))?;
                self.health.success(Source::Chain, now_ms(), 1);
                Some(t)
            }
            Err(e) => {
                let reason = short_reason(&e);
                debug!(error = %reason, "chain: read round failed");
                self.health.failure(Source::Chain, now_ms(), &reason);
                None
            }
        }
    }

    /// Polls until `stop`; with a WebSocket endpoint, also reads a round as soon as the
    /// contract logs a `PriceFeedUpdate` (the subscription is renewed if it ends).
    pub async fn run(self, stop: CancellationToken) {
        if !self.client.has_websocket() {
            every(self.interval, stop, || async {
                self.poll_once().await;
            })
            .await;
            return;
        }
        enum Wake {
            Stop,
            Tick,
            Log,
            LogsEnded,
        }
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut logs = None;
        loop {
            if logs.is_none() {
                logs = self.client.price_updates(self.contract).await;
            }
            let next_log = async {
                match logs.as_mut() {
                    Some(stream) => stream.next().await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                _ = stop.cancelled() => Wake::Stop,
                _ = ticks.tick() => Wake::Tick,
                log = next_log => if log.is_some() { Wake::Log } else { Wake::LogsEnded },
            };
            match wake {
                Wake::Stop => return,
                Wake::LogsEnded => logs = None,
                Wake::Tick | Wake::Log => {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = self.poll_once() => {}
                    }
                }
            }
        }
    }
}
