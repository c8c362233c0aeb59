//! `sluice bench mesh`: the price mesh on loopback. Propagation latency (publish to acceptance)
//! across a line of nodes, and how many messages one node validates per second (signature,
//! rules and the persisted seen cache included).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use ed25519_dalek::SigningKey;
use hdrhistogram::Histogram;
use libp2p::identity::Keypair;
use serde_json::json;

use sluice::mesh::node::VALIDATE_BATCH;
use sluice::mesh::seen_store::SeenStore;
use sluice::mesh::{MeshNode, NodeSettings};
use sluice::model::parse::mesh::MeshPriceMessage;
use sluice::ops::mesh::rules::{self, Policy};
use sluice::ops::mesh::signed::{message_id, origin_hex, sign_wire};
use sluice::sources::now_ms;
use sluice::store::Store;

/// Arguments of `sluice bench mesh`.
#[derive(Debug, Args)]
pub struct MeshBenchArgs {
    /// Nodes in the line.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Prices published at the line's head.
    #[arg(long, default_value_t = 500)]
    pub messages: u64,
    /// Prices published per second.
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// Messages validated in the throughput run.
    #[arg(long, default_value_t = 50_000)]
    pub validate: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: MeshBenchArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(args.nodes >= 2, "--nodes must be at least 2");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (latency, received) = runtime.block_on(propagation(&args))?;
    let per_sec = validation(args.validate)?;
    let result = json!({
        "nodes": args.nodes,
        "hops": args.nodes - 1,
        "messages": args.messages,
        "received": received,
        "propagation_ms": {
            "p50": latency.value_at_quantile(0.5) as f64 / 1000.0,
            "p99": latency.value_at_quantile(0.99) as f64 / 1000.0,
            "max": latency.max() as f64 / 1000.0,
        },
        "validated_per_sec": per_sec.batched.round(),
        "validated_per_sec_one_by_one": per_sec.single.round(),
    });
    if args.json {
        println!("{result}");
    } else {
        println!(
            "propagation over {} hops: p50 {} ms, p99 {} ms, max {} ms ({}/{} received)",
            result["hops"],
            result["propagation_ms"]["p50"],
            result["propagation_ms"]["p99"],
            result["propagation_ms"]["max"],
            received,
            args.messages
        );
        println!(
            "validation on one thread: {} messages/s in batches of {VALIDATE_BATCH}, {} one by one",
            result["validated_per_sec"], result["validated_per_sec_one_by_one"]
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn operator() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

async fn propagation(args: &MeshBenchArgs) -> anyhow::Result<(Histogram<u64>, u64)> {
    let dir = tempfile::tempdir()?;
    let keys: Vec<Keypair> = (0..args.nodes)
        .map(|_| Keypair::generate_ed25519())
        .collect();
    let allowed: Vec<_> = keys.iter().map(|k| k.public().to_peer_id()).collect();
    let origin = origin_hex(&operator().verifying_key());
    let arrivals: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let mut nodes: Vec<MeshNode> = Vec::new();
    for (i, keypair) in keys.into_iter().enumerate() {
        let bootstrap = match nodes.last() {
            Some(prev) => prev.addrs().into_iter().take(1).collect(),
            None => Vec::new(),
        };
        let settings = NodeSettings {
            keypair,
            listen: "/ip4/127.0.0.1/tcp/0".parse()?,
            bootstrap,
            allowed_peers: allowed.clone(),
            mdns: false,
            topic: "sluice/bench/1".into(),
            policy: Policy::new(std::slice::from_ref(&origin), 2048, 5_000, 60_000)
                .map_err(|o| anyhow::anyhow!("bad origin {o}"))?,
            seen_capacity: 20_000,
            operator: (i == 0).then(operator),
        };
        let (store, _) = Store::open(&dir.path().join(format!("n{i}")))?;
        let last = i + 1 == args.nodes;
        let arrivals = Arc::clone(&arrivals);
        let on_accept: sluice::mesh::node::OnAccept = Box::new(move |price| {
            if last {
                let mut map = arrivals.lock().unwrap_or_else(|p| p.into_inner());
                map.insert(price.msg.seq, Instant::now());
            }
        });
        nodes.push(MeshNode::start(settings, store, on_accept, None).await?);
    }
    // Let the line connect and the mesh graft.
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, node) in nodes.iter().enumerate() {
        let want = if i == 0 || i + 1 == nodes.len() { 1 } else { 2 };
        while node.status().await?.topic_peers < want {
            anyhow::ensure!(Instant::now() < deadline, "the line did not connect");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let head = &nodes[0];
    let key = operator();
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let gap = Duration::from_micros(1_000_000 / args.rate.max(1));
    for seq in 0..args.messages {
        let msg = MeshPriceMessage {
            v: 1,
            asset: "SOL".into(),
            mantissa: 14_000_000 + seq as i64,
            expo: -5,
            chain: None,
            publish_ms: now_ms() as i64,
            change_24h: None,
            origin: origin.clone(),
            seq,
        };
        let wire = sign_wire(&msg, &key).into_bytes();
        sent.insert(seq, Instant::now());
        head.publish_wire(wire).await?;
        tokio::time::sleep(gap).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for node in &nodes {
        node.stop().await;
    }
    let mut latency = Histogram::<u64>::new(3)?;
    let arrivals = arrivals.lock().unwrap_or_else(|p| p.into_inner());
    for (seq, at) in arrivals.iter() {
        if let Some(start) = sent.get(seq) {
            latency.record(at.saturating_duration_since(*start).as_micros() as u64)?;
        }
    }
    Ok((latency, arrivals.len() as u64))
}

/// Messages per second one thread validates — rules, signature, seen check and persisted
/// insert — as a node does (signatures in batches of [`VALIDATE_BATCH`]), and one by one.
fn validation(count: usize) -> anyhow::Result<Validation> {
    let key = operator();
    let origin = origin_hex(&key.verifying_key());
    let policy = Policy::new(std::slice::from_ref(&origin), 2048, 5_000, 60_000)
        .map_err(|o| anyhow::anyhow!("bad origin {o}"))?;
    let now = now_ms() as i64;
    let wires: Vec<Vec<u8>> = (0..count as u64)
        .map(|seq| {
            let msg = MeshPriceMessage {
                v: 1,
                asset: "SOL".into(),
                mantissa: 14_000_000 + seq as i64,
                expo: -5,
                chain: Some("solana".into()),
                publish_ms: now,
                change_24h: Some("-2.31".into()),
                origin: origin.clone(),
                seq,
            };
            sign_wire(&msg, &key).into_bytes()
        })
        .collect();
    let batched = validate_all(&wires, VALIDATE_BATCH, now, &policy)?;
    let single = validate_all(&wires, 1, now, &policy)?;
    Ok(Validation { batched, single })
}

/// Validation throughput, batched as a node does and one message at a time.
struct Validation {
    batched: f64,
    single: f64,
}

/// Validates `wires` into a fresh seen store, `batch` at a time; messages per second.
fn validate_all(wires: &[Vec<u8>], batch: usize, now: i64, policy: &Policy) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let (store, _) = Store::open(dir.path())?;
    let mut seen = SeenStore::open(store, 20_000, now)?;
    let started = Instant::now();
    let mut accepted = 0usize;
    for chunk in wires.chunks(batch.max(1)) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        for (wire, verdict) in refs.iter().zip(rules::check_many(&refs, now, policy)) {
            let Ok(msg) = verdict else { continue };
            let id = message_id(wire);
            if !seen.contains(&id, now) {
                seen.insert(id, policy.expiry_ms(msg.publish_ms), now)?;
                accepted += 1;
            }
        }
    }
    seen.flush()?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        accepted == wires.len(),
        "only {accepted} of {} validated",
        wires.len()
    );
    Ok(wires.len() as f64 / secs.max(1e-9))
}
