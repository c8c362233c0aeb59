//! The keeper against a real anvil node with Pyth's MockPyth: the observer's reads, and the
//! sink's sends, dry runs, replacements, restarts, failover and refusals.

mod support;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use sluice::chain::sink::{ChainSink, SinkEvent};
use sluice::chain::{ChainClient, IPyth, Observer};
use sluice::config::{ChainConfig, ChainMode, Config, Secret, UpdateDataSource};
use sluice::model::parse::chain::{ChainRead, ChainReadRound, to_json};
use sluice::model::{FeedId, OnChainPrice};
use sluice::ops::debounce::{BatchEntry, PushBatch, Reason};
use sluice::ops::keeper::SkipReason;
use sluice::synth::abi::MockUpdate;
use support::anvil::{Anvil, KEY_0, KEY_1, KEY_2, deploy_mock_pyth, provider, wallet_provider};

const FEE: u64 = 7;
const BTC: FeedId = FeedId([0xe6; 32]);
const ETH: FeedId = FeedId([0xff; 32]);

fn update(id: FeedId, price: i64, publish_time: u64) -> MockUpdate {
    MockUpdate {
        id: id.0,
        price,
        conf: 10,
        expo: -8,
        ema_price: price,
        ema_conf: 10,
        publish_time,
        prev_publish_time: publish_time.saturating_sub(1),
    }
}

fn batch(n: u64, feeds: &[(FeedId, i64, u64)]) -> PushBatch {
    PushBatch::new(
        n,
        feeds
            .iter()
            .map(|&(id, price, t)| BatchEntry {
                id,
                price,
                conf: 10,
                expo: -8,
                publish_time: t as i64,
                reason: Reason::Deviation,
                update_data: Some(bytes::Bytes::from(hex::encode(
                    update(id, price, t).encode(),
                ))),
            })
            .collect(),
    )
}

fn chain_config(urls: &[&str], contract: Address, mode: ChainMode, key: &str) -> ChainConfig {
    let mut c = Config::load(None, &[]).expect("default config").chain;
    c.rpc_urls = urls.iter().map(|u| u.to_string()).collect();
    c.contract_address = format!("{contract:#x}");
    c.mode = mode;
    c.private_key = Secret::new(key);
    c.private_key_file = None;
    c.update_data = UpdateDataSource::Stream;
    c.receipt_timeout_ms = 1_000;
    c.validate().expect("valid chain config");
    c
}

async fn price_on_chain(url: &str, contract: Address, id: FeedId) -> Option<IPyth::Price> {
    IPyth::new(contract, provider(url))
        .getPriceUnsafe(B256::from(id.0))
        .call()
        .await
        .ok()
}

async fn balance(url: &str, address: Address) -> U256 {
    provider(url).get_balance(address).await.expect("balance")
}

async fn nonce(url: &str, key: &str) -> u64 {
    let signer: alloy::signers::local::PrivateKeySigner = key.parse().unwrap();
    provider(url)
        .get_transaction_count(signer.address())
        .await
        .unwrap()
}

async fn mine(url: &str) {
    let _: String = provider(url)
        .raw_request("evm_mine".into(), ())
        .await
        .expect("evm_mine");
}

/// Deploys MockPyth on a node that mines only on demand: mines until the deployment lands.
async fn deploy_without_automine(url: &str) -> Address {
    let owned = url.to_owned();
    let deploy = tokio::spawn(async move { deploy_mock_pyth(&owned, 60, FEE).await });
    for _ in 0..200 {
        if deploy.is_finished() {
            break;
        }
        mine(url).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    deploy.await.expect("MockPyth deployed")
}

/// Ticks until an event matches (or fails after 5 s).
async fn tick_until(
    sink: &mut ChainSink,
    now: &mut u64,
    want: impl Fn(&SinkEvent) -> bool,
) -> SinkEvent {
    for _ in 0..100 {
        *now += 50;
        for e in sink.on_tick(*now).await {
            if want(&e) {
                return e;
            }
            assert!(!matches!(e, SinkEvent::TxFailed { .. }), "{e:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no matching event");
}

/// A venue serving a synthetic market of 3 feeds and `minutes` long that started `behind_ms`
/// before now, played at `speed`.
async fn synth_venue(
    dir: &std::path::Path,
    minutes: u32,
    behind_ms: u64,
    speed: f64,
) -> sluice::venue::Venue {
    use sluice::dataflow::run::RecordingInput;
    use sluice::record::Codec;
    use sluice::venue::{Venue, VenueOptions};
    let recording = dir.join("synth.rec");
    let opts = sluice::synth::SynthOptions {
        minutes,
        feeds: 3,
        tokens: 5,
        faults: false,
        start_ms: sluice::sources::now_ms() - behind_ms,
        ..sluice::synth::SynthOptions::default()
    };
    sluice::synth::write_recording(&recording, Codec::Zstd, &opts).unwrap();
    Venue::start(
        RecordingInput::File(recording),
        "127.0.0.1:0".parse().unwrap(),
        VenueOptions {
            speed,
            ..VenueOptions::default()
        },
    )
    .await
    .unwrap()
}

/// The config and pipeline files of a `sluice run` keeper in send mode: Hermes from `venue`,
/// the chain at `rpc_url`, `debounce` lines under `[debounce]`. Returns (config, pipeline).
fn keeper_cli_files(
    dir: &std::path::Path,
    venue: &sluice::venue::Venue,
    rpc_url: &str,
    contract: Address,
    debounce: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let config_file = dir.join("keeper.toml");
    std::fs::write(
        &config_file,
        format!(
            "[hermes]\nbase_url = \"{}\"\n[serve]\nlisten = \"127.0.0.1:0\"\n\
             [debounce]\n{debounce}\
             [chain]\nrpc_urls = [\"{rpc_url}\"]\ncontract_address = \"{contract:#x}\"\nmode = \"send\"\n\
             update_data = \"stream\"\npoll_interval_ms = 200\nreceipt_timeout_ms = 2000\n",
            venue.hermes_url(),
        ),
    )
    .unwrap();
    let pipeline_file = dir.join("keeper.pipeline.toml");
    std::fs::write(
        &pipeline_file,
        "name = \"keeper\"\nsources = [\"hermes\", \"chain\"]\ncomputations = [\"debounce\"]\nsinks = [\"journal\", \"chain\"]\n",
    )
    .unwrap();
    (config_file, pipeline_file)
}

/// A runtime, an anvil node with MockPyth (60 s staleness limit, fee `FEE`), a temporary
/// directory and, in it, a `synth_venue` of `minutes` started `behind_ms` ago at `speed`.
/// Returns (runtime, anvil, contract, directory, venue).
fn venue_rig(
    minutes: u32,
    behind_ms: u64,
    speed: f64,
) -> (
    tokio::runtime::Runtime,
    Anvil,
    Address,
    tempfile::TempDir,
    sluice::venue::Venue,
) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let anvil = Anvil::start(&[]);
    let contract = rt.block_on(deploy_mock_pyth(&anvil.url, 60, FEE));
    let dir = tempfile::tempdir().unwrap();
    let venue = rt.block_on(synth_venue(dir.path(), minutes, behind_ms, speed));
    (rt, anvil, contract, dir, venue)
}

/// `sluice run` of a keeper's config and pipeline files into `out`, signing with `KEY_1` given
/// as `PRIVATE_KEY`; the caller adds logging and output.
fn sluice_run(
    config_file: &std::path::Path,
    pipeline_file: &std::path::Path,
    out: &std::path::Path,
) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .arg("run")
        .arg("--config")
        .arg(config_file)
        .arg("--pipeline")
        .arg(pipeline_file)
        .arg("--out")
        .arg(out)
        .env("PRIVATE_KEY", KEY_1);
    command
}

/// The `kind` of a keeper.jsonl or journal line ("" without one).
fn kind(v: &serde_json::Value) -> String {
    v["kind"].as_str().unwrap_or("").to_owned()
}

/// Every line of a finished JSON-lines file (it must exist, and every line must parse).
fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The keeper.jsonl lines under `out` so far, of a run that may still be writing it: none
/// before the file exists, and a line not yet whole is left out.
fn keeper_lines(out: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("keeper.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits up to 60 s for the keeper.jsonl lines under `out` to satisfy `done`; else fails with
/// `what`, the lines, and the run's log at `log` if there is one.
fn wait_for_keeper(
    out: &std::path::Path,
    log: Option<&std::path::Path>,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&keeper_lines(out)) {
        assert!(
            Instant::now() < deadline,
            "{what}: {:#?}\n{}",
            keeper_lines(out),
            log.map(|l| std::fs::read_to_string(l).unwrap_or_default())
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The (feed id, publish time) pairs of a keeper.jsonl transaction line, in its order.
fn sent_feeds(v: &serde_json::Value) -> Vec<(String, i64)> {
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .zip(v["publish_times"].as_array().unwrap())
        .map(|(i, t)| (i.as_str().unwrap().to_owned(), t.as_i64().unwrap()))
        .collect()
}

/// One round of the chain source over BTC and ETH, as a live run polls it: the envelope it
/// emits, the records that parses to, and their chain targets.
async fn chain_source_round(
    url: &str,
    contract: Address,
) -> (
    sluice::model::Envelope,
    Vec<sluice::model::Record>,
    Vec<sluice::model::ChainTarget>,
) {
    use sluice::model::parse::{ParseContext, parse_envelope};
    use sluice::model::{AssetMap, Ingest, Record, Source};
    use sluice::sources::chain::ChainSource;
    use sluice::sources::{LiveClock, SourceRegistry};

    let clock = LiveClock::new(10, std::time::Duration::from_millis(250), None);
    let (emitter, rx, _) = clock.attach(Source::Chain);
    let client = ChainClient::connect(&[url.to_owned()]).await.unwrap();
    let source = ChainSource::new(
        client,
        contract.0.0,
        vec![BTC, ETH],
        std::time::Duration::from_millis(100),
        emitter,
        SourceRegistry::default(),
    );
    assert!(source.poll_once().await.is_some());
    let env = rx
        .try_iter()
        .find_map(|i| match i {
            Ingest::Envelope(e) => Some(e),
            Ingest::Watermark(_) => None,
        })
        .expect("a chain-read envelope");
    let assets = AssetMap::default();
    let ctx = ParseContext {
        assets: &assets,
        max_future_skew_ms: 5_000,
    };
    let mut records = Vec::new();
    parse_envelope(&env, &ctx, &mut records);
    let targets = records
        .iter()
        .filter_map(|r| match r {
            Record::Target(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    (env, records, targets)
}

/// Pushes one update straight to MockPyth (not through a keeper), signed with `KEY_1` and
/// paying `FEE`, and waits for its receipt.
async fn update_directly(url: &str, contract: Address, update: MockUpdate) {
    IPyth::new(contract, wallet_provider(url, KEY_1))
        .updatePriceFeeds(vec![Bytes::from(update.encode())])
        .value(U256::from(FEE))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
}

/// Asserts that no transaction of `KEY_1` reached the node: none pending, none mined.
async fn assert_nothing_reached_the_node(url: &str) {
    let pool: serde_json::Value = provider(url)
        .raw_request("txpool_content".into(), ())
        .await
        .unwrap();
    assert_eq!(pool["pending"], serde_json::json!({}), "{pool}");
    assert_eq!(nonce(url, KEY_1).await, 0);
}

/// An anvil node with MockPyth deployed (60 s staleness limit, fee `FEE`), and a send-mode
/// chain config for it that signs with `KEY_1`.
async fn send_chain() -> (Anvil, Address, ChainConfig) {
    let anvil = Anvil::start(&[]);
    let contract = deploy_mock_pyth(&anvil.url, 60, FEE).await;
    let config = chain_config(&[&anvil.url], contract, ChainMode::Send, KEY_1);
    (anvil, contract, config)
}

fn is_confirmed(e: &SinkEvent) -> bool {
    matches!(e, SinkEvent::TxConfirmed { .. })
}

#[tokio::test]
async fn observer_reads_not_found_then_the_pushed_price() {
    let anvil = Anvil::start(&[]);
    let contract = deploy_mock_pyth(&anvil.url, 60, FEE).await;
    let client = ChainClient::connect(std::slice::from_ref(&anvil.url))
        .await
        .unwrap();
    let observer = Observer::new(&client, contract.0.0, vec![BTC, ETH]);
    let round = observer.read_round().await.unwrap();
    assert_eq!(
        round.reads,
        [ChainRead::not_found(BTC), ChainRead::not_found(ETH)]
    );

    update_directly(&anvil.url, contract, update(BTC, -12_345, 1_700_000_000)).await;
    let round = observer.read_round().await.unwrap();
    let expected = ChainRead::found(
        BTC,
        OnChainPrice {
            price: -12_345,
            conf: 10,
            expo: -8,
            publish_time: 1_700_000_000,
        },
    );
    assert_eq!(round.reads, [expected, ChainRead::not_found(ETH)]);
    assert!(round.block.is_some_and(|b| b >= 2));
    // What is emitted is the chain-read schema the parser reads.
    let json = observer.read_round_json().await.unwrap();
    assert_eq!(
        serde_json::from_str::<ChainReadRound>(&json).unwrap(),
        round
    );
    assert_eq!(json, to_json(&round));
}

#[tokio::test]
async fn send_pushes_a_batch_pays_the_fee_and_never_twice() {
    let (anvil, contract, config) = send_chain().await;
    let dir = tempfile::tempdir().unwrap();
    let tree = ChainSink::open_store(dir.path()).unwrap();
    let mut sink = ChainSink::open(&config, Some(tree), false).await.unwrap();
    assert!(sink.reconcile(0).await.is_empty());
    let b = batch(1, &[(BTC, 100, 1_000), (ETH, 200, 1_001)]);
    let events = sink.on_batch(&b, 0).await;
    assert!(
        matches!(&events[..], [SinkEvent::TxSubmitted { nonce: 0, fee, ids, .. }] if fee == "14" && ids == &[BTC, ETH]),
        "{events:?}"
    );
    let mut now = 0;
    let confirmed = tick_until(&mut sink, &mut now, is_confirmed).await;
    let SinkEvent::TxConfirmed { gas_used, .. } = confirmed else {
        unreachable!()
    };
    assert!(gas_used > 21_000);
    let btc = price_on_chain(&anvil.url, contract, BTC).await.unwrap();
    assert_eq!((btc.price, btc.publishTime), (100, U256::from(1_000)));
    let eth = price_on_chain(&anvil.url, contract, ETH).await.unwrap();
    assert_eq!((eth.price, eth.publishTime), (200, U256::from(1_001)));
    assert_eq!(balance(&anvil.url, contract).await, U256::from(2 * FEE));

    // The same publish times again: skipped by the keeper, nothing sent.
    let events = sink.on_batch(&batch(2, &[(BTC, 100, 1_000)]), now).await;
    assert_eq!(
        events,
        [SinkEvent::TxSkipped {
            batches: vec![2],
            reason: SkipReason::AlreadyPushed
        }]
    );
    // A keeper that does not know (no store): the contract's guard, in simulation.
    let mut other = ChainSink::open(&config, None, false).await.unwrap();
    let events = other.on_batch(&batch(3, &[(BTC, 100, 1_000)]), now).await;
    assert_eq!(
        events,
        [SinkEvent::TxSkipped {
            batches: vec![3],
            reason: SkipReason::NoFreshUpdate
        }]
    );
    assert_eq!(nonce(&anvil.url, KEY_1).await, 1);
    assert_eq!(balance(&anvil.url, contract).await, U256::from(2 * FEE));
}

#[tokio::test]
async fn dry_run_and_replay_plan_without_sending() {
    let anvil = Anvil::start(&[]);
    let contract = deploy_mock_pyth(&anvil.url, 60, FEE).await;
    let config = chain_config(&[&anvil.url], contract, ChainMode::DryRun, KEY_1);
    let mut sink = ChainSink::open(&config, None, false).await.unwrap();
    let events = sink.on_batch(&batch(1, &[(BTC, 100, 1_000)]), 0).await;
    let [
        SinkEvent::TxPlanned {
            batches,
            ids,
            publish_times,
            fee,
            calldata_bytes,
            gas_estimate,
        },
    ] = &events[..]
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        (batches, ids, publish_times),
        (&vec![1], &vec![BTC], &vec![1_000])
    );
    assert_eq!(fee.as_deref(), Some("7"));
    assert!(*calldata_bytes > 320);
    assert!(gas_estimate.is_some_and(|g| g > 21_000));
    // Send mode, but replay: still only planned.
    let send = chain_config(&[&anvil.url], contract, ChainMode::Send, KEY_1);
    let mut replay = ChainSink::open(&send, None, true).await.unwrap();
    let events = replay.on_batch(&batch(1, &[(BTC, 100, 1_000)]), 0).await;
    assert!(matches!(&events[..], [SinkEvent::TxPlanned { .. }]));
    assert_eq!(nonce(&anvil.url, KEY_1).await, 0);
    assert!(price_on_chain(&anvil.url, contract, BTC).await.is_none());
}

/// A sink on an anvil that mines nothing by itself, with one push sent at time 0: the node, the
/// contract, the sink, and the sent transaction's hash and max fee.
async fn held_back_push() -> (Anvil, Address, ChainSink, String, u128) {
    let anvil = Anvil::start(&["--no-mining"]);
    // Deploy needs a block: mine it by hand.
    let contract = deploy_without_automine(&anvil.url).await;
    let config = chain_config(&[&anvil.url], contract, ChainMode::Send, KEY_1);
    let mut sink = ChainSink::open(&config, None, false).await.unwrap();
    let events = sink.on_batch(&batch(1, &[(BTC, 100, 1_000)]), 0).await;
    let [
        SinkEvent::TxSubmitted {
            hash,
            max_fee_per_gas,
            ..
        },
    ] = &events[..]
    else {
        panic!("{events:?}")
    };
    let (hash, fee) = (hash.clone(), max_fee_per_gas.parse().unwrap());
    (anvil, contract, sink, hash, fee)
}

#[tokio::test]
async fn a_held_back_transaction_is_replaced_with_higher_fees() {
    let (anvil, contract, mut sink, first, old) = held_back_push().await;
    // Within the receipt timeout: nothing. After it: replaced, same nonce, fees x1.1.
    assert!(sink.on_tick(500).await.is_empty());
    let events = sink.on_tick(1_000).await;
    let [
        SinkEvent::TxReplaced {
            hash: second,
            replaces,
            nonce: 0,
            max_fee_per_gas,
            ..
        },
    ] = &events[..]
    else {
        panic!("{events:?}")
    };
    assert_eq!(replaces, &first);
    let new: u128 = max_fee_per_gas.parse().unwrap();
    assert!(new * 10 >= old * 11, "{old} -> {new}");
    mine(&anvil.url).await;
    let mut now = 1_000;
    let SinkEvent::TxConfirmed { hash, .. } = tick_until(&mut sink, &mut now, is_confirmed).await
    else {
        unreachable!()
    };
    assert_eq!(&hash, second);
    assert_eq!(balance(&anvil.url, contract).await, U256::from(FEE));
    assert_eq!(nonce(&anvil.url, KEY_1).await, 1);
}

/// On a chain that mines nothing, the keeper raises its fees ×1.1 per receipt timeout until the
/// next step would pass ×5 the fresh price, then waits at that nonce instead of paying more; the
/// last replacement is what gets mined.
#[tokio::test]
async fn replacements_stop_at_five_times_the_fresh_fee() {
    let (anvil, contract, mut sink, _, fresh) = held_back_push().await;
    // Nothing is mined, so the base fee, and the fresh price, stay what they were.
    let mut fees = vec![fresh];
    let mut last_hash = None;
    let mut quiet_ticks = 0;
    let mut now = 0;
    while quiet_ticks < 5 {
        now += 1_000;
        let events = sink.on_tick(now).await;
        match &events[..] {
            [] => quiet_ticks += 1,
            [
                SinkEvent::TxReplaced {
                    hash,
                    nonce: 0,
                    max_fee_per_gas,
                    ..
                },
            ] => {
                assert_eq!(quiet_ticks, 0, "a replacement after waiting: {events:?}");
                fees.push(max_fee_per_gas.parse().unwrap());
                last_hash = Some(hash.clone());
            }
            other => panic!("{other:?}"),
        }
        assert!(now < 60_000, "replacements never stopped: {fees:?}");
    }
    // ×1.1 each (rounded up), and the ceiling is ×5 the fresh price.
    for pair in fees.windows(2) {
        assert!(pair[1] * 10 >= pair[0] * 11, "{fees:?}");
    }
    let top = *fees.last().unwrap();
    assert!(top <= fresh * 5, "{top} above ×5 of {fresh}: {fees:?}");
    assert!(
        top.saturating_mul(11).div_ceil(10) > fresh * 5,
        "one more step would still have fitted under ×5: {fees:?}"
    );
    assert!(fees.len() >= 10, "{fees:?}");
    mine(&anvil.url).await;
    let SinkEvent::TxConfirmed { hash, .. } = tick_until(&mut sink, &mut now, is_confirmed).await
    else {
        unreachable!()
    };
    assert_eq!(Some(hash), last_hash);
    assert_eq!(balance(&anvil.url, contract).await, U256::from(FEE));
    assert_eq!(nonce(&anvil.url, KEY_1).await, 1);
}

#[tokio::test]
async fn a_restart_between_send_and_receipt_pays_once() {
    let anvil = Anvil::start(&["--no-mining"]);
    let contract = deploy_without_automine(&anvil.url).await;
    let config = chain_config(&[&anvil.url], contract, ChainMode::Send, KEY_1);
    let dir = tempfile::tempdir().unwrap();
    let b = batch(1, &[(BTC, 100, 1_000)]);
    {
        let tree = ChainSink::open_store(dir.path()).unwrap();
        let mut sink = ChainSink::open(&config, Some(tree), false).await.unwrap();
        let events = sink.on_batch(&b, 0).await;
        assert!(matches!(&events[..], [SinkEvent::TxSubmitted { .. }]));
        // Killed here: no receipt yet.
    }
    // Restarted with the transaction still pending: nothing new is sent for the same batch.
    {
        let tree = ChainSink::open_store(dir.path()).unwrap();
        let mut sink = ChainSink::open(&config, Some(tree), false).await.unwrap();
        assert!(sink.reconcile(0).await.is_empty());
        assert!(sink.state().in_flight.is_some());
        let events = sink.on_batch(&b, 10).await;
        assert!(
            matches!(
                &events[..],
                [SinkEvent::TxSkipped {
                    reason: SkipReason::AlreadyPushed,
                    ..
                }]
            ),
            "{events:?}"
        );
    }
    mine(&anvil.url).await;
    // Restarted after it was mined: reconciled from the receipt, then the same batch skipped.
    let tree = ChainSink::open_store(dir.path()).unwrap();
    let mut sink = ChainSink::open(&config, Some(tree), false).await.unwrap();
    let events = sink.reconcile(0).await;
    assert!(
        matches!(&events[..], [SinkEvent::TxConfirmed { .. }]),
        "{events:?}"
    );
    let events = sink.on_batch(&b, 10).await;
    assert!(
        matches!(&events[..], [SinkEvent::TxSkipped { .. }]),
        "{events:?}"
    );
    mine(&anvil.url).await;
    assert_eq!(nonce(&anvil.url, KEY_1).await, 1);
    assert_eq!(balance(&anvil.url, contract).await, U256::from(FEE));
}

#[tokio::test]
async fn a_dead_first_endpoint_fails_over_to_the_next() {
    let anvil = Anvil::start(&[]);
    let contract = deploy_mock_pyth(&anvil.url, 60, FEE).await;
    // A port nothing listens on: bind one, then free it.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let config = chain_config(&[&dead, &anvil.url], contract, ChainMode::Send, KEY_1);
    let mut sink = ChainSink::open(&config, None, false).await.unwrap();
    let events = sink.on_batch(&batch(1, &[(BTC, 100, 1_000)]), 0).await;
    assert!(
        matches!(&events[..], [SinkEvent::TxSubmitted { .. }]),
        "{events:?}"
    );
    let mut now = 0;
    tick_until(&mut sink, &mut now, is_confirmed).await;
    assert_eq!(
        price_on_chain(&anvil.url, contract, BTC)
            .await
            .unwrap()
            .price,
        100
    );

    let client = ChainClient::connect(&[dead.clone(), anvil.url.clone()])
        .await
        .unwrap();
    let round = Observer::new(&client, contract.0.0, vec![BTC])
        .read_round()
        .await
        .unwrap();
    assert!(round.reads[0].price == Some(100));
    assert_eq!(
        client.current_endpoint(),
        format!("http://127.0.0.1:{}", anvil.port)
    );
    // Every endpoint down: a clear error.
    let client = ChainClient::connect(&[dead]).await.unwrap();
    let err = Observer::new(&client, contract.0.0, vec![BTC])
        .read_round()
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("no RPC endpoint reachable"),
        "{err}"
    );
}

#[tokio::test]
async fn insufficient_funds_is_a_clear_error_without_retries() {
    let anvil = Anvil::start(&[]);
    let contract = deploy_mock_pyth(&anvil.url, 60, FEE).await;
    let broke = "0x0000000000000000000000000000000000000000000000000000000000000001";
    let config = chain_config(&[&anvil.url], contract, ChainMode::Send, broke);
    let mut sink = ChainSink::open(&config, None, false).await.unwrap();
    let events = sink.on_batch(&batch(1, &[(BTC, 100, 1_000)]), 0).await;
    let [SinkEvent::TxFailed { reason, .. }] = &events[..] else {
        panic!("{events:?}")
    };
    assert!(reason.contains("insufficient funds"), "{reason}");
    assert!(!reason.contains(&broke[2..]), "the key leaked: {reason}");
    // No busy loop: nothing is retried on its own.
    assert!(sink.on_tick(10_000).await.is_empty());
    assert_eq!(nonce(&anvil.url, broke).await, 0);
    assert!(matches!(
        sink.check_balance().await,
        Some(SinkEvent::LowBalance { .. })
    ));
    // anvil's account 0 is unrelated.
    let _ = KEY_0;
}

#[tokio::test]
async fn above_the_gas_cap_it_waits_and_alerts() {
    let anvil = Anvil::start(&["--base-fee", "50000000000"]);
    let contract = deploy_mock_pyth(&anvil.url, 60, FEE).await;
    let mut config = chain_config(&[&anvil.url], contract, ChainMode::Send, KEY_1);
    config.gas_cap_gwei = 10;
    let mut sink = ChainSink::open(&config, None, false).await.unwrap();
    let events = sink.on_batch(&batch(1, &[(BTC, 100, 1_000)]), 0).await;
    let [SinkEvent::GasCapExceeded { fresh, cap }] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(cap, "10000000000");
    assert!(fresh.parse::<u128>().unwrap() > 50_000_000_000);
    // Still waiting on the next tick, nothing sent, and no second alert for the same wait.
    assert!(sink.on_tick(1_000).await.is_empty());
    assert_eq!(nonce(&anvil.url, KEY_1).await, 0);
    assert!(sink.state().queued.is_some());
}

#[tokio::test]
async fn hermes_update_data_is_fetched_fresh_for_exactly_the_batch() {
    use axum::extract::RawQuery;
    use std::sync::{Arc, Mutex};

    let anvil = Anvil::start(&[]);
    let contract = deploy_mock_pyth(&anvil.url, 60, FEE).await;
    // A stand-in Hermes answering with MockPyth elements for the ids asked.
    let queries = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = queries.clone();
    let app = axum::Router::new().route(
        "/v2/updates/price/latest",
        axum::routing::get(move |RawQuery(q): RawQuery| {
            let seen = seen.clone();
            async move {
                let q = q.unwrap_or_default();
                seen.lock().unwrap().push(q.clone());
                let data: Vec<String> = q
                    .split('&')
                    .filter_map(|kv| kv.strip_prefix("ids[]=").or(kv.strip_prefix("ids%5B%5D=")))
                    .map(|id| {
                        let id: FeedId = id.parse().unwrap();
                        hex::encode(update(id, 555, 2_000).encode())
                    })
                    .collect();
                axum::Json(serde_json::json!({"binary": {"encoding": "hex", "data": data}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let full = Config::load(None, &[]).unwrap();
    let mut hermes = full.hermes.clone();
    hermes.base_url = format!("http://{addr}");
    let api =
        sluice::net::http::Api::new(sluice::sources::hermes::provider(&hermes), &full.http, None)
            .unwrap();

    let mut config = chain_config(&[&anvil.url], contract, ChainMode::Send, KEY_1);
    config.update_data = UpdateDataSource::Hermes;
    let mut sink = ChainSink::open(&config, None, false)
        .await
        .unwrap()
        .with_hermes(api);
    let events = sink.on_batch(&batch(1, &[(BTC, 100, 1_000)]), 0).await;
    assert!(
        matches!(&events[..], [SinkEvent::TxSubmitted { fee, .. }] if fee == "7"),
        "{events:?}"
    );
    let mut now = 0;
    tick_until(&mut sink, &mut now, is_confirmed).await;
    let btc = price_on_chain(&anvil.url, contract, BTC).await.unwrap();
    assert_eq!((btc.price, btc.publishTime), (555, U256::from(2_000)));
    let queries = queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 1);
    assert!(queries[0].contains(&BTC.to_string()) && !queries[0].contains(&ETH.to_string()));
}

#[tokio::test]
async fn two_keepers_pushing_the_same_feeds_pay_the_fee_once() {
    let anvil = Anvil::start(&["--no-mining"]);
    let contract = deploy_without_automine(&anvil.url).await;
    let a = chain_config(&[&anvil.url], contract, ChainMode::Send, KEY_1);
    let b = chain_config(&[&anvil.url], contract, ChainMode::Send, KEY_2);
    let mut first = ChainSink::open(&a, None, false).await.unwrap();
    let mut second = ChainSink::open(&b, None, false).await.unwrap();
    let same = batch(1, &[(BTC, 100, 1_000)]);
    // The first sends; the second simulates against the pending state (anvil, like most
    // nodes, includes the pool) and its guard stops it before anything is signed.
    assert!(matches!(
        &first.on_batch(&same, 0).await[..],
        [SinkEvent::TxSubmitted { .. }]
    ));
    let events = second.on_batch(&same, 0).await;
    assert_eq!(
        events,
        [SinkEvent::TxSkipped {
            batches: vec![1],
            reason: SkipReason::NoFreshUpdate
        }]
    );
    mine(&anvil.url).await;
    let mut now = 0;
    let settled = tick_until_settled(&mut first, &mut now).await;
    assert!(
        matches!(settled, SinkEvent::TxConfirmed { .. }),
        "{settled:?}"
    );
    // A newer update from the second keeper goes through; the first then skips it.
    let newer = batch(2, &[(BTC, 101, 1_001)]);
    assert!(matches!(
        &second.on_batch(&newer, now).await[..],
        [SinkEvent::TxSubmitted { .. }]
    ));
    assert_eq!(
        first.on_batch(&newer, now).await,
        [SinkEvent::TxSkipped {
            batches: vec![2],
            reason: SkipReason::NoFreshUpdate
        }]
    );
    mine(&anvil.url).await;
    let settled = tick_until_settled(&mut second, &mut now).await;
    assert!(
        matches!(settled, SinkEvent::TxConfirmed { .. }),
        "{settled:?}"
    );
    assert_eq!(balance(&anvil.url, contract).await, U256::from(2 * FEE));
    assert_eq!(
        nonce(&anvil.url, KEY_1).await + nonce(&anvil.url, KEY_2).await,
        2
    );
}

/// Ticks until the transaction in flight is confirmed or failed.
async fn tick_until_settled(sink: &mut ChainSink, now: &mut u64) -> SinkEvent {
    for _ in 0..100 {
        *now += 50;
        if let Some(e) = sink.on_tick(*now).await.into_iter().find(|e| {
            matches!(
                e,
                SinkEvent::TxConfirmed { .. } | SinkEvent::TxFailed { .. }
            )
        }) {
            return e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("never settled");
}

#[tokio::test]
async fn the_observer_source_emits_chain_read_envelopes_the_parser_reads() {
    let (anvil, contract, config) = send_chain().await;
    let mut sink = ChainSink::open(&config, None, false).await.unwrap();
    sink.on_batch(&batch(1, &[(BTC, 100, 1_000)]), 0).await;
    let mut now = 0;
    tick_until(&mut sink, &mut now, is_confirmed).await;

    let (_, records, targets) = chain_source_round(&anvil.url, contract).await;
    assert_eq!(targets.len(), 2, "{records:?}");
    assert_eq!(
        targets[0].price.map(|p| (p.price, p.publish_time)),
        Some((100, 1_000))
    );
    assert_eq!(targets[1].price, None);
    // The sink takes chain reads as targets: nothing older is pushed again. A keeper that did
    // not push BTC itself (no store) learns it from the read alone.
    let mut other = ChainSink::open(&config, None, false).await.unwrap();
    assert_eq!(other.keeper().known(&BTC), None);
    for target in &targets {
        other.on_target(target);
    }
    assert_eq!(other.keeper().known(&BTC), Some(1_000));
    assert_eq!(other.keeper().known(&ETH), None, "not found is unknown");
    let nonce_before = nonce(&anvil.url, KEY_1).await;
    for (n, t) in [(2, 999), (3, 1_000)] {
        let events = other.on_batch(&batch(n, &[(BTC, 100, t)]), now).await;
        assert_eq!(
            events,
            [SinkEvent::TxSkipped {
                batches: vec![n],
                reason: SkipReason::AlreadyPushed
            }],
            "publish time {t}: skipped by the keeper, before any simulation"
        );
    }
    // A newer one goes through.
    let events = other.on_batch(&batch(4, &[(BTC, 101, 1_001)]), now).await;
    assert!(
        matches!(&events[..], [SinkEvent::TxSubmitted { ids, .. }] if ids == &[BTC]),
        "{events:?}"
    );
    assert_eq!(nonce(&anvil.url, KEY_1).await, nonce_before + 1);
}

/// A feed never pushed reads as `PriceFeedNotFound` on MockPyth; the chain source's envelope
/// parses to a target without a price, and the debounce operator, given that target and then
/// a source price, puts the feed in a push batch as `initial`. A feed found on chain with the
/// same price is not `initial` (at most it joins the batch early).
#[test]
fn a_feed_not_found_on_chain_is_pushed_as_initial() {
    use std::sync::{Arc, Mutex};

    use sluice::config::UnlistedFeeds;
    use sluice::dataflow::debounce::{DebounceTiming, FeedTarget, FeedTick, debounce};
    use sluice::ops::debounce::{FeedRules, Quote};
    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::operators::{Input, Inspect, Probe};
    use timely::dataflow::{InputHandle, ProbeHandle};

    const PRICE: i64 = 200_000_000;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let anvil = Anvil::start(&[]);
    let contract = rt.block_on(deploy_mock_pyth(&anvil.url, 60, FEE));
    // ETH is on chain; BTC never was.
    rt.block_on(update_directly(
        &anvil.url,
        contract,
        update(ETH, PRICE, 1_000),
    ));
    // One round of the chain source, as a live run reads it.
    let (env, records, targets) = rt.block_on(chain_source_round(&anvil.url, contract));
    assert!(
        std::str::from_utf8(&env.raw)
            .unwrap()
            .contains("PriceFeedNotFound")
    );
    assert_eq!(targets.len(), 2, "{records:?}");
    assert_eq!(targets[0].feed, BTC);
    assert_eq!(targets[0].price, None, "not found: no price");
    assert!(targets[1].price.is_some());
    // What the dataflow hands the debounce (as `dataflow::graph` maps a chain target).
    let reads: Vec<FeedTarget> = targets
        .iter()
        .map(|t| FeedTarget {
            feed: t.feed,
            price: t.price.map(Quote::from),
        })
        .collect();

    let mut config = Config::load(None, &[]).unwrap().debounce;
    config.unlisted_feeds = UnlistedFeeds::Defaults;
    config.feeds.clear();
    let rules = Arc::new(FeedRules::from_config(&config));
    let timing = DebounceTiming {
        debounce_ms: config.debounce_ms,
        receipt_timeout_ms: config.receipt_timeout_ms,
        max_staleness_ms: config.max_staleness_secs * 1000,
        tick_ms: 10,
    };
    // The read at 1 000 000 ms, the source prices (publish time 1 001 s) a second later.
    let (read_at, price_at, end) = (1_000_000u64, 1_001_000u64, 2_000_000u64);
    let tick = |feed: FeedId| FeedTick {
        feed,
        quote: Quote {
            price: PRICE,
            conf: 10,
            expo: -8,
            publish_time: 1_001,
        },
        update_data: None,
    };
    let ticks = vec![tick(BTC), tick(ETH)];
    let out: Arc<Mutex<Vec<PushBatch>>> = Arc::default();
    let sink = Arc::clone(&out);
    timely::execute(timely::Config::thread(), move |worker| {
        let mut prices: InputHandle<u64, CapacityContainerBuilder<Vec<FeedTick>>> =
            InputHandle::new();
        let mut chain: InputHandle<u64, CapacityContainerBuilder<Vec<FeedTarget>>> =
            InputHandle::new();
        let probe = ProbeHandle::new();
        let sink = Arc::clone(&sink);
        let rules = Arc::clone(&rules);
        worker.dataflow::<u64, _, _>(|scope| {
            debounce(
                scope.input_from(&mut prices),
                scope.input_from(&mut chain),
                rules,
                timing,
            )
            .inspect(move |b| sink.lock().unwrap().push(b.clone()))
            .probe_with(&probe);
        });
        prices.advance_to(read_at);
        chain.advance_to(read_at);
        for read in &reads {
            chain.send(read.clone());
        }
        prices.advance_to(price_at);
        chain.advance_to(price_at);
        worker.step_while(|| probe.less_than(&price_at));
        for t in &ticks {
            prices.send(t.clone());
        }
        prices.advance_to(end);
        chain.advance_to(end);
        worker.step_while(|| probe.less_than(&end));
    })
    .unwrap();
    let batches = out.lock().unwrap().clone();
    assert_eq!(batches.len(), 1, "{batches:#?}");
    let btc = batches[0].feeds.iter().find(|f| f.id == BTC).unwrap();
    assert_eq!(btc.reason, Reason::Initial);
    assert_eq!((btc.price, btc.publish_time), (PRICE, 1_001));
    let line = serde_json::to_value(&batches[0]).unwrap();
    assert!(
        line["feeds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == BTC.to_string() && f["reason"] == "initial"),
        "{line}"
    );
    assert!(
        batches[0]
            .feeds
            .iter()
            .all(|f| f.id != ETH || f.reason != Reason::Initial),
        "{batches:#?}"
    );
}

/// `sluice run` in send mode against the venue (Hermes, `update_data = "stream"`) and anvil
/// (observer and sink): every feed ends up holding the price and publish time of its last
/// push batch in the journal (or of the forced push that superseded it), the fee was paid for
/// exactly the confirmed transactions, and no publish time was sent twice.
#[test]
fn a_live_run_pushes_its_batches_to_the_chain() {
    use std::collections::{BTreeMap, BTreeSet};

    use sluice::config::Pipeline;
    use sluice::dataflow::graph::Wiring;
    use sluice::dataflow::run::RecordingInput;
    use sluice::live::LiveOptions;

    // Behind the wall clock, so that at 4x speed the publish times stay in the past (future
    // ones are refused) and younger than the 60 s staleness limit.
    let (rt, anvil, contract, dir, venue) = venue_rig(1, 50_000, 4.0);

    let mut config = Config::load(None, &[]).unwrap();
    config.hermes.base_url = venue.hermes_url();
    config.chain = chain_config(&[&anvil.url], contract, ChainMode::Send, KEY_1);
    config.chain.poll_interval_ms = 300;
    // A heartbeat every 5 s of publish time: a push batch about every 1.25 s of wall time.
    config.debounce.force_update_interval_ms = 5_000;
    let pipeline = Pipeline::parse(
        r#"name = "keeper"
sources = ["hermes", "chain"]
computations = ["debounce"]
sinks = ["journal", "chain"]"#,
        "test",
    )
    .unwrap();
    let wiring = Wiring::new(&config, pipeline.clone()).unwrap();
    let out = dir.path().join("out");
    let recorded = dir.path().join("live.rec");
    let mut options = LiveOptions::new(out.clone());
    options.record = Some(recorded.clone());
    options.serve = false;
    options.signals = false;
    let stop = options.stop.clone();
    let force = options.force_push.clone();
    let live_config = config.clone();
    let run =
        std::thread::spawn(move || sluice::live::run(&live_config, wiring, options).map(|_| ()));
    std::thread::sleep(std::time::Duration::from_secs(6));
    // The operator's SIGUSR1, midway.
    force.notify_one();
    std::thread::sleep(std::time::Duration::from_secs(6));
    stop.cancel();
    run.join().unwrap().unwrap();

    let journal = read_jsonl(&out.join("journal.jsonl"));
    let keeper = read_jsonl(&out.join("keeper.jsonl"));
    let batches: Vec<&serde_json::Value> =
        journal.iter().filter(|v| kind(v) == "push_batch").collect();
    assert!(
        batches.len() >= 2,
        "push batches: {batches:#?}\nkeeper: {keeper:#?}\njournal: {}",
        journal.len()
    );
    assert!(keeper.iter().all(|v| kind(v) != "tx_failed"), "{keeper:#?}");
    // What the keeper did is in the journal too, as the chain source's observations.
    let journaled =
        |k: &str| -> Vec<&serde_json::Value> { journal.iter().filter(|v| kind(v) == k).collect() };
    let submitted_lines = journaled("tx_submitted");
    let confirmed_lines = journaled("tx_confirmed");
    assert!(
        confirmed_lines.len() >= 2,
        "journal: {:#?}",
        journal
            .iter()
            .filter(|v| kind(v).starts_with("tx_"))
            .collect::<Vec<_>>()
    );
    for line in &confirmed_lines {
        assert!(line["t"].as_u64().is_some(), "{line}");
        assert!(
            submitted_lines
                .iter()
                .any(|s| s["batches"] == line["batches"]),
            "confirmed without a journaled submission: {line}"
        );
        // The same event as in keeper.jsonl (which carries its own wall-clock `t`).
        assert!(
            keeper
                .iter()
                .any(|k| kind(k) == "tx_confirmed" && k["hash"] == line["hash"]),
            "{line}"
        );
    }
    // Every confirmed push of the debounce's batches (not only the forced one) is journaled.
    let journaled_batches: BTreeSet<u64> = confirmed_lines
        .iter()
        .flat_map(|v| v["batches"].as_array().unwrap().iter())
        .filter_map(|b| b.as_u64())
        .filter(|b| *b != 0)
        .collect();
    assert!(
        journaled_batches
            .iter()
            .all(|b| batches.iter().any(|p| p["batch"].as_u64() == Some(*b))),
        "{journaled_batches:?}"
    );
    assert!(!journaled_batches.is_empty());
    assert!(journal.iter().all(|v| kind(v) != "invalid_input"));
    // Never the same (feed, publish time) twice.
    let mut sent = BTreeSet::new();
    let mut fee_of = BTreeMap::new();
    for v in keeper.iter().filter(|v| kind(v) == "tx_submitted") {
        fee_of.insert(
            v["hash"].as_str().unwrap().to_owned(),
            v["fee"].as_str().unwrap().parse::<u64>().unwrap(),
        );
        for (id, t) in sent_feeds(v) {
            assert!(sent.insert((id.clone(), t)), "{id} {t} sent twice");
        }
    }
    let confirmed: Vec<&serde_json::Value> = keeper
        .iter()
        .filter(|v| kind(v) == "tx_confirmed")
        .collect();
    // The forced push happened: sent, or skipped when nothing was newer.
    assert!(
        keeper
            .iter()
            .any(|v| v["batches"] == serde_json::json!([0])),
        "{keeper:#?}"
    );
    eprintln!(
        "{} push batches, {} transactions confirmed",
        batches.len(),
        confirmed.len()
    );
    assert!(confirmed.len() >= 2, "{keeper:#?}");
    // The fee: exactly the confirmed transactions' (a replacement carries its original's).
    let paid: u64 = confirmed
        .iter()
        .map(|v| {
            let batches = &v["batches"];
            keeper
                .iter()
                .find(|s| kind(s) == "tx_submitted" && &s["batches"] == batches)
                .map(|s| fee_of[s["hash"].as_str().unwrap()])
                .unwrap()
        })
        .sum();
    let on_chain_fees = rt.block_on(balance(&anvil.url, contract));
    assert_eq!(on_chain_fees, U256::from(paid));
    // Every feed holds the price and publish time of its last push batch in the journal, or,
    // when the chain holds a newer one, that push batch was superseded by the keeper's forced
    // push (batch 0, not a journaled push batch), whose price is the one its confirmed
    // transaction carried.
    let mut last: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for b in &batches {
        for f in b["feeds"].as_array().unwrap() {
            last.insert(
                f["id"].as_str().unwrap().to_owned(),
                (
                    f["price"].as_i64().unwrap(),
                    f["publish_time"].as_i64().unwrap(),
                ),
            );
        }
    }
    assert!(!last.is_empty());
    let chain = provider(&anvil.url);
    for (id, (price, pt)) in &last {
        let feed: FeedId = id.parse().unwrap();
        let on_chain = rt
            .block_on(price_on_chain(&anvil.url, contract, feed))
            .unwrap_or_else(|| panic!("{id} never reached the chain"));
        let chain_pt = i64::try_from(on_chain.publishTime).unwrap();
        assert!(
            chain_pt >= *pt,
            "{id}: the chain holds {chain_pt}, its last push batch {pt}: {keeper:#?}"
        );
        if chain_pt == *pt {
            assert_eq!(on_chain.price, *price, "{id} at {pt}");
            continue;
        }
        // Superseded: a confirmed transaction carrying this feed at the chain's publish time
        // pushed a forced batch, and carried the chain's price.
        let carrier = confirmed
            .iter()
            .find_map(|c| {
                let submitted = keeper.iter().find(|s| {
                    kind(s) == "tx_submitted"
                        && s["batches"] == c["batches"]
                        && sent_feeds(s).iter().any(|(i, t)| i == id && *t == chain_pt)
                })?;
                Some((c, submitted))
            })
            .unwrap_or_else(|| {
                panic!("{id}: on chain at {chain_pt}, pushed by no confirmed transaction")
            });
        assert!(
            carrier.1["batches"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(0)),
            "{id} superseded by a transaction without the forced batch: {}",
            carrier.1
        );
        let tx: serde_json::Value = rt
            .block_on(chain.raw_request(
                "eth_getTransactionByHash".into(),
                (carrier.0["hash"].clone(),),
            ))
            .unwrap();
        let input = hex::decode(tx["input"].as_str().unwrap().trim_start_matches("0x")).unwrap();
        use alloy::sol_types::SolCall;
        let call = IPyth::updatePriceFeedsIfNecessaryCall::abi_decode(&input).unwrap();
        let sent = call
            .updateData
            .iter()
            .filter_map(|d| MockUpdate::decode(d))
            .find(|u| u.id == feed.0 && u.publish_time == chain_pt as u64)
            .unwrap_or_else(|| panic!("{id}: no update data at {chain_pt} in {}", tx["hash"]));
        assert_eq!(on_chain.price, sent.price, "{id} at {chain_pt}");
    }
    rt.block_on(venue.shutdown());

    // Replaying the run, in send mode with the chain sink: the same journal, nothing sent,
    // and every batch only planned.
    let nonce_before = rt.block_on(nonce(&anvil.url, KEY_1));
    let replayed = dir.path().join("replay");
    sluice::dataflow::run::replay(
        &config,
        Wiring::new(&config, pipeline).unwrap(),
        sluice::dataflow::run::ReplayOptions {
            input: RecordingInput::File(recorded),
            out_dir: replayed.clone(),
            cluster: sluice::dataflow::run::Cluster::default(),
            progress: None,
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(replayed.join("journal.jsonl")).unwrap(),
        std::fs::read_to_string(out.join("journal.jsonl")).unwrap()
    );
    // Replay sent nothing: the same nonce, the same fees held by the contract, and no
    // submission in its keeper record (its journaled submissions are the live run's).
    assert_eq!(rt.block_on(nonce(&anvil.url, KEY_1)), nonce_before);
    assert_eq!(rt.block_on(balance(&anvil.url, contract)), U256::from(paid));
    let plans = read_jsonl(&replayed.join("keeper.jsonl"));
    assert_eq!(plans.len(), batches.len(), "{plans:#?}");
    // What is already on chain stops in simulation; the rest is planned.
    assert!(
        plans.iter().all(|p| kind(p) == "tx_planned"
            || (kind(p) == "tx_skipped" && p["reason"] == "no_fresh_update")),
        "{plans:#?}"
    );
}

/// What one keeper paid on anvil: transactions confirmed, gas used, and the total fee (gas ×
/// effective gas price + update fees, from the receipts' `fee_paid`), in wei.
#[derive(Debug, Default)]
struct Paid {
    transactions: u64,
    gas: u64,
    total_fee: u128,
}

/// Sends `batches` one by one through a fresh sink to a fresh anvil and MockPyth (base fee 0,
/// so every transaction pays the node's 1 gwei tip per gas, whatever the number of blocks
/// before it), each confirmed before the next. Returns what was paid, the update fees the
/// contract collected, and each submission's latency from `on_batch` to accepted by anvil.
fn send_all(
    rt: &tokio::runtime::Runtime,
    batches: &[PushBatch],
) -> (Paid, U256, Vec<std::time::Duration>) {
    let anvil = Anvil::start(&["--base-fee", "0"]);
    let contract = rt.block_on(deploy_mock_pyth(&anvil.url, 60, FEE));
    let config = chain_config(&[&anvil.url], contract, ChainMode::Send, KEY_1);
    let (paid, latencies) = rt.block_on(async {
        let mut sink = ChainSink::open(&config, None, false).await.unwrap();
        let mut paid = Paid::default();
        let mut latencies = Vec::new();
        let mut now = 0;
        for batch in batches {
            now += 1_000;
            let started = std::time::Instant::now();
            let events = sink.on_batch(batch, now).await;
            if matches!(&events[..], [SinkEvent::TxSubmitted { .. }]) {
                latencies.push(started.elapsed());
                let SinkEvent::TxConfirmed {
                    gas_used, fee_paid, ..
                } = tick_until(&mut sink, &mut now, is_confirmed).await
                else {
                    unreachable!()
                };
                paid.transactions += 1;
                paid.gas += gas_used;
                paid.total_fee += fee_paid.parse::<u128>().unwrap();
            }
        }
        (paid, latencies)
    });
    let fees = rt.block_on(balance(&anvil.url, contract));
    (paid, fees, latencies)
}

/// Sends `batches` the naive way, to a fresh anvil and MockPyth like [`send_all`]'s: each one
/// `updatePriceFeeds` of all its update data, whatever is already on chain (so every update
/// is paid for), at the gas price the sink pays there (1 gwei), each mined before the next.
fn send_naive(rt: &tokio::runtime::Runtime, batches: &[PushBatch]) -> (Paid, U256) {
    use alloy::network::TransactionBuilder;
    use alloy::rpc::types::TransactionRequest;
    use alloy::sol_types::SolCall;

    const GWEI: u128 = 1_000_000_000;
    let anvil = Anvil::start(&["--base-fee", "0"]);
    let contract = rt.block_on(deploy_mock_pyth(&anvil.url, 60, FEE));
    let paid = rt.block_on(async {
        let wallet = wallet_provider(&anvil.url, KEY_1);
        let mut paid = Paid::default();
        for batch in batches {
            let data: Vec<Bytes> = batch
                .update_data
                .iter()
                .map(|h| Bytes::from(hex::decode(h).unwrap()))
                .collect();
            let value = U256::from(data.len() as u64 * FEE);
            let call = IPyth::updatePriceFeedsCall { updateData: data };
            let tx = TransactionRequest::default()
                .with_to(contract)
                .with_input(call.abi_encode())
                .with_value(value)
                .with_max_fee_per_gas(GWEI)
                .with_max_priority_fee_per_gas(GWEI);
            let hash = *wallet.send_transaction(tx).await.unwrap().tx_hash();
            // anvil mines on send; no need to wait for the next poll of a pending transaction.
            let receipt = loop {
                if let Some(r) = wallet.get_transaction_receipt(hash).await.unwrap() {
                    break r;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            };
            assert!(receipt.status(), "a naive push reverted");
            assert_eq!(receipt.effective_gas_price, GWEI);
            paid.transactions += 1;
            paid.gas += receipt.gas_used;
            paid.total_fee += u128::from(receipt.gas_used) * receipt.effective_gas_price
                + u128::try_from(value).unwrap();
        }
        paid
    });
    let fees = rt.block_on(balance(&anvil.url, contract));
    (paid, fees)
}

/// The saving the debounce buys, and the sink's latency: a synthetic recording replayed
/// through the debounce, its push batches sent to anvil one by one, against a naive keeper
/// that pushes every Hermes update of the same feeds (one `updatePriceFeeds` transaction per
/// stream event, every update paid for), sent to a node of its own. Both pay gas at the same
/// price (anvil with base fee 0: the 1 gwei tip), so the totals compare transactions, not fee
/// markets.
///
/// `SLUICE_KEEPER_BENCH_MINUTES` sets the recording's length and sends every naive
/// transaction; without it (3 minutes) an evenly spaced sample of the naive transactions is
/// sent, and the naive gas and total fee are extrapolated from it (and labelled so).
#[test]
fn debounced_pushes_cost_less_than_pushing_every_update() {
    use std::collections::BTreeSet;

    use sluice::config::Pipeline;
    use sluice::dataflow::graph::Wiring;
    use sluice::dataflow::run::{Cluster, RecordingInput, ReplayOptions, replay};
    use sluice::model::parse::{ParseContext, parse_envelope};
    use sluice::model::{AssetMap, Endpoint, Instrument, Record};
    use sluice::record::{Codec, Item, RecordingReader};

    /// Naive transactions sent in the default (short) run; the rest are extrapolated.
    const NAIVE_SAMPLE: usize = 40;

    let heavy: Option<u32> = std::env::var("SLUICE_KEEPER_BENCH_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok());
    let minutes = heavy.unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("synth.rec");
    let opts = sluice::synth::SynthOptions {
        minutes,
        feeds: 8,
        tokens: 5,
        faults: false,
        ..sluice::synth::SynthOptions::default()
    };
    sluice::synth::write_recording(&recording, Codec::Zstd, &opts).unwrap();
    let config = Config::load(None, &[]).unwrap();
    let feeds: BTreeSet<FeedId> = config
        .debounce
        .feeds
        .iter()
        .map(|f| f.id.parse().unwrap())
        .collect();

    // Naive: every stream event carrying any of the feeds is a transaction of all of them,
    // every update of them an update fee.
    let mut naive: Vec<PushBatch> = Vec::new();
    let mut naive_updates = 0u64;
    let mut reader = RecordingReader::open(&recording).unwrap();
    let assets = AssetMap::default();
    let ctx = ParseContext {
        assets: &assets,
        max_future_skew_ms: 5_000,
    };
    while let Some(item) = reader.next_item().unwrap() {
        let Item::Envelope(env) = item else { continue };
        if env.endpoint != Endpoint::HermesStream {
            continue;
        }
        let mut out = Vec::new();
        parse_envelope(&env, &ctx, &mut out);
        let entries: Vec<BatchEntry> = out
            .iter()
            .filter_map(|r| match r {
                Record::Price(t) => match &t.instrument {
                    Instrument::Feed(id) if feeds.contains(id) => Some(BatchEntry {
                        id: *id,
                        price: t.price.mantissa,
                        conf: t.conf,
                        expo: t.price.expo,
                        publish_time: t.publish_ms.div_euclid(1000),
                        reason: Reason::Heartbeat,
                        update_data: t.update_data.clone(),
                    }),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        if !entries.is_empty() {
            naive_updates += entries.len() as u64;
            naive.push(PushBatch::new(naive.len() as u64 + 1, entries));
        }
    }
    let naive_txs = naive.len() as u64;

    // Debounced: the replay's push batches.
    let pipeline = Pipeline::parse(
        r#"name = "bench"
sources = ["hermes", "chain"]
computations = ["debounce"]
sinks = ["journal"]"#,
        "test",
    )
    .unwrap();
    let out = dir.path().join("out");
    replay(
        &config,
        Wiring::new(&config, pipeline).unwrap(),
        ReplayOptions {
            input: RecordingInput::File(recording),
            out_dir: out.clone(),
            cluster: Cluster::default(),
            progress: None,
        },
    )
    .unwrap();
    let batches: Vec<PushBatch> = std::fs::read_to_string(out.join("journal.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""kind":"push_batch""#))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!batches.is_empty());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (debounced, fees, latencies) = send_all(&rt, &batches);
    assert_eq!(
        debounced.total_fee,
        u128::from(debounced.gas) * 1_000_000_000 + u128::try_from(fees).unwrap(),
        "total = gas × 1 gwei + update fees"
    );
    // Naive: every transaction, or an evenly spaced sample in recording order.
    let sample: Vec<PushBatch> = if heavy.is_some() || naive.len() <= NAIVE_SAMPLE {
        naive.clone()
    } else {
        (0..NAIVE_SAMPLE)
            .map(|k| naive[k * naive.len() / NAIVE_SAMPLE].clone())
            .collect()
    };
    let (sampled, sampled_fees) = send_naive(&rt, &sample);
    assert_eq!(sampled.transactions, sample.len() as u64);
    let sampled_updates: u64 = sample.iter().map(|b| b.update_data.len() as u64).sum();
    assert_eq!(sampled_fees, U256::from(sampled_updates * FEE));
    // Extrapolated to every naive transaction (exact when all were sent).
    let scale = |x: u128| x * u128::from(naive_txs) / u128::from(sampled.transactions);
    let naive_gas = scale(u128::from(sampled.gas));
    let naive_total = scale(sampled.total_fee);
    let how = if sample.len() == naive.len() {
        "all sent".to_owned()
    } else {
        format!(
            "gas and total extrapolated from {} of {naive_txs} sent",
            sample.len()
        )
    };
    let mut sorted = latencies.clone();
    sorted.sort();
    let pct = |p: usize| sorted[(sorted.len() * p / 100).min(sorted.len() - 1)];
    eprintln!(
        "keeper bench: {minutes} min, {} feeds pushed, gas at 1 gwei: \
         debounced: {} push batches -> {} transactions, gas {}, update fees {fees} wei, total fee {} wei; \
         naive: {naive_txs} transactions, {naive_updates} updates, update fees {} wei, gas {naive_gas}, total fee {naive_total} wei ({how}); \
         push_batch -> accepted by anvil p50 {:?} p99 {:?}",
        feeds.len(),
        batches.len(),
        debounced.transactions,
        debounced.gas,
        debounced.total_fee,
        naive_updates * FEE,
        pct(50),
        pct(99)
    );
    assert!(debounced.transactions > 0 && debounced.transactions < naive_txs);
    assert!(fees < U256::from(naive_updates * FEE));
    assert!(
        debounced.total_fee < naive_total,
        "{} vs {naive_total}",
        debounced.total_fee
    );
}

#[tokio::test]
async fn an_api_key_in_an_rpc_url_never_shows_in_errors() {
    // Nothing listens there; the path stands for a provider's key.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "http://127.0.0.1:{}/v2/SECRETAPIKEY",
            l.local_addr().unwrap().port()
        )
    };
    let client = ChainClient::connect(std::slice::from_ref(&dead))
        .await
        .unwrap();
    let err = Observer::new(&client, [0; 20], vec![BTC])
        .read_round()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("no RPC endpoint reachable"), "{text}");
    assert!(!text.contains("SECRETAPIKEY"), "{text}");
}

#[tokio::test]
async fn over_websocket_a_price_feed_update_log_triggers_a_read_at_once() {
    use sluice::model::{Ingest, Source};
    use sluice::sources::chain::ChainSource;
    use sluice::sources::{LiveClock, SourceRegistry};

    let anvil = Anvil::start(&[]);
    let contract = deploy_mock_pyth(&anvil.url, 60, FEE).await;
    let ws = format!("ws://127.0.0.1:{}", anvil.port);
    let clock = LiveClock::new(10, std::time::Duration::from_millis(250), None);
    let (emitter, rx, _) = clock.attach(Source::Chain);
    let client = ChainClient::connect(&[ws]).await.unwrap();
    // Polling alone would read once now, then not for a minute.
    let source = ChainSource::new(
        client,
        contract.0.0,
        vec![BTC],
        std::time::Duration::from_secs(60),
        emitter,
        SourceRegistry::default(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(source.run(stop.clone()));
    let envelopes = |n: usize| {
        let rx = &rx;
        async move {
            let mut got = Vec::new();
            for _ in 0..100 {
                got.extend(rx.try_iter().filter_map(|i| match i {
                    Ingest::Envelope(e) => Some(e),
                    Ingest::Watermark(_) => None,
                }));
                if got.len() >= n {
                    return got;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("{} envelopes, wanted {n}", got.len());
        }
    };
    let first = envelopes(1).await;
    assert!(
        std::str::from_utf8(&first[0].raw)
            .unwrap()
            .contains("PriceFeedNotFound")
    );
    // Give the subscription a moment, then update the contract.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    update_directly(&anvil.url, contract, update(BTC, 42, 1_000)).await;
    let second = envelopes(1).await;
    assert!(
        std::str::from_utf8(&second[0].raw)
            .unwrap()
            .contains(r#""price":"42""#)
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_feed_without_update_data_is_not_counted_as_pushed() {
    let (_anvil, _, config) = send_chain().await;
    let mut sink = ChainSink::open(&config, None, false).await.unwrap();
    let mut b = batch(1, &[(BTC, 100, 1_000)]);
    let without = batch(1, &[(ETH, 200, 1_000)]);
    b.feeds.extend(without.feeds); // ETH listed, but no data carries it
    let events = sink.on_batch(&b, 0).await;
    assert!(
        matches!(&events[..], [SinkEvent::TxSubmitted { ids, fee, .. }] if ids == &[BTC] && fee == "7"),
        "{events:?}"
    );
    let mut now = 0;
    tick_until(&mut sink, &mut now, is_confirmed).await;
    assert_eq!(sink.keeper().known(&ETH), None);
    assert_eq!(sink.keeper().known(&BTC), Some(1_000));
}

#[tokio::test]
async fn two_keepers_sharing_a_key_take_turns_with_the_nonce() {
    let anvil = Anvil::start(&["--no-mining"]);
    let contract = deploy_without_automine(&anvil.url).await;
    let config = chain_config(&[&anvil.url], contract, ChainMode::Send, KEY_1);
    let mut first = ChainSink::open(&config, None, false).await.unwrap();
    let mut second = ChainSink::open(&config, None, false).await.unwrap();
    let events = first.on_batch(&batch(1, &[(BTC, 100, 1_000)]), 0).await;
    assert!(
        matches!(&events[..], [SinkEvent::TxSubmitted { nonce: 0, .. }]),
        "{events:?}"
    );
    // The same update from the other keeper stops in simulation; a newer one takes the next
    // nonce instead of replacing the first keeper's transaction.
    assert!(matches!(
        &second.on_batch(&batch(1, &[(BTC, 100, 1_000)]), 0).await[..],
        [SinkEvent::TxSkipped {
            reason: SkipReason::NoFreshUpdate,
            ..
        }]
    ));
    let events = second.on_batch(&batch(2, &[(BTC, 101, 1_001)]), 0).await;
    assert!(
        matches!(&events[..], [SinkEvent::TxSubmitted { nonce: 1, .. }]),
        "{events:?}"
    );
    mine(&anvil.url).await;
    let mut now = 0;
    tick_until(&mut first, &mut now, is_confirmed).await;
    tick_until(&mut second, &mut now, is_confirmed).await;
    let btc = price_on_chain(&anvil.url, contract, BTC).await.unwrap();
    assert_eq!((btc.price, btc.publishTime), (101, U256::from(1_001)));
    assert_eq!(balance(&anvil.url, contract).await, U256::from(2 * FEE));
    assert_eq!(nonce(&anvil.url, KEY_1).await, 2);
}

/// A JSON-RPC proxy in front of anvil: `edit` sees each request body and the upstream answer
/// (`None` before it is fetched) and may answer instead: a fault or a rewritten reply.
type Edit = dyn Fn(&[u8], Option<&[u8]>) -> Option<(u16, Vec<u8>)> + Send + Sync;

async fn rpc_proxy(
    upstream: &str,
    edit: std::sync::Arc<Edit>,
) -> (String, tokio::task::JoinHandle<()>) {
    use axum::body::Bytes as Body;
    use axum::http::StatusCode;

    let upstream = upstream.to_owned();
    let app = axum::Router::new().fallback(move |body: Body| {
        let upstream = upstream.clone();
        let edit = std::sync::Arc::clone(&edit);
        async move {
            let reply = |(status, body): (u16, Vec<u8>)| {
                (
                    StatusCode::from_u16(status).unwrap(),
                    [("content-type", "application/json")],
                    body,
                )
            };
            if let Some(answer) = edit(&body, None) {
                return reply(answer);
            }
            let answer = reqwest::Client::new()
                .post(&upstream)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            reply(edit(&body, Some(&answer)).unwrap_or((200, answer.to_vec())))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, server)
}

fn calls(body: &[u8], method: &str) -> bool {
    body.windows(method.len()).any(|w| w == method.as_bytes())
}

/// The crash window between recording a signed transaction and broadcasting it: the endpoint
/// of the first run refuses the broadcast (as if the process died before it), so only the
/// store knows the transaction. The next start broadcasts the same signed bytes again: one
/// nonce, one fee.
#[tokio::test]
async fn a_transaction_stored_but_never_broadcast_is_sent_by_the_next_start() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let anvil = Anvil::start(&[]);
    let contract = deploy_mock_pyth(&anvil.url, 60, FEE).await;
    let broadcasts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&broadcasts);
    let (proxy, server) = rpc_proxy(
        &anvil.url,
        Arc::new(move |body, answer| {
            (answer.is_none() && calls(body, "eth_sendRawTransaction")).then(|| {
                counted.fetch_add(1, Ordering::SeqCst);
                (503, Vec::new())
            })
        }),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let b = batch(1, &[(BTC, 100, 1_000)]);
    {
        let config = chain_config(&[&proxy], contract, ChainMode::Send, KEY_1);
        let tree = ChainSink::open_store(dir.path()).unwrap();
        let mut sink = ChainSink::open(&config, Some(tree), false).await.unwrap();
        let events = sink.on_batch(&b, 0).await;
        assert!(
            matches!(&events[..], [SinkEvent::TxSubmitted { nonce: 0, .. }]),
            "{events:?}"
        );
        assert!(sink.state().in_flight.is_some());
    }
    assert!(broadcasts.load(Ordering::SeqCst) >= 1);
    assert_nothing_reached_the_node(&anvil.url).await;

    // Started again (the node reachable now): the stored bytes go out, and land.
    let config = chain_config(&[&anvil.url], contract, ChainMode::Send, KEY_1);
    let tree = ChainSink::open_store(dir.path()).unwrap();
    let mut sink = ChainSink::open(&config, Some(tree), false).await.unwrap();
    let stored = sink.state().in_flight.clone().unwrap();
    sink.reconcile(0).await;
    let mut now = 0;
    let SinkEvent::TxConfirmed { hash, .. } = tick_until(&mut sink, &mut now, is_confirmed).await
    else {
        unreachable!()
    };
    assert_eq!(
        hash, stored.attempts[0].hash,
        "the very transaction signed before"
    );
    let events = sink.on_batch(&b, now).await;
    assert!(
        matches!(&events[..], [SinkEvent::TxSkipped { .. }]),
        "{events:?}"
    );
    assert_eq!(nonce(&anvil.url, KEY_1).await, 1);
    assert_eq!(balance(&anvil.url, contract).await, U256::from(FEE));
    let btc = price_on_chain(&anvil.url, contract, BTC).await.unwrap();
    assert_eq!((btc.price, btc.publishTime), (100, U256::from(1_000)));
    server.abort();
}

/// A signed transaction the keeper store cannot record is never broadcast: a restart would not
/// know it and could pay again. The batch is journaled as failed with the reason, stays
/// queued, and nothing is signed again until the retry pause is over.
#[tokio::test]
async fn a_transaction_the_store_cannot_record_is_not_broadcast() {
    use sluice::chain::sink::STORE_RETRY_MS;

    let (anvil, contract, config) = send_chain().await;
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let tree = db.open_tree("keeper").unwrap();
    let mut sink = ChainSink::open(&config, Some(tree), false).await.unwrap();
    // The tree goes away under the sink: every write to it fails from now on.
    assert!(db.drop_tree("keeper").unwrap());
    let events = sink.on_batch(&batch(1, &[(BTC, 100, 1_000)]), 0).await;
    let failed: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            SinkEvent::TxFailed { batches, reason } if batches == &[1] => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert!(
        failed[0].starts_with("not broadcast: the signed transaction could not be recorded"),
        "{}",
        failed[0]
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SinkEvent::TxSubmitted { .. })),
        "{events:?}"
    );
    assert!(sink.state().in_flight.is_none());
    let queued = sink.state().queued.clone().expect("the batch stays queued");
    assert_eq!(queued.batches, [1]);
    assert_nothing_reached_the_node(&anvil.url).await;
    // Within the pause nothing is signed, a new batch only joins the queue; after it, the
    // queue is tried again (and refused again: the store is still gone).
    // (The only events meanwhile say the state could not be saved.)
    let unsaved =
        |e: &SinkEvent| matches!(e, SinkEvent::TxFailed { batches, .. } if batches.is_empty());
    let events = sink.on_tick(STORE_RETRY_MS - 1).await;
    assert!(events.iter().all(unsaved), "{events:?}");
    let events = sink.on_batch(&batch(2, &[(ETH, 200, 1_000)]), 10).await;
    assert!(events.iter().all(unsaved), "{events:?}");
    let events = sink.on_tick(STORE_RETRY_MS).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SinkEvent::TxFailed { batches, reason }
            if batches == &[1, 2] && reason.starts_with("not broadcast"))),
        "{events:?}"
    );
    assert_eq!(nonce(&anvil.url, KEY_1).await, 0);
    assert!(price_on_chain(&anvil.url, contract, BTC).await.is_none());
}

/// Every endpoint down when a batch arrives: its fee price cannot be read. The batch is queued
/// (journaled as failed for now, saying so), not dropped, and sent by the first tick after an
/// endpoint answers again, as a submission that cannot reach the chain is.
#[tokio::test]
async fn a_batch_arriving_with_every_endpoint_down_is_sent_when_one_is_back() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let anvil = Anvil::start(&[]);
    let contract = deploy_mock_pyth(&anvil.url, 60, FEE).await;
    let down = Arc::new(AtomicBool::new(true));
    let is_down = Arc::clone(&down);
    let (proxy, server) = rpc_proxy(
        &anvil.url,
        Arc::new(move |_, answer| {
            (answer.is_none() && is_down.load(Ordering::SeqCst)).then(|| (503, Vec::new()))
        }),
    )
    .await;
    let config = chain_config(&[&proxy], contract, ChainMode::Send, KEY_1);
    let mut sink = ChainSink::open(&config, None, false).await.unwrap();
    let events = sink.on_batch(&batch(1, &[(BTC, 100, 1_000)]), 0).await;
    let [SinkEvent::TxFailed { batches, reason }] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(batches, &[1]);
    assert!(
        reason.starts_with("fee price: no RPC endpoint reachable") && reason.contains("queued"),
        "{reason}"
    );
    assert_eq!(
        sink.state().queued.as_ref().map(|q| q.batches.clone()),
        Some(vec![1])
    );
    // Still down: ticks send nothing; a batch with nothing new is still skipped at once.
    assert!(sink.on_tick(100).await.is_empty());
    assert_eq!(
        sink.on_batch(&batch(2, &[(BTC, 100, 1_000)]), 150).await,
        [SinkEvent::TxSkipped {
            batches: vec![2],
            reason: SkipReason::AlreadyPushed
        }]
    );
    down.store(false, Ordering::SeqCst);
    let events = sink.on_tick(200).await;
    assert!(
        matches!(&events[..], [SinkEvent::TxSubmitted { batches, ids, .. }] if batches == &[1] && ids == &[BTC]),
        "{events:?}"
    );
    let mut now = 200;
    tick_until(&mut sink, &mut now, is_confirmed).await;
    let btc = price_on_chain(&anvil.url, contract, BTC).await.unwrap();
    assert_eq!((btc.price, btc.publishTime), (100, U256::from(1_000)));
    server.abort();
}

/// A chain without a base fee: its blocks carry no `baseFeePerGas` (anvil's, stripped by a
/// proxy: MockPyth's bytecode needs Shanghai, whose anvil blocks always have one). The sink
/// sends a legacy transaction at the node's gas price, confirmed like the others.
#[tokio::test]
async fn without_a_base_fee_it_sends_legacy_transactions() {
    use std::sync::Arc;

    let anvil = Anvil::start(&[]);
    let contract = deploy_mock_pyth(&anvil.url, 60, FEE).await;
    let (proxy, server) = rpc_proxy(
        &anvil.url,
        Arc::new(|body, answer| {
            let answer = answer?;
            if !calls(body, "eth_getBlockBy") {
                return None;
            }
            let mut v: serde_json::Value = serde_json::from_slice(answer).ok()?;
            let strip = |reply: &mut serde_json::Value| {
                if let Some(header) = reply["result"].as_object_mut() {
                    header.remove("baseFeePerGas");
                }
            };
            match v.as_array_mut() {
                Some(replies) => replies.iter_mut().for_each(strip),
                None => strip(&mut v),
            }
            Some((200, serde_json::to_vec(&v).unwrap()))
        }),
    )
    .await;
    let config = chain_config(&[&proxy], contract, ChainMode::Send, KEY_1);
    let mut sink = ChainSink::open(&config, None, false).await.unwrap();
    let events = sink.on_batch(&batch(1, &[(BTC, 100, 1_000)]), 0).await;
    let [
        SinkEvent::TxSubmitted {
            hash,
            max_fee_per_gas,
            ..
        },
    ] = &events[..]
    else {
        panic!("{events:?}")
    };
    let mut now = 0;
    tick_until(&mut sink, &mut now, is_confirmed).await;
    let tx: serde_json::Value = provider(&anvil.url)
        .raw_request("eth_getTransactionByHash".into(), (hash,))
        .await
        .unwrap();
    assert_eq!(tx["type"], "0x0", "a legacy transaction: {tx}");
    let sent = u128::from_str_radix(
        tx["gasPrice"].as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    assert!(sent > 0);
    assert_eq!(
        sent.to_string(),
        *max_fee_per_gas,
        "the node's gas price, as planned"
    );
    assert_eq!(balance(&anvil.url, contract).await, U256::from(FEE));
    server.abort();
}

/// The keeper's metrics, read from a recorder of this test's own: one confirmed transaction of
/// two feeds is one latency sample, one gas cost (gas used × price, in gwei), two landed
/// updates; the wallet gauge is the balance in whole gwei.
#[test]
fn a_confirmed_push_is_measured() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (gas_wei, wallet) = metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let anvil = Anvil::start(&[]);
                let contract = deploy_mock_pyth(&anvil.url, 60, FEE).await;
                let config = chain_config(&[&anvil.url], contract, ChainMode::Send, KEY_2);
                let mut sink = ChainSink::open(&config, None, false).await.unwrap();
                let events = sink
                    .on_batch(&batch(1, &[(BTC, 100, 1_000), (ETH, 200, 1_001)]), 0)
                    .await;
                let [SinkEvent::TxSubmitted { hash, .. }] = &events[..] else {
                    panic!("{events:?}")
                };
                let mut now = 0;
                tick_until(&mut sink, &mut now, is_confirmed).await;
                let receipt: serde_json::Value = provider(&anvil.url)
                    .raw_request("eth_getTransactionReceipt".into(), (hash,))
                    .await
                    .unwrap();
                let hex = |k: &str| {
                    u128::from_str_radix(receipt[k].as_str().unwrap().trim_start_matches("0x"), 16)
                        .unwrap()
                };
                let gas_wei = hex("gasUsed") * hex("effectiveGasPrice");
                assert!(
                    sink.check_balance().await.is_none(),
                    "funded above min_balance"
                );
                let signer: alloy::signers::local::PrivateKeySigner = KEY_2.parse().unwrap();
                (gas_wei, balance(&anvil.url, signer.address()).await)
            })
    });
    let mut counters = std::collections::BTreeMap::new();
    let mut gauges = std::collections::BTreeMap::new();
    let mut histograms = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{labels:?}", key.name());
        match value {
            DebugValue::Counter(c) => {
                counters.insert(name, c);
            }
            DebugValue::Gauge(g) => {
                gauges.insert(name, g.into_inner());
            }
            DebugValue::Histogram(h) => {
                histograms.insert(
                    name,
                    h.into_iter().map(|v| v.into_inner()).collect::<Vec<f64>>(),
                );
            }
        }
    }
    assert_eq!(
        counters[r#"price_updates_total["source=keeper"]"#], 2,
        "{counters:?}"
    );
    let latency = &histograms["tx_latency_seconds[]"];
    assert_eq!(latency.len(), 1, "{histograms:?}");
    assert!(latency[0] >= 0.0 && latency[0] < 30.0);
    let gas = &histograms["gas_cost_gwei[]"];
    assert_eq!(gas.len(), 1);
    assert!(
        (gas[0] - gas_wei as f64 / 1e9).abs() < 1e-6,
        "{gas:?} vs {gas_wei} wei"
    );
    let whole_gwei = wallet / U256::from(1_000_000_000u64);
    assert_eq!(
        gauges["wallet_balance_gwei[]"],
        u128::try_from(whole_gwei).unwrap() as f64
    );
}

/// `sluice run` in send mode, killed (SIGKILL) while its first transaction waits in the
/// mempool of a node that mines on demand, then started again on the same output directory
/// while blocks are mined: the transaction signed before the kill lands once, what the second
/// run sends is new, and on chain no (feed, publish time) was paid for twice.
#[test]
fn a_run_killed_between_send_and_receipt_pays_once_after_restart() {
    use std::collections::BTreeSet;
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let anvil = Anvil::start(&["--no-mining"]);
    let contract = rt.block_on(deploy_without_automine(&anvil.url));
    let dir = tempfile::tempdir().unwrap();
    // At recorded pace, 20 s behind the wall clock: fresh, never in the future.
    let venue = rt.block_on(synth_venue(dir.path(), 2, 20_000, 1.0));
    let (config_file, pipeline_file) = keeper_cli_files(
        dir.path(),
        &venue,
        &anvil.url,
        contract,
        "force_update_interval_ms = 3000\n",
    );
    let out = dir.path().join("out");
    let start = || -> Child {
        sluice_run(&config_file, &pipeline_file, &out)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };

    // The first run: killed as soon as its first transaction is out.
    let mut first = start();
    wait_for_keeper(&out, None, "no submission", |lines| {
        lines.iter().any(|v| kind(v) == "tx_submitted")
    });
    first.kill().unwrap();
    first.wait().unwrap();
    let before = keeper_lines(&out);
    let in_flight = before
        .iter()
        .find(|v| kind(v) == "tx_submitted")
        .unwrap()
        .clone();
    assert_eq!(in_flight["nonce"], 0, "{in_flight}");
    assert_eq!(
        rt.block_on(nonce(&anvil.url, KEY_1)),
        0,
        "nothing mined yet"
    );

    // The second run, while blocks are mined.
    let mut second = start();
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        rt.block_on(mine(&anvil.url));
        std::thread::sleep(Duration::from_millis(400));
    }
    support::signal::send(&second, "TERM");
    assert!(second.wait().unwrap().success());
    rt.block_on(mine(&anvil.url));
    let after: Vec<serde_json::Value> = keeper_lines(&out).split_off(before.len());
    assert!(after.iter().all(|v| kind(v) != "tx_failed"), "{after:#?}");
    // The kept transaction was settled by the second run, not sent anew.
    // (Batch numbers restart with the process: the transaction is known by its hashes, the
    // first and its replacements at nonce 0.)
    let nonce_0: BTreeSet<&str> = before
        .iter()
        .chain(&after)
        .filter(|v| matches!(kind(v).as_str(), "tx_submitted" | "tx_replaced") && v["nonce"] == 0)
        .map(|v| v["hash"].as_str().unwrap())
        .collect();
    let settled: Vec<&serde_json::Value> = after
        .iter()
        .filter(|v| kind(v) == "tx_confirmed" && nonce_0.contains(v["hash"].as_str().unwrap()))
        .collect();
    assert_eq!(settled.len(), 1, "{after:#?}");
    assert!(
        after
            .iter()
            .filter(|v| kind(v) == "tx_submitted")
            .all(|v| v["nonce"].as_u64() > Some(0)),
        "{after:#?}"
    );
    assert!(
        after.iter().any(|v| kind(v) == "tx_submitted"),
        "the second run went on pushing: {after:#?}"
    );

    // On chain: every transaction of the keeper succeeded, none repeats a (feed, publish
    // time), the first carries what was in flight, and the fees are exactly one per update.
    let mined = rt.block_on(nonce(&anvil.url, KEY_1));
    let signer: alloy::signers::local::PrivateKeySigner = KEY_1.parse().unwrap();
    let me = format!("{:#x}", signer.address());
    let chain = provider(&anvil.url);
    let head = rt.block_on(chain.get_block_number()).unwrap();
    let mut pushed = BTreeSet::new();
    let mut updates = 0u64;
    let mut txs = 0u64;
    for n in 0..=head {
        let block: serde_json::Value = rt
            .block_on(chain.raw_request("eth_getBlockByNumber".into(), (format!("{n:#x}"), true)))
            .unwrap();
        for tx in block["transactions"].as_array().unwrap() {
            if tx["from"].as_str() != Some(me.as_str()) {
                continue;
            }
            txs += 1;
            let receipt: serde_json::Value = rt
                .block_on(
                    chain.raw_request("eth_getTransactionReceipt".into(), (tx["hash"].clone(),)),
                )
                .unwrap();
            assert_eq!(receipt["status"], "0x1", "{tx}");
            let input =
                hex::decode(tx["input"].as_str().unwrap().trim_start_matches("0x")).unwrap();
            use alloy::sol_types::SolCall;
            let call = IPyth::updatePriceFeedsIfNecessaryCall::abi_decode(&input).unwrap();
            updates += call.updateData.len() as u64;
            let feeds: Vec<(String, u64)> = call
                .priceIds
                .iter()
                .zip(&call.publishTimes)
                .map(|(id, t)| (format!("{id:#x}").trim_start_matches("0x").to_owned(), *t))
                .collect();
            if tx["nonce"] == "0x0" {
                let kept: Vec<(String, u64)> = sent_feeds(&in_flight)
                    .into_iter()
                    .map(|(id, t)| {
                        (
                            id.trim_start_matches("0x").to_owned(),
                            u64::try_from(t).unwrap(),
                        )
                    })
                    .collect();
                assert_eq!(feeds, kept, "nonce 0 carries what was in flight");
            }
            for feed in feeds {
                assert!(pushed.insert(feed.clone()), "{feed:?} paid for twice");
            }
        }
    }
    assert_eq!(txs, mined);
    assert!(txs >= 2, "{txs} transactions");
    assert_eq!(
        rt.block_on(balance(&anvil.url, contract)),
        U256::from(FEE * updates)
    );
    rt.block_on(venue.shutdown());
}

/// `sluice run` in send mode, sent a real SIGUSR1 (as an operator does with `kill -USR1`) once
/// its initial push has landed: with the debounce's thresholds out of reach, nothing else
/// would push, yet the signal makes the keeper push at once every feed whose source price is
/// newer than what is on chain (batch 0), and it lands. The signing key, given as
/// `PRIVATE_KEY`, shows nowhere: not in the journal, keeper.jsonl, the recording, the output
/// directory, nor the logs (at debug level).
#[test]
fn sigusr1_to_a_running_keeper_pushes_the_newer_feeds_and_the_key_shows_nowhere() {
    use std::collections::BTreeMap;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    // At recorded pace, 20 s behind the wall clock: fresh, never in the future.
    let (rt, anvil, contract, dir, venue) = venue_rig(2, 20_000, 1.0);
    // After the initial push nothing reaches the thresholds: only the signal pushes again.
    let (config_file, pipeline_file) = keeper_cli_files(
        dir.path(),
        &venue,
        &anvil.url,
        contract,
        "min_price_change_percent = 90\nforce_update_interval_ms = 3600000\n",
    );
    let out = dir.path().join("out");
    let recording = dir.path().join("run.rec");
    let stderr = dir.path().join("stderr.log");
    let stdout = dir.path().join("stdout.log");
    let mut child = sluice_run(&config_file, &pipeline_file, &out)
        .arg("--record")
        .arg(&recording)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
        .spawn()
        .unwrap();
    let forced = |v: &serde_json::Value| {
        v["batches"]
            .as_array()
            .is_some_and(|b| b.contains(&serde_json::json!(0)))
    };

    // The initial push lands; then the sources move on for a while.
    wait_for_keeper(&out, Some(&stderr), "no initial push confirmed", |lines| {
        lines.iter().any(|v| kind(v) == "tx_confirmed")
    });
    std::thread::sleep(Duration::from_secs(3));
    let before = keeper_lines(&out);
    assert!(before.iter().all(|v| !forced(v)), "{before:#?}");
    support::signal::send(&child, "USR1");
    wait_for_keeper(
        &out,
        Some(&stderr),
        "the forced push never landed",
        |lines| lines.iter().any(|v| kind(v) == "tx_confirmed" && forced(v)),
    );
    support::signal::send(&child, "TERM");
    assert!(child.wait().unwrap().success());

    let lines = keeper_lines(&out);
    assert!(lines.iter().all(|v| kind(v) != "tx_failed"), "{lines:#?}");
    assert!(
        !lines.iter().any(|v| kind(v) == "tx_skipped" && forced(v)),
        "the signal found nothing newer: {lines:#?}"
    );
    // What was pushed before the signal, per feed.
    let mut pushed: BTreeMap<String, i64> = BTreeMap::new();
    for v in before.iter().filter(|v| kind(v) == "tx_submitted") {
        for (id, t) in sent_feeds(v) {
            let e = pushed.entry(id).or_insert(t);
            *e = (*e).max(t);
        }
    }
    assert!(!pushed.is_empty());
    let submitted: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| kind(v) == "tx_submitted" && forced(v))
        .collect();
    assert_eq!(submitted.len(), 1, "{lines:#?}");
    let carried = sent_feeds(submitted[0]);
    assert!(!carried.is_empty(), "{}", submitted[0]);
    for (id, t) in &carried {
        assert!(
            pushed.get(id).is_none_or(|p| t > p),
            "{id} at {t} is not newer than what was pushed ({:?})",
            pushed.get(id)
        );
    }
    // On chain: the forced publish times (or newer).
    for (id, t) in &carried {
        let p = rt
            .block_on(price_on_chain(&anvil.url, contract, id.parse().unwrap()))
            .unwrap();
        assert!(p.publishTime >= U256::from(*t as u64), "{id}");
    }
    // The same outcome is in the journal, as the chain source's observation.
    let journal = read_jsonl(&out.join("journal.jsonl"));
    assert!(
        journal
            .iter()
            .any(|v| kind(v) == "tx_submitted" && forced(v)),
        "the forced push is not journaled"
    );
    rt.block_on(venue.shutdown());

    // The key, in hex either case and with or without `0x`, and as raw bytes, is nowhere.
    let hex_key = KEY_1.trim_start_matches("0x").to_ascii_lowercase();
    let raw_key = hex::decode(&hex_key).unwrap();
    let leaks = |name: &str, bytes: &[u8]| {
        let lower = String::from_utf8_lossy(bytes).to_ascii_lowercase();
        assert!(!lower.contains(&hex_key), "the key shows in {name}");
        assert!(
            !bytes
                .windows(raw_key.len())
                .any(|w| w == raw_key.as_slice()),
            "the key's bytes are in {name}"
        );
    };
    let dump = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("dump")
        .arg(&recording)
        .output()
        .unwrap();
    assert!(dump.status.success());
    assert!(
        String::from_utf8_lossy(&dump.stdout).contains("chain_tx"),
        "the recording holds the keeper's events"
    );
    leaks("the recording", &dump.stdout);
    let logs = std::fs::read(&stderr).unwrap();
    assert!(
        String::from_utf8_lossy(&logs).contains("forcing a push"),
        "debug logs were written"
    );
    leaks("stderr", &logs);
    leaks("stdout", &std::fs::read(&stdout).unwrap());
    let mut files = vec![out.clone()];
    let mut seen = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            leaks(&path.display().to_string(), &std::fs::read(&path).unwrap());
            seen += 1;
        }
    }
    assert!(seen >= 3, "journal, keeper.jsonl and the keeper store");
}

/// A WebSocket endpoint that is down when the keeper starts is kept, and used once its node
/// is up (calls, and the log subscription); after the node restarts, calls reach it again.
#[tokio::test]
async fn a_websocket_endpoint_down_at_start_is_used_once_it_is_up() {
    use sluice::chain::ChainError;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ws = format!("ws://127.0.0.1:{port}");
    let client = ChainClient::connect(std::slice::from_ref(&ws))
        .await
        .expect("a down WebSocket is kept, not fatal");
    let block_number = || client.call(|p| async move { Ok(p.get_block_number().await?) });
    assert!(
        matches!(block_number().await, Err(ChainError::Unreachable { .. })),
        "down"
    );
    assert!(client.price_updates([0; 20]).await.is_none());

    let anvil = Anvil::start_on(port, &[]);
    assert_eq!(block_number().await.unwrap(), 0);
    assert!(client.price_updates([0; 20]).await.is_some());

    // The node goes away and comes back on the same port.
    drop(anvil);
    let _anvil = Anvil::start_on(port, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match block_number().await {
            Ok(n) => {
                assert_eq!(n, 0, "the new node");
                break;
            }
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "not back: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}
