//! The keeper task of a live run: chain reads and push batches from the dataflow drive the
//! [`ChainSink`], and what it does comes back into the pipeline as an observation of the chain.
//!
//! In a live run every [`SinkEvent`] (`tx_planned`, `tx_submitted`, `tx_replaced`,
//! `tx_confirmed`, `tx_failed`, `tx_skipped`, and the `gas_cap_exceeded` / `low_balance`
//! alerts) is handed to the chain source's [`Emitter`] as a `chain_tx` envelope: it is stamped,
//! recorded, parsed (`model::parse::chain_tx`) and journaled in `journal.jsonl` like any other
//! input, at its ingest time. A replay of the recording therefore journals the same outcomes,
//! byte for byte, without the keeper sending anything: in replay the keeper only plans, emits
//! nothing, and its plans go to `keeper.jsonl` alone. Every event also goes to `keeper.jsonl`
//! beside the journal (stamped with the wall clock), including those of the last look at
//! receipts after the sources have closed, which no longer reach the journal.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{error, info, warn};

use super::sink::{ChainSink, SinkEvent};
use crate::config::{ChainConfig, UpdateDataSource};
use crate::model::Endpoint;
use crate::net::http::Api;
use crate::ops::keeper::{FORCED_BATCH, KeeperInput, LatestSources, SkipReason};
use crate::sources::Emitter;
use crate::sources::now_ms;

/// Wallet balance checks happen every this many ticks.
const BALANCE_EVERY_TICKS: u64 = 60;

/// Runs the keeper until the dataflow closes `inputs`. `hermes` is needed with
/// `chain.update_data = "hermes"`. State lives in `<out_dir>/keeper` (sled), events in
/// `<out_dir>/keeper.jsonl` and, through `emitter` (the chain source's), in the journal as
/// `chain_tx` envelopes. With `replay`, nothing is sent whatever `chain.mode` says: every
/// batch is only planned (`tx_planned`), no state is kept, and nothing is emitted (the
/// recorded outcomes replay into the journal instead). Each notification of `force` (the
/// operator's SIGUSR1) pushes at once every feed whose source price is newer than what is
/// known on chain (batch [`FORCED_BATCH`]).
pub async fn run_keeper(
    config: ChainConfig,
    hermes: Option<Api>,
    mut inputs: UnboundedReceiver<KeeperInput>,
    out_dir: PathBuf,
    replay: bool,
    emitter: Option<Emitter>,
    force: Option<Arc<Notify>>,
) {
    // History is never pushed, and what happened is already in the recording.
    let emitter = if replay { None } else { emitter };
    if !replay && emitter.is_none() {
        warn!("keeper: the chain source is not running; outcomes go to keeper.jsonl only");
    }
    let journal_path = out_dir.join("keeper.jsonl");
    // A live run appends (restarts continue the record); a replay writes its plans afresh.
    let mut journal = match std::fs::OpenOptions::new()
        .create(true)
        .append(!replay)
        .write(true)
        .truncate(replay)
        .open(&journal_path)
    {
        Ok(f) => f,
        Err(e) => {
            error!(path = %journal_path.display(), error = %e, "keeper: no journal; the keeper does not run");
            return;
        }
    };
    let mut write = |events: Vec<SinkEvent>| {
        let t = now_ms();
        for event in events {
            if let Some(emitter) = &emitter {
                match serde_json::to_vec(&event) {
                    // `None`: the run is closing; the event is in keeper.jsonl only.
                    Ok(json) => {
                        let _ = emitter.envelope(Endpoint::ChainTx, "", Bytes::from(json));
                    }
                    Err(e) => warn!(error = %e, "keeper: event not serialisable"),
                }
            }
            let line = serde_json::to_value(&event).map(|mut v| {
                if let Some(map) = v.as_object_mut() {
                    map.insert("t".into(), t.into());
                }
                v
            });
            match line {
                Ok(v) => {
                    if let Err(e) = writeln!(journal, "{v}") {
                        warn!(error = %e, "keeper: journal write failed");
                    }
                }
                Err(e) => warn!(error = %e, "keeper: event not serialisable"),
            }
        }
    };
    let store = if replay {
        None
    } else {
        match ChainSink::open_store(&out_dir.join("keeper")) {
            Ok(tree) => Some(tree),
            Err(e) => {
                error!(error = %e, "keeper: no state store; the keeper does not run");
                return;
            }
        }
    };
    let mut sink = match ChainSink::open(&config, store, replay).await {
        Ok(sink) => sink,
        Err(e) => {
            error!(error = %e, "keeper: cannot start; the keeper does not run");
            return;
        }
    };
    if config.update_data == UpdateDataSource::Hermes {
        match hermes {
            Some(api) => sink = sink.with_hermes(api),
            None => warn!("keeper: chain.update_data = \"hermes\" without a Hermes client"),
        }
    }
    info!(mode = ?config.mode, replay, "keeper running");
    write(sink.reconcile(now_ms()).await);
    let mut ticks = tokio::time::interval(Duration::from_millis(
        config.poll_interval_ms.clamp(100, 1_000),
    ));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    let mut latest = LatestSources::default();
    loop {
        let forced = async {
            match &force {
                Some(force) => force.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            input = inputs.recv() => match input {
                None => break,
                Some(KeeperInput::Target(target)) => sink.on_target(&target),
                Some(KeeperInput::Source(source)) => latest.offer(source),
                Some(KeeperInput::Batch(batch)) => write(sink.on_batch(&batch, now_ms()).await),
            },
            _ = forced => {
                info!("forced push");
                match latest.forced_batch(sink.keeper()) {
                    Some(batch) => write(sink.on_batch(&batch, now_ms()).await),
                    None => write(vec![SinkEvent::TxSkipped {
                        batches: vec![FORCED_BATCH],
                        reason: SkipReason::AlreadyPushed,
                    }]),
                }
            }
            _ = ticks.tick() => {
                write(sink.on_tick(now_ms()).await);
                if n.is_multiple_of(BALANCE_EVERY_TICKS) {
                    write(sink.check_balance().await.into_iter().collect());
                }
                n += 1;
            }
        }
    }
    // The dataflow is done: one last look at receipts; what is still in flight is in the
    // store for the next start to reconcile.
    write(sink.on_tick(now_ms()).await);
    info!("keeper stopped");
}
