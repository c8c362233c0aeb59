//! The chain sink: push batches become `updatePriceFeedsIfNecessary` transactions, planned by
//! the pure [`Keeper`], priced with EIP-1559 fees, sent with a nonce from the chain, tracked by
//! polling receipts on the caller's ticks (no background poller to leak), replaced when stuck,
//! and remembered in sled so a restart never pays twice for the same update.
//!
//! In dry-run (the default, and always in replay) each transaction is only planned: the
//! `tx_planned` event carries ids, publish times, fee, calldata size and gas estimate.

use std::path::Path;

use alloy::network::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{BlockNumberOrTag, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use serde::{Deserialize, Serialize};

use super::{ChainClient, ChainError, IPyth, short_reason};
use crate::config::{ChainConfig, ChainMode, Secret, UpdateDataSource, parse_address};
use crate::model::{ChainTarget, Decimal, FeedId};
use crate::net::http::{Api, Call, Priority};
use crate::ops::debounce::PushBatch;
use crate::ops::keeper::{
    Action, Attempt, FeedTime, Fees, Keeper, KeeperRules, KeeperState, SkipReason, TxPlan,
};
use crate::synth::abi::MockUpdate;

/// The Hermes rate-limit bucket (shared with the Hermes source when it shares the `Api`).
const HERMES_BUCKET: &str = "requests";
/// Breaker, metrics and cache name of the update-data fetch.
const HERMES_UPDATES: &str = "keeper_update_data";

/// How long the chain's nonce must have passed the transaction in flight, with no receipt for
/// any of its attempts, before it is given up as taken by another transaction (ms).
pub const NONCE_PASSED_GRACE_MS: u64 = 3_000;

/// Gas limit = estimate × this, in percent.
const GAS_MARGIN_PERCENT: u64 = 120;

/// After the store failed to record a signed transaction, nothing is signed again for this
/// long (ms): the queue waits instead of signing and failing on every tick.
pub const STORE_RETRY_MS: u64 = 5_000;

/// Said of a batch that failed for a reason that passes (no endpoint reachable): it stays
/// queued and goes with the first tick that can send it.
const QUEUED_NOTE: &str = "; queued, retried when an endpoint answers";

/// What the sink did, one journal line each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkEvent {
    /// Dry-run: the transaction that would be sent.
    TxPlanned {
        /// Batches it carries.
        batches: Vec<u64>,
        /// Feed ids.
        ids: Vec<FeedId>,
        /// Their publish times.
        publish_times: Vec<i64>,
        /// `getUpdateFee` (wei), when the chain was reachable.
        fee: Option<String>,
        /// Calldata bytes.
        calldata_bytes: usize,
        /// `eth_estimateGas`, when the chain was reachable and the call would not revert.
        gas_estimate: Option<u64>,
    },
    /// A transaction was sent.
    TxSubmitted {
        /// Batches it carries.
        batches: Vec<u64>,
        /// Hash.
        hash: String,
        /// Nonce.
        nonce: u64,
        /// Feed ids.
        ids: Vec<FeedId>,
        /// Their publish times.
        publish_times: Vec<i64>,
        /// Update fee paid with it (wei).
        fee: String,
        /// Max fee per gas (wei).
        max_fee_per_gas: String,
        /// Priority fee per gas (wei).
        max_priority_fee_per_gas: String,
    },
    /// A stuck transaction was replaced at the same nonce.
    TxReplaced {
        /// The new hash.
        hash: String,
        /// The hash replaced.
        replaces: String,
        /// Nonce.
        nonce: u64,
        /// Max fee per gas (wei).
        max_fee_per_gas: String,
        /// Priority fee per gas (wei).
        max_priority_fee_per_gas: String,
    },
    /// Mined successfully.
    TxConfirmed {
        /// Batches it carried.
        batches: Vec<u64>,
        /// Hash of the attempt mined.
        hash: String,
        /// Block.
        block: u64,
        /// Gas used.
        gas_used: u64,
        /// Gas × price + update fee (wei).
        fee_paid: String,
    },
    /// Not sent, reverted, or lost.
    TxFailed {
        /// Batches.
        batches: Vec<u64>,
        /// Why.
        reason: String,
    },
    /// Deliberately not sent.
    TxSkipped {
        /// Batches.
        batches: Vec<u64>,
        /// Why.
        reason: SkipReason,
    },
    /// The gas price is above the cap: waiting.
    GasCapExceeded {
        /// Fresh max fee (wei per gas).
        fresh: String,
        /// The cap (wei per gas).
        cap: String,
    },
    /// The wallet holds less than `chain.min_balance`.
    LowBalance {
        /// Balance (wei).
        balance: String,
        /// The minimum (wei).
        min_balance: String,
    },
}

/// The signer, for send mode.
struct Signer {
    wallet: EthereumWallet,
    address: Address,
}

/// Keys of the sink's sled tree.
const STATE_KEY: &[u8] = b"state";
const REQUEST_KEY: &[u8] = b"request";

/// The chain sink.
pub struct ChainSink {
    client: Option<ChainClient>,
    contract: Address,
    chain_id: u64,
    mode: ChainMode,
    signer: Option<Signer>,
    fee_multiplier: Decimal,
    min_balance: u128,
    keeper: Keeper,
    /// The unsigned transaction in flight, for replacements.
    request: Option<TransactionRequest>,
    tree: Option<sled::Tree>,
    legacy: bool,
    update_source: UpdateDataSource,
    hermes: Option<Api>,
    /// Since when (ms) the chain's nonce has passed the one in flight with no receipt found.
    nonce_passed_since: Option<u64>,
    /// Waiting for the gas price to fall below the cap.
    over_gas_cap: bool,
    /// The store could not record a signed transaction: nothing is signed before this (ms).
    store_retry_at_ms: Option<u64>,
}

impl ChainSink {
    /// Opens the sink. `force_dry_run` (replay) never sends, whatever `config.mode` says.
    /// `store` is the sled tree remembering what was pushed and what is in flight.
    pub async fn open(
        config: &ChainConfig,
        store: Option<sled::Tree>,
        force_dry_run: bool,
    ) -> Result<ChainSink, ChainError> {
        let mode = if force_dry_run {
            ChainMode::DryRun
        } else {
            config.mode
        };
        let client = if config.rpc_urls.is_empty() {
            None
        } else {
            Some(ChainClient::connect(&config.rpc_urls).await?)
        };
        let contract = Address::from(parse_address(&config.contract_address).unwrap_or([0; 20]));
        let signer = match mode {
            ChainMode::Send => Some(signer(&config.signing_key().map_err(ChainError::Other)?)?),
            ChainMode::DryRun => config.signing_key().ok().and_then(|key| signer(&key).ok()),
        };
        if mode == ChainMode::Send && client.is_none() {
            return Err(ChainError::Other("send mode needs chain.rpc_urls".into()));
        }
        let state: KeeperState = match &store {
            Some(tree) => load(tree, STATE_KEY)?.unwrap_or_default(),
            None => KeeperState::default(),
        };
        let request = match &store {
            Some(tree) => load(tree, REQUEST_KEY)?,
            None => None,
        };
        let rules = KeeperRules {
            receipt_timeout_ms: config.receipt_timeout_ms,
            cap_multiple: 5,
            gas_cap: config.gas_cap_wei(),
        };
        Ok(ChainSink {
            client,
            contract,
            chain_id: config.chain_id,
            mode,
            signer,
            fee_multiplier: config.fee_multiplier,
            min_balance: config.min_balance_wei(),
            keeper: Keeper::new(rules, state),
            request,
            tree: store,
            legacy: false,
            update_source: config.update_data,
            hermes: None,
            nonce_passed_since: None,
            over_gas_cap: false,
            store_retry_at_ms: None,
        })
    }

    /// With `chain.update_data = "hermes"`: the Hermes client update data is fetched with
    /// (built from [`crate::sources::hermes::provider`]).
    pub fn with_hermes(mut self, api: Api) -> ChainSink {
        self.hermes = Some(api);
        self
    }

    /// Opens the sled database at `path` and the sink's tree in it.
    pub fn open_store(path: &Path) -> Result<sled::Tree, ChainError> {
        // No background flusher: every change is flushed as it is made, and the lock is
        // released as soon as the sink is dropped.
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(1 << 20)
            .flush_every_ms(None)
            .open()
            .map_err(|e| ChainError::Other(format!("keeper store: {e}")))?;
        db.open_tree("keeper")
            .map_err(|e| ChainError::Other(format!("keeper store: {e}")))
    }

    /// The signing address, if any.
    pub fn address(&self) -> Option<[u8; 20]> {
        self.signer.as_ref().map(|s| s.address.0.0)
    }

    /// The keeper's decisions so far.
    pub fn keeper(&self) -> &Keeper {
        &self.keeper
    }

    /// The keeper's state (for checks and status).
    pub fn state(&self) -> &KeeperState {
        self.keeper.state()
    }

    fn client(&self) -> Result<&ChainClient, ChainError> {
        self.client
            .as_ref()
            .ok_or_else(|| ChainError::Other("no chain.rpc_urls".into()))
    }

    /// Before anything is sent after a start: settles the transaction left in flight by the
    /// last run (its receipt, or its nonce taken), or broadcasts it again if the node lost it.
    pub async fn reconcile(&mut self, now_ms: u64) -> Vec<SinkEvent> {
        let mut events = Vec::new();
        if self.mode != ChainMode::Send || self.keeper.in_flight().is_none() {
            return events;
        }
        self.poll_in_flight(now_ms, &mut events).await;
        if let Some(in_flight) = self.keeper.in_flight().cloned()
            && let (Ok(client), Some(last)) = (self.client(), in_flight.attempts.last())
            && let Ok(raw) = hex::decode(last.raw.trim_start_matches("0x"))
        {
            // Still pending, or lost with a restarted node: the same signed bytes again cost
            // nothing twice (same nonce).
            let raw = Bytes::from(raw);
            let result = client
                .call(|p| {
                    let raw = raw.clone();
                    async move { Ok(*p.send_raw_transaction(&raw).await?.tx_hash()) }
                })
                .await;
            if let Err(e) = result {
                tracing::debug!(error = %short_reason(&e), "rebroadcast after restart");
            }
        }
        self.persist(&mut events);
        events
    }

    /// A chain read: what the contract stores for a feed.
    pub fn on_target(&mut self, target: &ChainTarget) {
        self.keeper
            .on_target(target.feed, target.price.map(|p| p.publish_time));
    }

    /// A push batch from the debounce.
    pub async fn on_batch(&mut self, batch: &PushBatch, now_ms: u64) -> Vec<SinkEvent> {
        let mut events = Vec::new();
        if self.store_paused(now_ms) {
            // Nothing can be recorded now, so nothing is signed: the batch waits its turn.
            let actions = self.keeper.enqueue(batch);
            self.act_without_fees(actions, &mut events);
            self.persist(&mut events);
            return events;
        }
        let fresh = match self.fresh_fees().await {
            Ok(f) => f,
            Err(e) if self.mode == ChainMode::DryRun => {
                tracing::debug!(error = %short_reason(&e), "no fee price in dry-run");
                Fees::legacy(0)
            }
            Err(e @ ChainError::Unreachable { .. }) => {
                // As when the update fee cannot be read: the batch is queued, not lost, and
                // the first tick that reads a fee price sends it.
                let actions = self.keeper.enqueue(batch);
                if actions.is_empty() {
                    events.push(SinkEvent::TxFailed {
                        batches: vec![batch.batch],
                        reason: format!("fee price: {}{QUEUED_NOTE}", short_reason(&e)),
                    });
                }
                self.act_without_fees(actions, &mut events);
                self.persist(&mut events);
                return events;
            }
            Err(e) => {
                events.push(SinkEvent::TxFailed {
                    batches: vec![batch.batch],
                    reason: format!("fee price: {}", short_reason(&e)),
                });
                return events;
            }
        };
        let actions = self.keeper.on_batch(batch, now_ms, fresh);
        self.act(actions, fresh, now_ms, &mut events).await;
        self.persist(&mut events);
        events
    }

    /// True while signing waits for the store (see [`STORE_RETRY_MS`]).
    fn store_paused(&mut self, now_ms: u64) -> bool {
        match self.store_retry_at_ms {
            Some(at) if now_ms < at => true,
            Some(_) => {
                self.store_retry_at_ms = None;
                false
            }
            None => false,
        }
    }

    /// The actions of [`Keeper::enqueue`]: skips only, nothing to send.
    fn act_without_fees(&mut self, actions: Vec<Action>, events: &mut Vec<SinkEvent>) {
        for action in actions {
            if let Action::Skip { batches, reason } = action {
                events.push(SinkEvent::TxSkipped { batches, reason });
            }
        }
    }

    /// Time passes: receipts, replacements, the queue.
    pub async fn on_tick(&mut self, now_ms: u64) -> Vec<SinkEvent> {
        let mut events = Vec::new();
        if self.mode == ChainMode::Send {
            self.poll_in_flight(now_ms, &mut events).await;
        }
        // While the store cannot record, nothing is signed (no submission, no replacement).
        let fresh = if self.store_paused(now_ms) {
            None
        } else {
            self.fresh_fees().await.ok()
        };
        let actions = self.keeper.on_tick(now_ms, fresh);
        if let Some(fresh) = fresh {
            self.act(actions, fresh, now_ms, &mut events).await;
        }
        self.persist(&mut events);
        events
    }

    /// Alerts when the wallet holds less than `chain.min_balance`.
    pub async fn check_balance(&self) -> Option<SinkEvent> {
        let address = self.signer.as_ref()?.address;
        let balance = self
            .client()
            .ok()?
            .call(|p| async move { Ok(p.get_balance(address).await?) })
            .await
            .ok()?;
        // Telemetry only: whole gwei as a float gauge.
        let gwei = balance / U256::from(1_000_000_000u64);
        metrics::gauge!("wallet_balance_gwei")
            .set(u128::try_from(gwei).unwrap_or(u128::MAX) as f64);
        if balance < U256::from(self.min_balance) {
            tracing::warn!(balance = %balance, min_balance = self.min_balance, "keeper wallet below chain.min_balance");
        }
        (balance < U256::from(self.min_balance)).then(|| SinkEvent::LowBalance {
            balance: balance.to_string(),
            min_balance: self.min_balance.to_string(),
        })
    }

    async fn act(
        &mut self,
        actions: Vec<Action>,
        fresh: Fees,
        now_ms: u64,
        events: &mut Vec<SinkEvent>,
    ) {
        let mut over_cap = false;
        for action in actions {
            match action {
                Action::Submit(plan) => self.submit(plan, fresh, now_ms, events).await,
                Action::Replace { nonce, fees } => self.replace(nonce, fees, now_ms, events).await,
                Action::Skip { batches, reason } => {
                    events.push(SinkEvent::TxSkipped { batches, reason })
                }
                Action::OverGasCap { fresh, cap } => {
                    // Reported once per episode, not on every tick of the wait.
                    over_cap = true;
                    if !self.over_gas_cap {
                        tracing::warn!(fresh, cap, "gas price above the cap: waiting");
                        events.push(SinkEvent::GasCapExceeded {
                            fresh: fresh.to_string(),
                            cap: cap.to_string(),
                        });
                    }
                }
            }
        }
        self.over_gas_cap = over_cap;
    }

    /// EIP-1559 `base × multiplier + tip`, or the gas price on a chain without a base fee.
    async fn fresh_fees(&mut self) -> Result<Fees, ChainError> {
        let client = self.client()?;
        let block = client
            .call(|p| async move { Ok(p.get_block_by_number(BlockNumberOrTag::Latest).await?) })
            .await?;
        let base = block.and_then(|b| b.header.base_fee_per_gas);
        match base {
            Some(base) => {
                let tip = client
                    .call(|p| async move { Ok(p.get_max_priority_fee_per_gas().await?) })
                    .await?;
                self.legacy = false;
                Fees::eip1559(u128::from(base), tip, &self.fee_multiplier)
                    .ok_or_else(|| ChainError::Other("fee overflow".into()))
            }
            None => {
                let price = client
                    .call(|p| async move { Ok(p.get_gas_price().await?) })
                    .await?;
                self.legacy = true;
                Ok(Fees::legacy(price))
            }
        }
    }

    /// The update data of a plan. `stream`: the batches' blobs, less MockPyth-encoded elements
    /// of feeds or publish times the plan does not push (each element is paid for). `hermes`:
    /// fetched fresh from `/v2/updates/price/latest` for exactly the plan's feeds.
    ///
    /// Also returns, when every element is a MockPyth element matched to the plan (stream
    /// data), the feeds they cover: a feed without data is not pushed, so it is not recorded as
    /// pushed either.
    async fn update_data(
        &self,
        plan: &TxPlan,
    ) -> Result<(Vec<Bytes>, Option<Vec<FeedTime>>), String> {
        let blobs = match self.update_source {
            UpdateDataSource::Hermes if self.hermes.is_some() || self.mode == ChainMode::Send => {
                self.fetch_hermes(plan).await?
            }
            // A plan without a Hermes client (a replay: history cannot be fetched) is sized
            // with the data the batch carried.
            _ => plan.update_data.clone(),
        };
        let wanted = plan.feed_times();
        let mut out = Vec::new();
        let mut covered = Some(Vec::new());
        for blob in &blobs {
            let bytes = hex::decode(blob.trim_start_matches("0x"))
                .map_err(|_| "update data is not hex".to_owned())?;
            if let Some(update) = MockUpdate::decode(&bytes) {
                let in_plan = wanted.iter().any(|f| {
                    f.id.0 == update.id
                        && (self.update_source == UpdateDataSource::Hermes
                            || u64::try_from(f.publish_time).ok() == Some(update.publish_time))
                });
                if !in_plan {
                    continue;
                }
                if let Some(covered) = covered.as_mut() {
                    covered.extend(wanted.iter().filter(|f| {
                        f.id.0 == update.id
                            && u64::try_from(f.publish_time).ok() == Some(update.publish_time)
                    }));
                }
            } else {
                covered = None;
            }
            out.push(Bytes::from(bytes));
        }
        if self.update_source == UpdateDataSource::Hermes {
            covered = None;
        }
        Ok((out, covered))
    }

    /// `binary.data` of Hermes' latest updates for the plan's feeds.
    async fn fetch_hermes(&self, plan: &TxPlan) -> Result<Vec<String>, String> {
        let Some(api) = &self.hermes else {
            return Err("chain.update_data = \"hermes\" but no Hermes client".into());
        };
        let ids: Vec<String> = plan
            .feeds
            .iter()
            .map(|f| format!("ids[]={}", f.id))
            .collect();
        let path = format!(
            "/v2/updates/price/latest?{}&encoding=hex&parsed=false&ignore_invalid_price_ids=true",
            ids.join("&")
        );
        // Critical: a push waits on it, ahead of the source's own High polls in this bucket.
        let call = Call::new(HERMES_UPDATES, HERMES_BUCKET, &path)
            .priority(Priority::Critical)
            .use_stale(false);
        #[derive(Deserialize)]
        struct Latest {
            binary: Binary,
        }
        #[derive(Deserialize)]
        struct Binary {
            data: Vec<String>,
        }
        let fetched = api
            .get(call)
            .await
            .map_err(|e| format!("hermes update data: {e}"))?;
        let latest: Latest = fetched
            .json()
            .map_err(|e| format!("hermes update data: {e}"))?;
        Ok(latest.binary.data)
    }

    async fn submit(
        &mut self,
        plan: TxPlan,
        fresh: Fees,
        now_ms: u64,
        events: &mut Vec<SinkEvent>,
    ) {
        let batches = plan.batches.clone();
        let fail = |reason: String| SinkEvent::TxFailed {
            batches: batches.clone(),
            reason,
        };
        let mut plan = plan;
        let data = match self.update_data(&plan).await {
            Ok((data, _)) if data.is_empty() => {
                self.keeper.on_not_sent(false);
                events.push(SinkEvent::TxSkipped {
                    batches: plan.batches,
                    reason: SkipReason::NoUpdateData,
                });
                return;
            }
            Ok((data, covered)) => {
                if let Some(covered) = covered {
                    plan.feeds.retain(|f| {
                        covered.contains(&FeedTime {
                            id: f.id,
                            publish_time: f.publish_time,
                        })
                    });
                    self.keeper.restrict_planning(&covered);
                }
                data
            }
            Err(reason) => {
                self.keeper.on_not_sent(false);
                events.push(fail(reason));
                return;
            }
        };
        let ids: Vec<FeedId> = plan.feeds.iter().map(|f| f.id).collect();
        let publish_times: Vec<i64> = plan.feeds.iter().map(|f| f.publish_time).collect();
        let call = IPyth::updatePriceFeedsIfNecessaryCall {
            updateData: data.clone(),
            priceIds: ids.iter().map(|id| B256::from(id.0)).collect(),
            publishTimes: publish_times
                .iter()
                .map(|t| u64::try_from(*t).unwrap_or(0))
                .collect(),
        };
        let calldata = Bytes::from(call.abi_encode());
        let contract = self.contract;
        let from = self.signer.as_ref().map(|s| s.address);

        // Fee and simulation (estimate): both need the chain.
        let chain = match self.client() {
            Ok(client) => {
                let fee = client
                    .call(|p| {
                        let data = data.clone();
                        async move { IPyth::new(contract, p).getUpdateFee(data).call().await }
                    })
                    .await;
                match fee {
                    Ok(fee) => {
                        let mut req = TransactionRequest::default()
                            .with_to(contract)
                            .with_input(calldata.clone())
                            .with_value(fee);
                        if let Some(from) = from {
                            req = req.with_from(from);
                        }
                        let est = client
                            .call(|p| {
                                let req = req.clone();
                                async move { Ok(p.estimate_gas(req).await?) }
                            })
                            .await;
                        Ok((fee, req, est))
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };

        if self.mode == ChainMode::DryRun {
            self.keeper.on_not_sent(false);
            let (fee, gas) = match &chain {
                Ok((fee, _, est)) => (Some(fee.to_string()), est.as_ref().ok().copied()),
                Err(_) => (None, None),
            };
            if let Ok((_, _, Err(e))) = &chain
                && matches!(e.pyth_error(), Some(IPyth::IPythErrors::NoFreshUpdate(_)))
            {
                events.push(SinkEvent::TxSkipped {
                    batches: plan.batches,
                    reason: SkipReason::NoFreshUpdate,
                });
                return;
            }
            events.push(SinkEvent::TxPlanned {
                batches: plan.batches,
                ids,
                publish_times,
                fee,
                calldata_bytes: calldata.len(),
                gas_estimate: gas,
            });
            return;
        }

        let (fee, req, estimate) = match chain {
            Ok(x) => x,
            Err(e) => {
                let retry = matches!(e, ChainError::Unreachable { .. });
                self.keeper.on_not_sent(retry);
                let note = if retry { QUEUED_NOTE } else { "" };
                events.push(fail(format!("update fee: {}{note}", short_reason(&e))));
                return;
            }
        };
        let gas = match estimate {
            Ok(gas) => gas,
            Err(e) => {
                if matches!(e.pyth_error(), Some(IPyth::IPythErrors::NoFreshUpdate(_))) {
                    self.keeper.on_not_sent(false);
                    events.push(SinkEvent::TxSkipped {
                        batches: plan.batches,
                        reason: SkipReason::NoFreshUpdate,
                    });
                    return;
                }
                let retry = matches!(e, ChainError::Unreachable { .. });
                self.keeper.on_not_sent(retry);
                let reason = if e.is_insufficient_funds() {
                    "insufficient funds: top up the keeper wallet".to_owned()
                } else {
                    format!("simulation: {}", short_reason(&e))
                };
                events.push(fail(reason));
                return;
            }
        };
        let gas_limit = gas.saturating_mul(GAS_MARGIN_PERCENT) / 100;
        let Some(from) = from else {
            self.keeper.on_not_sent(false);
            events.push(fail("no signing key".into()));
            return;
        };
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                self.keeper.on_not_sent(true);
                events.push(fail(short_reason(&e)));
                return;
            }
        };
        // Funds for the worst case, before anything is signed: a clear error, no retry loop.
        let balance = client
            .call(|p| async move { Ok(p.get_balance(from).await?) })
            .await;
        let need = U256::from(gas_limit)
            .saturating_mul(U256::from(fresh.max_fee_per_gas))
            .saturating_add(fee);
        match balance {
            Ok(balance) if balance < need => {
                self.keeper.on_not_sent(false);
                events.push(fail(format!(
                    "insufficient funds: balance {balance} wei, the transaction may cost {need} wei; top up the keeper wallet"
                )));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                self.keeper.on_not_sent(true);
                events.push(fail(format!("balance: {}", short_reason(&e))));
                return;
            }
        }
        let nonce = match client
            .call(|p| async move { Ok(p.get_transaction_count(from).pending().await?) })
            .await
        {
            Ok(n) => n,
            Err(e) => {
                self.keeper.on_not_sent(true);
                events.push(fail(format!("nonce: {}", short_reason(&e))));
                return;
            }
        };
        let req = req
            .with_nonce(nonce)
            .with_chain_id(self.chain_id)
            .with_gas_limit(gas_limit);
        self.request = Some(req.clone());
        match self.sign_and_send(req, fresh, now_ms, nonce).await {
            Ok(hash) => events.push(SinkEvent::TxSubmitted {
                batches: plan.batches,
                hash,
                nonce,
                ids,
                publish_times,
                fee: fee.to_string(),
                max_fee_per_gas: fresh.max_fee_per_gas.to_string(),
                max_priority_fee_per_gas: fresh.max_priority_fee_per_gas.to_string(),
            }),
            Err(reason) => events.push(fail(reason)),
        }
    }

    /// Signs `req` with `fees`, records the attempt (persisted) and broadcasts it. Returns the
    /// hash, or why it was refused (the attempt is then forgotten). An attempt the store
    /// cannot record is not broadcast: its plan goes back to the queue (a replacement is
    /// simply tried again), and nothing is signed for [`STORE_RETRY_MS`].
    async fn sign_and_send(
        &mut self,
        req: TransactionRequest,
        fees: Fees,
        now_ms: u64,
        nonce: u64,
    ) -> Result<String, String> {
        let Some(signer) = &self.signer else {
            self.keeper.on_not_sent(false);
            return Err("no signing key".into());
        };
        let req = if self.legacy {
            req.with_gas_price(fees.max_fee_per_gas)
        } else {
            req.with_max_fee_per_gas(fees.max_fee_per_gas)
                .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
        };
        let envelope = match req.build(&signer.wallet).await {
            Ok(env) => env,
            Err(e) => {
                self.keeper.on_not_sent(false);
                return Err(format!("signing: {e}"));
            }
        };
        let hash = format!("{:#x}", envelope.tx_hash());
        let raw = envelope.encoded_2718();
        let mut signed = self.keeper.clone();
        signed.on_signed(
            nonce,
            Attempt {
                hash: hash.clone(),
                fees,
                sent_at_ms: now_ms,
                raw: format!("0x{}", hex::encode(&raw)),
            },
        );
        // Recorded before it is broadcast: a crash from here on is reconciled, not repaid. A
        // transaction broadcast without that record could be paid for again after a restart,
        // so without it nothing goes out.
        if let Err(e) = self.save(signed.state()) {
            tracing::error!(error = %e, "signed transaction not recorded; not broadcast");
            self.keeper.on_not_sent(true);
            if self.keeper.in_flight().is_none() {
                self.request = None;
            }
            self.store_retry_at_ms = Some(now_ms.saturating_add(STORE_RETRY_MS));
            return Err(format!(
                "not broadcast: the signed transaction could not be recorded in the keeper store ({e}); queued, retried in {} s",
                STORE_RETRY_MS / 1_000
            ));
        }
        self.keeper = signed;
        let raw = Bytes::from(raw);
        let sent = match self.client() {
            Ok(client) => {
                client
                    .call(|p| {
                        let raw = raw.clone();
                        async move { Ok(*p.send_raw_transaction(&raw).await?.tx_hash()) }
                    })
                    .await
            }
            Err(e) => Err(e),
        };
        match sent {
            Ok(_) => Ok(hash),
            Err(e) if matches!(e, ChainError::Unreachable { .. }) => {
                // Maybe sent, maybe not: it stays in flight, polled and replaced as needed.
                tracing::warn!(error = %short_reason(&e), "broadcast failed; kept in flight");
                Ok(hash)
            }
            Err(e) => {
                let text = e.to_string().to_ascii_lowercase();
                if text.contains("already known") {
                    return Ok(hash);
                }
                self.keeper.on_rejected(&hash);
                if self.keeper.in_flight().is_none() {
                    self.request = None;
                }
                let reason = if e.is_insufficient_funds() {
                    "insufficient funds: top up the keeper wallet".to_owned()
                } else {
                    format!("refused: {}", short_reason(&e))
                };
                Err(reason)
            }
        }
    }

    async fn replace(&mut self, nonce: u64, fees: Fees, now_ms: u64, events: &mut Vec<SinkEvent>) {
        let Some(req) = self.request.clone() else {
            return;
        };
        let replaces = self
            .keeper
            .in_flight()
            .and_then(|t| t.attempts.last())
            .map(|a| a.hash.clone())
            .unwrap_or_default();
        let batches = self
            .keeper
            .in_flight()
            .map(|t| t.batches.clone())
            .unwrap_or_default();
        match self.sign_and_send(req, fees, now_ms, nonce).await {
            Ok(hash) => events.push(SinkEvent::TxReplaced {
                hash,
                replaces,
                nonce,
                max_fee_per_gas: fees.max_fee_per_gas.to_string(),
                max_priority_fee_per_gas: fees.max_priority_fee_per_gas.to_string(),
            }),
            Err(reason) => events.push(SinkEvent::TxFailed {
                batches,
                reason: format!("replacement {reason}"),
            }),
        }
    }

    /// Receipts of every attempt in flight; then whether the nonce was taken by another (only
    /// after [`NONCE_PASSED_GRACE_MS`] without a receipt: nodes may answer a mined
    /// transaction's receipt late).
    async fn poll_in_flight(&mut self, now_ms: u64, events: &mut Vec<SinkEvent>) {
        let Some(in_flight) = self.keeper.in_flight().cloned() else {
            return;
        };
        let Ok(client) = self.client() else {
            return;
        };
        for attempt in &in_flight.attempts {
            let Ok(hash) = attempt.hash.parse::<B256>() else {
                continue;
            };
            let receipt = client
                .call(|p| async move { Ok(p.get_transaction_receipt(hash).await?) })
                .await;
            let Ok(Some(receipt)) = receipt else {
                continue;
            };
            let success = receipt.status();
            let fee_value = self
                .request
                .as_ref()
                .and_then(|r| r.value)
                .unwrap_or_default();
            let paid = U256::from(receipt.gas_used)
                .saturating_mul(U256::from(receipt.effective_gas_price))
                .saturating_add(if success { fee_value } else { U256::ZERO });
            let block = receipt.block_number.unwrap_or_default();
            let gas_used = receipt.gas_used;
            // Telemetry only (metrics are floats); every amount journaled stays an integer.
            if let Some(first) = in_flight.attempts.first() {
                let latency_ms = now_ms.saturating_sub(first.sent_at_ms);
                metrics::histogram!("tx_latency_seconds").record(latency_ms as f64 / 1_000.0);
            }
            // What the gas of this transaction cost (the update fee aside), per transaction.
            let gas_wei = u128::from(receipt.gas_used).saturating_mul(receipt.effective_gas_price);
            metrics::histogram!("gas_cost_gwei").record(gas_wei as f64 / 1_000_000_000.0);
            if success {
                metrics::counter!("price_updates_total", "source" => "keeper")
                    .increment(in_flight.feeds.len() as u64);
            }
            self.keeper.on_receipt(&attempt.hash, success);
            self.request = None;
            self.nonce_passed_since = None;
            events.push(if success {
                SinkEvent::TxConfirmed {
                    batches: in_flight.batches.clone(),
                    hash: attempt.hash.clone(),
                    block,
                    gas_used,
                    fee_paid: paid.to_string(),
                }
            } else {
                SinkEvent::TxFailed {
                    batches: in_flight.batches.clone(),
                    reason: format!("reverted in block {block} ({})", attempt.hash),
                }
            });
            return;
        }
        let Some(from) = self.signer.as_ref().map(|s| s.address) else {
            return;
        };
        let confirmed = client
            .call(|p| async move { Ok(p.get_transaction_count(from).latest().await?) })
            .await;
        let passed = confirmed.as_ref().is_ok_and(|c| *c > in_flight.nonce);
        if !passed {
            self.nonce_passed_since = None;
            return;
        }
        let since = *self.nonce_passed_since.get_or_insert(now_ms);
        if now_ms.saturating_sub(since) < NONCE_PASSED_GRACE_MS {
            return;
        }
        if let Ok(confirmed) = confirmed
            && self.keeper.on_nonce_consumed(confirmed).is_some()
        {
            self.request = None;
            self.nonce_passed_since = None;
            events.push(SinkEvent::TxFailed {
                batches: in_flight.batches,
                reason: format!("nonce {} taken by another transaction", in_flight.nonce),
            });
        }
    }

    /// Saves the keeper's state; a failure is journaled (the next save may succeed, and a
    /// restart reconciles with the chain).
    fn persist(&self, events: &mut Vec<SinkEvent>) {
        if let Err(e) = self.save(self.keeper.state()) {
            tracing::error!(error = %e, "keeper state not persisted");
            events.push(SinkEvent::TxFailed {
                batches: Vec::new(),
                reason: format!("keeper state not persisted: {e}"),
            });
        }
    }

    /// Writes `state` and the request in flight to the store, flushed.
    fn save(&self, state: &KeeperState) -> Result<(), String> {
        let Some(tree) = &self.tree else {
            return Ok(());
        };
        serde_json::to_vec(state)
            .map_err(|e| e.to_string())
            .and_then(|state| {
                tree.insert(STATE_KEY, state).map_err(|e| e.to_string())?;
                match &self.request {
                    Some(req) => {
                        let req = serde_json::to_vec(req).map_err(|e| e.to_string())?;
                        tree.insert(REQUEST_KEY, req).map_err(|e| e.to_string())?;
                    }
                    None => {
                        tree.remove(REQUEST_KEY).map_err(|e| e.to_string())?;
                    }
                }
                tree.flush().map_err(|e| e.to_string())?;
                Ok(())
            })
    }
}

/// The signer for a key; the error never shows the key.
fn signer(key: &Secret) -> Result<Signer, ChainError> {
    let signer: PrivateKeySigner = key.expose().trim().parse().map_err(|_| {
        ChainError::Other("the signing key is not a 32-byte hex private key".into())
    })?;
    let address = signer.address();
    Ok(Signer {
        wallet: EthereumWallet::from(signer),
        address,
    })
}

fn load<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<Option<T>, ChainError> {
    let Some(bytes) = tree
        .get(key)
        .map_err(|e| ChainError::Other(format!("keeper store: {e}")))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ChainError::Other(format!("keeper store: {e}")))
}
