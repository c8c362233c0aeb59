//! The price mesh with real libp2p nodes on loopback: prices reach every node of a line and a
//! star, a restarted node keeps its identity and refuses what it saw before, and hostile input
//! (replays included) is refused, counted and never relayed, its senders graylisted and pruned;
//! providers against the venue's Birdeye make one call per window (a slow Birdeye too) whose
//! prices reach every node, and cover for each other; and three `sluice run` processes that
//! form a mesh from their config files alone.
//!
//! Every node listens on port 0, keeps its store in a temporary directory, and is stopped
//! before its test ends.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "support/http_get.rs"]
mod http_get;
#[path = "support/monitoring.rs"]
mod monitoring;
#[path = "support/signal.rs"]
mod signal;

use ed25519_dalek::SigningKey;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use sluice::dataflow::run::RecordingInput;
use sluice::mesh::identity::load_or_create_identity;
use sluice::mesh::swarm::GRAYLIST_THRESHOLD;
use sluice::mesh::{MeshNode, NodeSettings};
use sluice::model::parse::mesh::MeshPriceMessage;
use sluice::ops::mesh::rules::{Policy, Rejection};
use sluice::ops::mesh::signed::{origin_hex, sign_wire};
use sluice::record::Codec;
use sluice::store::Store;
use sluice::venue::{Venue, VenueOptions};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(15);

const ADMIN: &str = "mesh-admin-token-3b9f";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn operator(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// What one node received: (origin, seq, wire).
type Inbox = Arc<Mutex<Vec<(String, u64, Vec<u8>)>>>;

/// A node under test: its directory (identity file, store), its inbox, and the running node.
struct TestNode {
    dir: PathBuf,
    keypair: Keypair,
    inbox: Inbox,
    node: Option<Arc<MeshNode>>,
    control: Option<tokio::sync::mpsc::UnboundedReceiver<sluice::mesh::node::ControlMessage>>,
    /// Its `max_message_bytes` (1024 unless a test sends larger ones).
    limit: usize,
}

struct Plan {
    allowed: Vec<PeerId>,
    origins: Vec<String>,
    bootstrap: Vec<Multiaddr>,
    operator: Option<SigningKey>,
}

impl TestNode {
    fn new(root: &Path, name: &str) -> TestNode {
        let dir = root.join(name);
        let keypair = load_or_create_identity(&dir.join("mesh_identity.key")).unwrap();
        TestNode {
            dir,
            keypair,
            inbox: Arc::default(),
            node: None,
            control: None,
            limit: 1024,
        }
    }

    fn peer(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    async fn start(&mut self, plan: Plan) {
        let keypair = load_or_create_identity(&self.dir.join("mesh_identity.key")).unwrap();
        let settings = NodeSettings {
            keypair,
            listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            bootstrap: plan.bootstrap,
            allowed_peers: plan.allowed,
            mdns: false,
            topic: "sluice/test-prices/1".into(),
            policy: Policy::new(&plan.origins, self.limit, 5_000, 60_000).unwrap(),
            seen_capacity: 20_000,
            operator: plan.operator,
        };
        let (store, _) = Store::open(&self.dir.join("store")).unwrap();
        let inbox = Arc::clone(&self.inbox);
        let (control_tx, control_rx) = tokio::sync::mpsc::unbounded_channel();
        self.control = Some(control_rx);
        let node = MeshNode::start(
            settings,
            store,
            Box::new(move |p| {
                inbox
                    .lock()
                    .unwrap()
                    .push((p.msg.origin.clone(), p.msg.seq, p.wire.to_vec()))
            }),
            Some(control_tx),
        )
        .await
        .unwrap();
        self.node = Some(Arc::new(node));
    }

    fn node(&self) -> &MeshNode {
        self.node.as_ref().unwrap()
    }

    fn shared(&self) -> Arc<MeshNode> {
        Arc::clone(self.node.as_ref().unwrap())
    }

    fn addr(&self) -> Multiaddr {
        self.node().addrs()[0].clone()
    }

    async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.stop().await;
        }
    }
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every node has `expected[i]` peers subscribed to the price topic, then for the
/// mesh to graft (a few heartbeats).
async fn settle(nodes: &[&TestNode], expected: &[usize]) {
    for (node, want) in nodes.iter().zip(expected) {
        until("subscriptions", async || {
            node.node().status().await.unwrap().topic_peers >= *want
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
}

fn price(key: &SigningKey, seq: u64, edit: impl FnOnce(&mut MeshPriceMessage)) -> Vec<u8> {
    price_as(key, key, seq, edit)
}

/// A price claiming `origin`'s key, signed by `signer`.
fn price_as(
    origin: &SigningKey,
    key: &SigningKey,
    seq: u64,
    edit: impl FnOnce(&mut MeshPriceMessage),
) -> Vec<u8> {
    let mut msg = MeshPriceMessage {
        v: 1,
        asset: "SOL".into(),
        mantissa: 14_237_000 + seq as i64,
        expo: -5,
        chain: Some("solana".into()),
        publish_ms: now_ms(),
        change_24h: None,
        origin: origin_hex(&origin.verifying_key()),
        seq,
    };
    edit(&mut msg);
    sign_wire(&msg, key).into_bytes()
}

/// A venue serving a fresh three-minute synthetic market (starting now) whose Birdeye wants
/// `key`, and the addresses its Birdeye prices.
async fn birdeye_venue(root: &Path, key: &str, seed: u64) -> (Venue, BTreeSet<String>) {
    let recording = root.join("venue.rec");
    let opts = sluice::synth::SynthOptions {
        minutes: 3,
        feeds: 2,
        tokens: 5,
        seed,
        start_ms: now_ms() as u64,
        faults: false,
    };
    sluice::synth::write_recording(&recording, Codec::Zstd, &opts).unwrap();
    let addresses = birdeye_addresses(&recording);
    let venue = Venue::start(
        RecordingInput::File(recording),
        "127.0.0.1:0".parse().unwrap(),
        VenueOptions {
            birdeye_api_key: Some(key.into()),
            ..VenueOptions::default()
        },
    )
    .await
    .unwrap();
    (venue, addresses)
}

/// The addresses Birdeye knows in `recording`.
fn birdeye_addresses(recording: &Path) -> BTreeSet<String> {
    use sluice::model::Endpoint;
    use sluice::record::{Item, RecordingReader};
    let mut addresses = BTreeSet::new();
    let mut reader = RecordingReader::open(recording).unwrap();
    while let Some(item) = reader.next_item().unwrap() {
        if let Item::Envelope(env) = item
            && env.endpoint == Endpoint::BirdeyeMultiPrice
        {
            let body: serde_json::Value = serde_json::from_slice(&env.raw).unwrap();
            if let Some(data) = body["data"].as_object() {
                addresses.extend(data.keys().cloned());
            }
        }
    }
    assert!(!addresses.is_empty());
    addresses
}

/// Starts `n` nodes where node i bootstraps from the nodes `links(i)` names.
async fn topology(root: &Path, n: usize, links: impl Fn(usize) -> Vec<usize>) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = (0..n)
        .map(|i| TestNode::new(root, &format!("n{i}")))
        .collect();
    let all: Vec<PeerId> = nodes.iter().map(TestNode::peer).collect();
    for i in 0..n {
        let bootstrap = links(i).into_iter().map(|j| nodes[j].addr()).collect();
        nodes[i]
            .start(Plan {
                allowed: all.clone(),
                origins: vec![
                    origin_hex(&operator(1).verifying_key()),
                    origin_hex(&operator(2).verifying_key()),
                ],
                bootstrap,
                operator: Some(operator(if i == 0 { 1 } else { 2 })),
            })
            .await;
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_reach_every_node_of_a_line_and_a_star() {
    let root = TempDir::new().unwrap();
    // Line: n0 - n1 - n2 - n3 - n4 (each dials the one before it).
    let mut line = topology(&root.path().join("line"), 5, |i| {
        if i == 0 { vec![] } else { vec![i - 1] }
    })
    .await;
    let refs: Vec<&TestNode> = line.iter().collect();
    settle(&refs, &[1, 2, 2, 2, 1]).await;
    for seq in 1..=5 {
        line[0]
            .node()
            .publish_price("SOL", 14_237_000 + seq, -5, now_ms(), None)
            .await
            .unwrap();
        line[4]
            .node()
            .publish_price("BTC/USD", 9_100_000 + seq, -2, now_ms(), None)
            .await
            .unwrap();
    }
    for node in &line {
        until("every price on every node", async || {
            node.inbox.lock().unwrap().len() >= 10
        })
        .await;
        assert_eq!(node.inbox.lock().unwrap().len(), 10, "no duplicates");
    }
    // The middle nodes saw each message once, from the network.
    assert_eq!(line[2].node().stats().accepted(), 10);
    for node in &mut line {
        node.stop().await;
    }

    // Star: n0 in the middle, four leaves.
    let mut star = topology(&root.path().join("star"), 5, |i| {
        if i == 0 { vec![] } else { vec![0] }
    })
    .await;
    let refs: Vec<&TestNode> = star.iter().collect();
    settle(&refs, &[4, 1, 1, 1, 1]).await;
    for seq in 0..3 {
        star[3]
            .node()
            .publish_price("ETH", 300_000 + seq, -2, now_ms(), None)
            .await
            .unwrap();
    }
    for node in &star {
        until("every price on every leaf", async || {
            node.inbox.lock().unwrap().len() >= 3
        })
        .await;
    }
    // A few heartbeats for late gossip (IHAVE/IWANT), then: each exactly once.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for node in &star {
        let seqs: Vec<u64> = node.inbox.lock().unwrap().iter().map(|m| m.1).collect();
        assert_eq!(seqs.len(), 3, "no duplicates: {seqs:?}");
    }
    assert_eq!(star[0].node().stats().accepted(), 3);
    for node in &mut star {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_identity_and_refuses_what_it_saw() {
    let root = TempDir::new().unwrap();
    let good = operator(1);
    let origins = vec![origin_hex(&good.verifying_key())];
    let mut a = TestNode::new(root.path(), "a");
    let mut b = TestNode::new(root.path(), "b");
    let mut x = TestNode::new(root.path(), "x");
    let allowed = vec![a.peer(), b.peer(), x.peer()];
    let plan = |bootstrap: Vec<Multiaddr>, op: Option<SigningKey>| Plan {
        allowed: allowed.clone(),
        origins: origins.clone(),
        bootstrap,
        operator: op,
    };
    a.start(plan(vec![], Some(good.clone()))).await;
    b.start(plan(vec![a.addr()], None)).await;
    settle(&[&a, &b], &[1, 1]).await;
    a.node()
        .publish_price("SOL", 14_000, -2, now_ms(), None)
        .await
        .unwrap();
    until("b receives", async || !b.inbox.lock().unwrap().is_empty()).await;
    let wire = b.inbox.lock().unwrap()[0].2.clone();
    let b_peer = b.node().peer_id();

    b.stop().await;
    b.inbox.lock().unwrap().clear();
    b.start(plan(vec![], None)).await;
    assert_eq!(b.node().peer_id(), b_peer, "the identity file is reused");
    assert!(
        b.node().status().await.unwrap().seen >= 1,
        "seen ids survive"
    );

    // A peer that never saw the message replays it to the restarted node.
    x.start(plan(vec![b.addr()], None)).await;
    settle(&[&x], &[1]).await;
    x.node().publish_wire(wire).await.unwrap();
    until("the replay is refused", async || {
        b.node().stats().rejected(Rejection::Replayed) == 1
    })
    .await;
    assert!(b.inbox.lock().unwrap().is_empty());
    for node in [&mut a, &mut b, &mut x] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_counted_and_never_relayed() {
    use sluice::mesh::node::max_transmit_bytes;
    use sluice::mesh::swarm::DUPLICATE_WINDOW;

    let root = TempDir::new().unwrap();
    let good = operator(1);
    let rogue = operator(9);
    let origins = vec![origin_hex(&good.verifying_key())];
    // attacker_k -> target -> honest
    let mut target = TestNode::new(root.path(), "target");
    let mut honest = TestNode::new(root.path(), "honest");
    let mut attackers: Vec<TestNode> = (0..11)
        .map(|k| TestNode::new(root.path(), &format!("attacker{k}")))
        .collect();
    let mut allowed = vec![target.peer(), honest.peer()];
    allowed.extend(attackers.iter().map(TestNode::peer));
    let plan = |bootstrap: Vec<Multiaddr>, operator: Option<SigningKey>| Plan {
        allowed: allowed.clone(),
        origins: origins.clone(),
        bootstrap,
        operator,
    };
    target.start(plan(vec![], None)).await;
    honest
        .start(plan(vec![target.addr()], Some(good.clone())))
        .await;
    settle(&[&honest], &[1]).await;

    let old = now_ms() - 61_000;
    let future = now_ms() + 60_000;
    let mut cases: Vec<(Vec<u8>, Rejection)> = vec![
        // Claims the good origin, signed by another key.
        (price_as(&good, &rogue, 1, |_| {}), Rejection::BadSignature),
        (price(&rogue, 2, |_| {}), Rejection::UnknownOrigin),
        (price(&good, 3, |m| m.mantissa = 0), Rejection::BadPrice),
        (
            price(&good, 4, |m| m.mantissa = -14_000),
            Rejection::BadPrice,
        ),
        (
            price(&good, 5, |m| m.publish_ms = future),
            Rejection::FutureTimestamp,
        ),
        (price(&good, 6, |m| m.publish_ms = old), Rejection::Stale),
        (
            price(&good, 7, |m| m.asset = "X".repeat(1_200)),
            Rejection::Oversized,
        ),
    ];
    let price_cases = cases.len();
    // On the control topic: an unsealed announcement, and one claiming the honest node's key
    // with a body changed after sealing.
    cases.push((
        br#"{"kind":"fetched","window":1,"at_ms":1}"#.to_vec(),
        Rejection::Malformed,
    ));
    let mut forged =
        sluice::mesh::control::seal(&honest.keypair, br#"{"kind":"announce","at_ms":1}"#).unwrap();
    *forged.last_mut().unwrap() = b' ';
    cases.push((forged, Rejection::BadSignature));
    let in_mesh = async |node: &TestNode, peer: &str| {
        let status = node.node().status().await.unwrap();
        status.mesh_peers.iter().any(|p| p == peer)
    };
    let graylisted = async |node: &TestNode, peer: &str| {
        let status = node.node().status().await.unwrap();
        status
            .peers
            .iter()
            .any(|(p, score)| p == peer && *score < GRAYLIST_THRESHOLD)
    };
    let mut counted = std::collections::BTreeMap::new();
    let mut penalised = Vec::new();
    let mut first_offence = None;
    for (i, (wire, reason)) in cases.into_iter().enumerate() {
        let attacker = &mut attackers[i];
        attacker.start(plan(vec![target.addr()], None)).await;
        settle(&[&*attacker], &[1]).await;
        let peer = attacker.peer().to_string();
        if reason.penalises() {
            until("the attacker joins the target's mesh", async || {
                in_mesh(&target, &peer).await
            })
            .await;
        }
        if i < price_cases {
            attacker.node().publish_wire(wire).await.unwrap();
        } else {
            attacker.node().publish_control_wire(wire).await.unwrap();
        }
        first_offence.get_or_insert_with(Instant::now);
        *counted.entry(reason).or_insert(0u64) += 1;
        let want = counted[&reason];
        until(reason.reason(), async || {
            target.node().stats().rejected(reason) == want
        })
        .await;
        if reason.penalises() {
            until("the sender is graylisted", async || {
                graylisted(&target, &peer).await
            })
            .await;
            until("the sender is pruned from the mesh", async || {
                !in_mesh(&target, &peer).await
            })
            .await;
            // Graylisted: even a valid price from it is no longer looked at (checked below:
            // the target accepts nothing from any attacker).
            attacker
                .node()
                .publish_wire(price(&good, 100 + i as u64, |_| {}))
                .await
                .unwrap();
            penalised.push(peer);
        }
    }
    assert_eq!(penalised.len(), 7);

    // Larger than gossipsub reads at all (the attacker's own limit is higher): refused by the
    // target's decoder before any message exists, so nothing is delivered, relayed or counted.
    let huge_attacker = &mut attackers[9];
    huge_attacker.limit = 65_536;
    huge_attacker.start(plan(vec![target.addr()], None)).await;
    settle(&[&*huge_attacker], &[1]).await;
    let huge = price(&good, 200, |m| m.chain = Some("x".repeat(20_000)));
    assert!(huge.len() > max_transmit_bytes(1024));
    let rejected_before = target.node().stats().rejected_total();
    huge_attacker.node().publish_wire(huge).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(target.node().stats().rejected_total(), rejected_before);
    assert_eq!(target.node().stats().accepted(), 0);

    // A replay: a valid message the target accepted, republished by a peer once gossipsub's
    // duplicate window has passed, is refused by the seen cache and counted.
    honest
        .node()
        .publish_price("SOL", 14_237_000, -5, now_ms(), None)
        .await
        .unwrap();
    until("the target accepts the honest price", async || {
        target.node().stats().accepted() == 1
    })
    .await;
    let original = target.inbox.lock().unwrap()[0].2.clone();
    tokio::time::sleep(DUPLICATE_WINDOW + Duration::from_millis(1_000)).await;
    let replayer = &mut attackers[10];
    replayer.start(plan(vec![target.addr()], None)).await;
    settle(&[&*replayer], &[1]).await;
    replayer.node().publish_wire(original).await.unwrap();
    until("the replay is refused and counted", async || {
        target.node().stats().rejected(Rejection::Replayed) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(target.node().stats().accepted(), 1, "not accepted again");
    assert_eq!(target.inbox.lock().unwrap().len(), 1);
    let replayer_peer = replayer.peer().to_string();
    assert!(
        !graylisted(&target, &replayer_peer).await,
        "a replay is ignored, not punished (an honest relay can be late)"
    );

    // A peer off the allowlist cannot even connect.
    let mut intruder = TestNode::new(root.path(), "intruder");
    intruder
        .start(Plan {
            allowed: vec![target.peer()],
            origins: origins.clone(),
            bootstrap: vec![target.addr()],
            operator: None,
        })
        .await;
    until("the intruder is refused", async || {
        target.node().stats().rejected(Rejection::PeerNotAllowed) >= 1
    })
    .await;
    let intruder_id = intruder.peer().to_string();
    let status = target.node().status().await.unwrap();
    assert!(status.peers.iter().all(|(p, _)| *p != intruder_id));

    // The penalised peers stay graylisted and out of the mesh well past what the penalty used
    // to last (about 11 s): one invalid message costs an attacker minutes.
    let since = first_offence.unwrap().elapsed();
    if since < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_secs(15) - since).await;
    }
    for peer in &penalised {
        assert!(
            graylisted(&target, peer).await,
            "{peer} is still graylisted"
        );
        assert!(
            !in_mesh(&target, peer).await,
            "{peer} is still out of the mesh"
        );
    }

    // Only the honest price was accepted, and the honest node got none of the rest: nothing
    // hostile was relayed (a relayed replay would be refused and counted there).
    assert_eq!(target.node().stats().accepted(), 1);
    assert_eq!(honest.node().stats().accepted(), 0);
    assert_eq!(
        honest.node().stats().rejected_total(),
        0,
        "nothing was relayed"
    );
    assert!(
        target.control.as_mut().unwrap().try_recv().is_err(),
        "no forged control message reached the provider logic"
    );
    intruder.stop().await;
    for attacker in &mut attackers {
        attacker.stop().await;
    }
    for node in [&mut target, &mut honest] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_records_mesh_prices_and_replays_to_the_same_journal() {
    use figment::value::Value;
    use sluice::config::{Config, Pipeline};
    use sluice::dataflow::graph::Wiring;
    use sluice::dataflow::run::{Cluster, ReplayOptions};
    use sluice::live::LiveOptions;
    use sluice::model::Source;

    let root = TempDir::new().unwrap();
    let out = root.path().join("live");
    let identity = out.join("mesh_identity.key");
    let live_peer = load_or_create_identity(&identity)
        .unwrap()
        .public()
        .to_peer_id();
    let origin = origin_hex(&operator(1).verifying_key());
    let other = origin_hex(&operator(2).verifying_key());
    let mut publisher = TestNode::new(root.path(), "publisher");
    publisher
        .start(Plan {
            allowed: vec![live_peer],
            origins: vec![origin.clone()],
            bootstrap: vec![],
            operator: Some(operator(1)),
        })
        .await;
    // A second provider that disagrees by 10 %.
    let mut dissenter = TestNode::new(root.path(), "dissenter");
    dissenter
        .start(Plan {
            allowed: vec![live_peer],
            origins: vec![other.clone()],
            bootstrap: vec![],
            operator: Some(operator(2)),
        })
        .await;
    let overrides: Vec<(&str, Value)> = vec![
        ("mesh.enabled", true.into()),
        ("mesh.listen", "/ip4/127.0.0.1/tcp/0".into()),
        ("mesh.identity_file", identity.display().to_string().into()),
        ("mesh.topic", "sluice/test-prices/1".into()),
        ("serve.listen", "127.0.0.1:0".into()),
        ("mesh.admin_token", ADMIN.into()),
        ("journal.inputs", true.into()),
        ("sources.watermark_interval_ms", 100u64.into()),
    ];
    // The lists go in a config file.
    let file = root.path().join("mesh.toml");
    std::fs::write(
        &file,
        format!(
            "[mesh]\nbootstrap = [\"{}\", \"{}\"]\nallowed_origins = [\"{origin}\", \"{other}\"]\n",
            publisher.addr(),
            dissenter.addr()
        ),
    )
    .unwrap();
    let config = Config::load(Some(&file), &overrides).unwrap();
    assert_eq!(config.mesh.bootstrap.len(), 2);
    let mut pipeline = Pipeline::default_pipeline().unwrap();
    pipeline.sources = vec![Source::Mesh];
    let recording = root.path().join("live.rec");
    let mut options = LiveOptions::new(out.clone());
    options.record = Some(recording.clone());
    options.signals = false;
    let stop = options.stop.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    options.on_ready = Some(Box::new(move |ready| {
        let _ = ready_tx.send((ready.sources, ready.serve_addr));
    }));
    let live = {
        let config = config.clone();
        let wiring = Wiring::new(&config, pipeline.clone()).unwrap();
        std::thread::spawn(move || sluice::live::run(&config, wiring, options))
    };
    let (sources, serve_addr) = tokio::task::spawn_blocking(move || ready_rx.recv_timeout(WAIT))
        .await
        .unwrap()
        .expect("the live run never became ready");
    let base = format!("http://{}", serve_addr.unwrap());
    assert_eq!(sources, vec![Source::Mesh]);
    settle(&[&publisher, &dissenter], &[1, 1]).await;
    for seq in 0..5 {
        publisher
            .node()
            .publish_price("SOL", 14_237_000 + seq, -5, now_ms(), None)
            .await
            .unwrap();
    }
    dissenter
        .node()
        .publish_price("SOL", 15_660_000, -5, now_ms(), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // The seed's API on the operations server.
    let client = reqwest::Client::new();
    let get = async |path: &str| http_get::json(&client, &format!("{base}{path}")).await;
    // The node keeps its gauges itself: nobody has asked for the network status yet.
    let metrics_text = async || http_get::text(&client, &format!("{base}/metrics")).await;
    until("both origins count as active providers", async || {
        metric(&metrics_text().await, "mesh_network_active_providers") == Some(2.0)
    })
    .await;
    let age = metric(&metrics_text().await, "mesh_cache_data_age_seconds");
    assert!(age.is_some_and(|a| (0.0..10.0).contains(&a)), "{age:?}");
    let prices = get("/api/mesh/prices?asset=SOL").await;
    assert_eq!(prices["success"], true, "{prices}");
    let latest = prices["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["origin"] == origin.as_str())
        .unwrap();
    assert_eq!(latest["mantissa"], 14_237_004, "the latest price: {prices}");
    assert_eq!(
        prices["data"].as_array().unwrap().len(),
        2,
        "one per origin"
    );
    let network = get("/api/mesh/network/status").await;
    assert_eq!(network["data"]["connected_peers"], 2, "{network}");
    let active = network["data"]["active_providers"].as_array().unwrap();
    assert_eq!(active.len(), 2, "{network}");
    assert_eq!(network["data"]["data_freshness"], "Fresh");
    let enable = |token: Option<&str>| {
        let mut request = client
            .post(format!("{base}/api/mesh/provider/enable"))
            .json(&serde_json::json!({"api_key": "be-mesh-key-do-not-echo"}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let denied = enable(None).await.unwrap();
    assert_eq!(denied.status(), 401);
    let wrong = enable(Some("nope")).await.unwrap();
    assert_eq!(wrong.status(), 401);
    // The token is checked before the body is read, and a body that does not parse is answered
    // without quoting it.
    let raw = |token: Option<&str>, body: &'static str| {
        let mut request = client
            .post(format!("{base}/api/mesh/provider/enable"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for bad in [
        r#"{"api_key": ["be-mesh-key-do-not-echo"]}"#,
        r#"{"api_key": "be-mesh-key-do-not-echo""#,
        "api_key=be-mesh-key-do-not-echo",
    ] {
        assert_eq!(raw(None, bad).await.unwrap().status(), 401, "{bad}");
        let refused = raw(Some(ADMIN), bad).await.unwrap();
        assert_eq!(refused.status(), 400, "{bad}");
        let text = refused.text().await.unwrap();
        assert!(!text.contains("do-not-echo"), "{text}");
    }
    let no_provider = enable(Some(ADMIN)).await.unwrap();
    assert_eq!(no_provider.status(), 409);
    assert!(!no_provider.text().await.unwrap().contains("do-not-echo"));
    let metrics = http_get::text(&client, &format!("{base}/metrics")).await;
    // The seed's names (the provider's counters at zero: this node is not one; its latency
    // histogram appears with the first fetch) and a series per rejection reason.
    for name in [
        "mesh_messages_accepted_total",
        "mesh_message_propagation_latency_seconds",
        "mesh_provider_fetch_success_total",
        "mesh_provider_fetch_attempts_total",
        "mesh_provider_broadcast_success_total",
        "mesh_network_active_providers",
        "mesh_network_connected_peers",
        "mesh_cache_hits_total",
        "mesh_cache_misses_total",
        "mesh_cache_data_age_seconds",
        "mesh_seen_messages_cache_size",
        "mesh_provider_api_latency_seconds",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    for reason in ["bad_signature", "replayed", "peer_not_allowed", "oversized"] {
        let series = format!("mesh_messages_rejected_total{{reason=\"{reason}\"}}");
        assert!(metrics.contains(&series), "{series} missing from /metrics");
    }
    let hits = metrics
        .lines()
        .find(|l| l.starts_with("mesh_cache_hits_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(
        hits >= Some(1.0),
        "the price look-up above was a hit: {hits:?}"
    );
    for name in monitoring::metrics_named(&["mesh-alerts.yml"]) {
        assert!(
            metrics.lines().any(|l| l.starts_with(&name)),
            "config/monitoring/mesh-alerts.yml uses {name}, which /metrics lacks:\n{metrics}"
        );
    }
    assert!(!metrics.contains(ADMIN));
    stop.cancel();
    let report = tokio::task::spawn_blocking(move || live.join())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    publisher.stop().await;
    dissenter.stop().await;

    let journal = std::fs::read(&report.journal).unwrap();
    let text = String::from_utf8_lossy(&journal);
    let mesh_lines = text
        .lines()
        .filter(|l| l.contains("\"mesh_price\""))
        .count();
    assert_eq!(mesh_lines, 6, "{text}");
    assert!(text.contains(&format!("mesh:{origin}")));
    assert!(
        text.lines()
            .any(|l| l.contains("price_discrepancy") && l.contains(&format!("mesh:{other}"))),
        "fusion flags the providers' disagreement: {text}"
    );

    let replay_out = root.path().join("replay");
    let wiring = Wiring::new(&config, pipeline).unwrap();
    let options = ReplayOptions {
        input: RecordingInput::File(recording),
        out_dir: replay_out.clone(),
        cluster: Cluster::default(),
        progress: None,
    };
    tokio::task::spawn_blocking(move || sluice::dataflow::run::replay(&config, wiring, options))
        .await
        .unwrap()
        .unwrap();
    let replayed = std::fs::read(replay_out.join("journal.jsonl")).unwrap();
    assert_eq!(
        replayed, journal,
        "the replay writes the live journal byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_make_one_birdeye_call_per_window_and_cover_for_each_other() {
    use sluice::mesh::provider;
    use sluice::model::Endpoint;
    use sluice::ops::mesh::rendezvous::window;

    const KEY: &str = "be-mesh-provider-key-71aa";
    const INTERVAL_MS: i64 = 2_000;
    const COORDINATION_MS: i64 = 600;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = TempDir::new().unwrap();
    let (venue, addresses) = birdeye_venue(root.path(), KEY, 5).await;
    let config = birdeye_config(&venue, KEY);
    let birdeye_calls = || venue.stats().endpoint(Endpoint::BirdeyeMultiPrice).requests;

    // A line with a provider at each end: p0 - r0 - r1 - p1.
    let mut r0 = TestNode::new(root.path(), "r0");
    let mut r1 = TestNode::new(root.path(), "r1");
    let mut p0 = TestNode::new(root.path(), "p0");
    let mut p1 = TestNode::new(root.path(), "p1");
    let allowed = vec![r0.peer(), r1.peer(), p0.peer(), p1.peer()];
    let origins = vec![
        origin_hex(&operator(1).verifying_key()),
        origin_hex(&operator(2).verifying_key()),
    ];
    let plan = |bootstrap: Vec<Multiaddr>, op: Option<SigningKey>| Plan {
        allowed: allowed.clone(),
        origins: origins.clone(),
        bootstrap,
        operator: op,
    };
    r0.start(plan(vec![], None)).await;
    r1.start(plan(vec![r0.addr()], None)).await;
    p0.start(plan(vec![r0.addr()], Some(operator(1)))).await;
    p1.start(plan(vec![r1.addr()], Some(operator(2)))).await;
    settle(&[&r0, &r1, &p0, &p1], &[2, 2, 1, 1]).await;
    let settings = provider_settings(&config, &addresses, INTERVAL_MS, COORDINATION_MS);
    let mut providers = start_providers([&mut p0, &mut p1], &settings).await;

    // Sample a second into windows, well after any stand-by deadline.
    let sample_at = async |w: i64| sleep_until_ms(w * INTERVAL_MS + 1_000).await;
    let first = window(now_ms(), INTERVAL_MS) + 1;
    sample_at(first).await;
    let (calls_before, got_before) = (birdeye_calls(), received(&r0).len());
    sample_at(first + 4).await;
    assert_eq!(
        birdeye_calls() - calls_before,
        4,
        "one Birdeye call per window"
    );
    // Whichever provider fetched, its prices reached every node of the line.
    assert_published_everywhere(&[&p0, &r0, &r1, &p1], got_before).await;

    // Kill whichever provider fetched last; the other covers the next window.
    let active = providers
        .iter()
        .position(|(s, _, _)| {
            s.status().last_fetch_ms as i64 >= first * INTERVAL_MS + 4 * INTERVAL_MS - 10
        })
        .unwrap();
    stop_provider(providers.remove(active)).await;
    let dead = if active == 0 { &mut p0 } else { &mut p1 };
    let dead_origin = origin_hex(&operator(if active == 0 { 1 } else { 2 }).verifying_key());
    dead.stop().await;
    let killed_at = now_ms();
    let survivor = Arc::clone(&providers[0].0);
    let fetches = survivor.status().fetch_successes;
    let next = window(killed_at, INTERVAL_MS) + 1;
    until("the survivor covers", async || {
        survivor.status().fetch_successes > fetches
    })
    .await;
    let covered_at = survivor.status().last_fetch_ms as i64;
    assert!(
        covered_at <= next * INTERVAL_MS + COORDINATION_MS + 300,
        "covered {} ms into the next window",
        covered_at - next * INTERVAL_MS
    );

    // The dead provider's seals do not expire, so a peer may relay its old announcements
    // again: they count as of when they were sealed, never as a sign of life now.
    let dead_peer = dead.peer().to_string();
    let announce = |at_ms: i64| {
        let body = serde_json::to_vec(&provider::Control::Announce { at_ms }).unwrap();
        sluice::mesh::control::seal(&dead.keypair, &body).unwrap()
    };
    let (marker, stale) = (announce(killed_at), announce(killed_at - 30_000));
    r0.node().publish_control_wire(marker).await.unwrap();
    until("the survivor hears the relayed announcement", async || {
        survivor.providers().get(&dead_peer) == Some(&(killed_at as u64))
    })
    .await;
    r0.node().publish_control_wire(stale).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        survivor.providers().get(&dead_peer),
        Some(&(killed_at as u64)),
        "an old announcement relayed again does not make the dead provider look alive"
    );
    let survivor_origin = origin_hex(&operator(if active == 0 { 2 } else { 1 }).verifying_key());
    for node in [&r0, &r1] {
        until("the relays get the survivor's prices", async || {
            node.inbox
                .lock()
                .unwrap()
                .iter()
                .any(|m| m.0 == survivor_origin && m.1 > 0)
        })
        .await;
    }
    assert_ne!(survivor_origin, dead_origin);

    for provider in providers {
        stop_provider(provider).await;
    }
    for node in [&mut r0, &mut r1, &mut p0, &mut p1] {
        node.stop().await;
    }
    venue.shutdown().await;
}

/// The value of the unlabelled series `name` in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// (origin, seq) of every price `node` accepted (its own included).
fn received(node: &TestNode) -> BTreeSet<(String, u64)> {
    node.inbox
        .lock()
        .unwrap()
        .iter()
        .map(|m| (m.0.clone(), m.1))
        .collect()
}

/// A running provider: its state, its stop token and its task.
type Provider = (
    Arc<sluice::mesh::provider::ProviderState>,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
);

/// Runs a provider on each node, and waits until each heard of all the others.
async fn start_providers<const N: usize>(
    nodes: [&mut TestNode; N],
    settings: &sluice::mesh::provider::ProviderSettings,
) -> Vec<Provider> {
    use sluice::mesh::provider::{self, ProviderState};
    use tokio_util::sync::CancellationToken;
    let mut providers = Vec::new();
    for p in nodes {
        let state = Arc::new(ProviderState::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(provider::run(
            p.shared(),
            settings.clone(),
            Arc::clone(&state),
            p.control.take().unwrap(),
            stop.clone(),
        ));
        providers.push((state, stop, task));
    }
    until("the providers hear each other", async || {
        providers
            .iter()
            .all(|(s, _, _)| s.providers().len() == N - 1)
    })
    .await;
    providers
}

/// Stops a running provider and waits for its task to end.
async fn stop_provider((_, stop, task): Provider) {
    stop.cancel();
    task.await.unwrap();
}

/// A config whose Birdeye is `venue`'s, with `key`, at 20 requests a second.
fn birdeye_config(venue: &Venue, key: &str) -> sluice::config::Config {
    sluice::config::Config::load(
        None,
        &[
            ("birdeye.base_url", venue.birdeye_url().into()),
            ("birdeye.api_key", key.into()),
            ("birdeye.requests_per_second", 20u64.into()),
        ],
    )
    .unwrap()
}

/// Enabled provider settings: `config`'s Birdeye for five of `addresses`, every `interval_ms`.
fn provider_settings(
    config: &sluice::config::Config,
    addresses: &BTreeSet<String>,
    interval_ms: i64,
    coordination_ms: i64,
) -> sluice::mesh::provider::ProviderSettings {
    sluice::mesh::provider::ProviderSettings {
        birdeye: config.birdeye.clone(),
        http: config.http.clone(),
        addresses: addresses.iter().take(5).cloned().collect(),
        tracked: None,
        interval_ms,
        coordination_ms,
        enabled: true,
    }
}

/// Sleeps until wall time `at_ms`, or not at all if that has passed.
async fn sleep_until_ms(at_ms: i64) {
    tokio::time::sleep(Duration::from_millis((at_ms - now_ms()).max(0) as u64)).await;
}

/// Fails unless `nodes` accepted over `before` prices in all, then waits until each has them all.
async fn assert_published_everywhere(nodes: &[&TestNode], before: usize) {
    let published: BTreeSet<(String, u64)> = nodes.iter().flat_map(|n| received(n)).collect();
    assert!(published.len() > before, "prices were published");
    for node in nodes {
        until("every price on every node", async || {
            received(node) == published
        })
        .await;
    }
}

/// A Birdeye slower than the coordination window (every answer takes 1.2 s, three stand-by
/// delays) still costs one call per window: the provider that fetches claims the window first
/// and the stand-bys wait for it instead of taking over. When that provider dies mid-call, its
/// claim lapses and a stand-by fetches the same window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_birdeye_still_costs_one_call_per_window() {
    use sluice::model::Endpoint;
    use sluice::ops::mesh::rendezvous::window;
    use sluice::venue::FaultSpec;

    const KEY: &str = "be-mesh-slow-key-9e02";
    const INTERVAL_MS: i64 = 2_000;
    const COORDINATION_MS: i64 = 400;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = TempDir::new().unwrap();
    let (venue, addresses) = birdeye_venue(root.path(), KEY, 6).await;
    venue.set_faults("birdeye:latency=1200ms".parse::<FaultSpec>().unwrap());
    let config = birdeye_config(&venue, KEY);
    let birdeye_calls = || venue.stats().endpoint(Endpoint::BirdeyeMultiPrice).requests;

    // Three providers, each linked to the others (so losing one splits nothing).
    let mut nodes: Vec<TestNode> = (0..3)
        .map(|i| TestNode::new(root.path(), &format!("p{i}")))
        .collect();
    let allowed: Vec<PeerId> = nodes.iter().map(TestNode::peer).collect();
    let origins: Vec<String> = (1..=3)
        .map(|k| origin_hex(&operator(k).verifying_key()))
        .collect();
    for i in 0..3 {
        let bootstrap = nodes[..i].iter().map(TestNode::addr).collect();
        nodes[i]
            .start(Plan {
                allowed: allowed.clone(),
                origins: origins.clone(),
                bootstrap,
                operator: Some(operator(i as u8 + 1)),
            })
            .await;
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    settle(&refs, &[2, 2, 2]).await;
    let settings = provider_settings(&config, &addresses, INTERVAL_MS, COORDINATION_MS);
    let [n0, n1, n2] = &mut nodes[..] else {
        unreachable!()
    };
    let providers = start_providers([n0, n1, n2], &settings).await;

    // Sample just before windows end: the slow fetch of each window is done by then.
    let sample_at = async |w: i64| sleep_until_ms(w * INTERVAL_MS + INTERVAL_MS - 300).await;
    let first = window(now_ms(), INTERVAL_MS) + 1;
    sample_at(first).await;
    let calls_before = birdeye_calls();
    let fetches_before: u64 = providers.iter().map(|p| p.0.status().fetch_attempts).sum();
    let got_before = received(&nodes[2]).len();
    sample_at(first + 3).await;
    assert_eq!(
        birdeye_calls() - calls_before,
        3,
        "one Birdeye call per window, however slow"
    );
    let fetches: u64 = providers.iter().map(|p| p.0.status().fetch_attempts).sum();
    assert_eq!(fetches - fetches_before, 3);
    assert_published_everywhere(&nodes.iter().collect::<Vec<_>>(), got_before).await;

    // The provider fetching a window dies while Birdeye keeps it waiting: its claim lapses
    // and a stand-by fetches the same window.
    let mut providers = providers;
    let w = window(now_ms(), INTERVAL_MS) + 1;
    sleep_until_ms(w * INTERVAL_MS - 200).await;
    let attempts: Vec<u64> = providers
        .iter()
        .map(|p| p.0.status().fetch_attempts)
        .collect();
    sleep_until_ms(w * INTERVAL_MS + 300).await;
    let claimer = (0..3)
        .find(|&i| providers[i].0.status().fetch_attempts > attempts[i])
        .expect("someone fetches the window");
    let calls = birdeye_calls();
    stop_provider(providers.remove(claimer)).await;
    nodes[claimer].stop().await;
    until("a stand-by takes the window over", async || {
        birdeye_calls() > calls
    })
    .await;
    let taken_over = now_ms();
    assert!(
        taken_over < (w + 1) * INTERVAL_MS,
        "taken over {} ms into the window",
        taken_over - w * INTERVAL_MS
    );

    for provider in providers {
        stop_provider(provider).await;
    }
    for node in &mut nodes {
        node.stop().await;
    }
    venue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_turns_a_live_provider_on_and_off() {
    use figment::value::Value;
    use sluice::config::Config;
    use sluice::mesh::live::{LiveMesh, start};
    use sluice::model::TokenRef;
    use sluice::model::{Endpoint, Source};
    use sluice::sources::{LiveClock, SourceRegistry, TrackedTokens};

    const KEY: &str = "be-admin-enable-key-0c4d";
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The process's recorder, with the mesh series registered as a live run registers them.
    let recorder = sluice::serve::metrics_handle().unwrap();
    sluice::mesh::stats::register_metrics();
    let api_latency = || {
        metric(
            &recorder.render(),
            "mesh_provider_api_latency_seconds_count",
        )
    };
    let root = TempDir::new().unwrap();
    let (venue, _) = birdeye_venue(root.path(), KEY, 8).await;
    let birdeye_calls = || venue.stats().endpoint(Endpoint::BirdeyeMultiPrice).requests;

    let out = root.path().join("live");
    let identity = out.join("mesh_identity.key");
    let live_peer = load_or_create_identity(&identity)
        .unwrap()
        .public()
        .to_peer_id();
    let origin = origin_hex(&operator(3).verifying_key());
    let mut receiver = TestNode::new(root.path(), "receiver");
    let config = Config::load(
        None,
        &[
            ("mesh.enabled", true.into()),
            ("mesh.provider", true.into()),
            ("mesh.listen", "/ip4/127.0.0.1/tcp/0".into()),
            ("mesh.identity_file", identity.display().to_string().into()),
            ("mesh.topic", "sluice/test-prices/1".into()),
            ("mesh.operator_key", "03".repeat(32).into()),
            ("mesh.admin_token", ADMIN.into()),
            (
                "mesh.allowed_peers",
                Value::from(vec![Value::from(receiver.peer().to_string())]),
            ),
            (
                "mesh.allowed_origins",
                Value::from(vec![Value::from(origin.clone())]),
            ),
            ("mesh.provider_fetch_interval_secs", 2u64.into()),
            ("mesh.coordination_window_secs", 1u64.into()),
            ("birdeye.base_url", venue.birdeye_url().into()),
            ("birdeye.requests_per_second", 20u64.into()),
        ],
    )
    .unwrap();
    let clock = LiveClock::new(10, Duration::from_millis(100), None);
    let (emitter, envelopes, _) = clock.attach(Source::Mesh);
    let (store, _) = Store::open(&out.join("store")).unwrap();
    let mesh = start(
        LiveMesh {
            config: &config.mesh,
            birdeye: &config.birdeye,
            http: &config.http,
            addresses: vec![],
            tracked: Some(TrackedTokens::with_fixed([TokenRef::parse(
                "solana",
                "So11111111111111111111111111111111111111112",
            )
            .unwrap()])),
            out_dir: &out,
        },
        store,
        emitter,
        SourceRegistry::default(),
    )
    .await
    .unwrap();
    receiver
        .start(Plan {
            allowed: vec![live_peer],
            origins: vec![origin.clone()],
            bootstrap: mesh.node.addrs(),
            operator: None,
        })
        .await;
    settle(&[&receiver], &[1]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = sluice::serve::mesh::router(Arc::clone(&mesh.api));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let provider_status =
        async || http_get::json(&client, &format!("{base}/api/mesh/provider/status")).await;
    let post = async |path: &str, token: Option<&str>, body: serde_json::Value| {
        let mut request = client.post(format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };

    // No Birdeye key yet: the provider calls nobody. Its latency histogram is there already.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(birdeye_calls(), 0);
    let latencies_before = api_latency().expect("mesh_provider_api_latency_seconds is registered");
    let body = serde_json::json!({"api_key": KEY});
    assert_eq!(
        post("/api/mesh/provider/enable", None, body.clone())
            .await
            .0,
        401
    );
    let (status, text) = post("/api/mesh/provider/enable", Some(ADMIN), body).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(KEY), "the key is never echoed: {text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["success"], true);
    assert_eq!(answer["data"]["has_api_key"], true);
    until("the receiver gets the provider's prices", async || {
        !receiver.inbox.lock().unwrap().is_empty()
    })
    .await;
    assert!(birdeye_calls() >= 1);
    until("the provider's Birdeye latency is recorded", async || {
        api_latency() > Some(latencies_before)
    })
    .await;
    // The provider's own prices are envelopes of its live run too.
    let own = tokio::task::spawn_blocking(move || envelopes.recv_timeout(WAIT))
        .await
        .unwrap();
    assert!(own.is_ok(), "the provider's own prices reach its dataflow");

    // Disabling needs the token too (a wrong one is no better than none).
    for token in [None, Some("not-the-admin-token")] {
        let (status, _) = post("/api/mesh/provider/disable", token, serde_json::json!({})).await;
        assert_eq!(status, 401);
    }
    let status = provider_status().await;
    assert_eq!(status["data"]["enabled"], true, "{status}");
    let (status, text) = post(
        "/api/mesh/provider/disable",
        Some(ADMIN),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = birdeye_calls();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(birdeye_calls(), calls, "a disabled provider calls nobody");
    let status = provider_status().await;
    assert_eq!(status["data"]["enabled"], false, "{status}");

    server.abort();
    mesh.stop().await;
    clock.close();
    receiver.stop().await;
    venue.shutdown().await;
}

/// A `sluice run` process, as an operator starts it; killed if a test fails before stopping it.
struct RunProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl RunProcess {
    fn spawn(config: &Path, pipeline: &Path, out: &Path, env: &[(&str, &str)]) -> RunProcess {
        use std::io::Read;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--journal-inputs", "--config"])
            .arg(config)
            .arg("--pipeline")
            .arg(pipeline)
            .arg("--out")
            .arg(out)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The server's address is on stderr; a thread keeps reading (and keeps it all).
        let mut stderr = child.stderr.take().unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            let mut sent = false;
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                all.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&all);
                if !sent
                    && let Some(at) = text.find("serving http://")
                    && let Some(end) = text[at + 15..].find('/')
                {
                    let _ = addr_tx.send(text[at + 15..at + 15 + end].to_owned());
                    sent = true;
                }
            }
            all
        });
        let addr = match addr_rx.recv_timeout(WAIT) {
            Ok(addr) => addr.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
                panic!("`sluice run` never served: {stderr}");
            }
        };
        RunProcess {
            child,
            addr,
            stderr: Some(reader),
        }
    }

    /// SIGTERM, then waits: the run must stop cleanly. Returns what it logged.
    fn terminate(mut self) -> String {
        signal::send(&self.child, "TERM");
        let status = self.child.wait().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        assert!(
            status.success(),
            "`sluice run` exited with {status}: {stderr}"
        );
        stderr
    }
}

impl Drop for RunProcess {
    fn drop(&mut self) {
        if self.stderr.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Three `sluice run` processes, configured as operators configure them (identities and the
/// operator key from `sluice mesh`, the lists in config files): a provider fetching the venue's
/// Birdeye, and two nodes that bootstrap to it. The provider's prices reach both, and both
/// journal them; every process stops cleanly on SIGTERM, and the Birdeye key is never logged.
#[test]
fn three_sluice_processes_form_a_mesh_and_share_a_providers_prices() {
    use sluice::model::Endpoint;
    use std::process::Command;

    const KEY: &str = "be-mesh-process-key-5c1e";
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let root = TempDir::new().unwrap();
    let (venue, addresses) = rt.block_on(birdeye_venue(root.path(), KEY, 9));
    let addresses: Vec<String> = addresses.into_iter().take(3).collect();

    let sluice = |args: &[&str]| -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let names = ["provider", "a", "b"];
    let dirs: Vec<PathBuf> = names.iter().map(|n| root.path().join(n)).collect();
    let peers: Vec<String> = dirs
        .iter()
        .map(|d| {
            let identity = d.join("mesh_identity.key");
            sluice(&["mesh", "peer-id", "--identity", identity.to_str().unwrap()])
        })
        .collect();
    let operator_key = dirs[0].join("operator.key");
    let origin = sluice(&[
        "mesh",
        "operator-key",
        "--out",
        operator_key.to_str().unwrap(),
    ]);
    // The provider listens on a port the others are told about.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let quoted = |items: &[String]| -> String {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pipeline = root.path().join("mesh.pipeline.toml");
    std::fs::write(
        &pipeline,
        "name = \"mesh\"\nsources = [\"mesh\"]\ncomputations = [\"fusion\"]\nsinks = [\"journal\", \"store\"]\n",
    )
    .unwrap();
    let start = |i: usize| -> RunProcess {
        let provider = i == 0;
        let (listen, bootstrap) = if provider {
            (format!("/ip4/127.0.0.1/tcp/{port}"), String::new())
        } else {
            (
                "/ip4/127.0.0.1/tcp/0".to_owned(),
                quoted(&[format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", peers[0])]),
            )
        };
        let config = dirs[i].join("sluice.toml");
        std::fs::write(
            &config,
            format!(
                "[mesh]\nenabled = true\nlisten = \"{listen}\"\nbootstrap = [{bootstrap}]\n\
                 allowed_peers = [{peers}]\nallowed_origins = [\"{origin}\"]\n\
                 topic = \"sluice/test-prices/1\"\nprovider = {provider}\n\
                 operator_key_file = \"{key}\"\nprovider_fetch_interval_secs = 2\n\
                 coordination_window_secs = 1\n\
                 [birdeye]\nbase_url = \"{birdeye}\"\naddresses = [{addresses}]\n\
                 requests_per_second = 20\ninclude_trending = false\n\
                 [serve]\nlisten = \"127.0.0.1:0\"\n",
                peers = quoted(&peers),
                key = if provider {
                    operator_key.display().to_string()
                } else {
                    String::new()
                },
                birdeye = venue.birdeye_url(),
                addresses = quoted(&addresses),
            ),
        )
        .unwrap();
        RunProcess::spawn(
            &config,
            &pipeline,
            &dirs[i],
            &[
                ("BIRDEYE_API_KEY", KEY),
                ("MESH_ADMIN_TOKEN", ADMIN),
                ("RUST_LOG", "info,sluice=debug"),
            ],
        )
    };
    let nodes: Vec<RunProcess> = (0..3).map(start).collect();

    let client = reqwest::Client::new();
    let get = |node: &RunProcess, path: &str| -> serde_json::Value {
        rt.block_on(http_get::json(
            &client,
            &format!("http://{}{path}", node.addr),
        ))
    };
    let eventually = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    eventually("the provider to see both nodes", &|| {
        get(&nodes[0], "/api/mesh/network/status")["data"]["connected_peers"] == 2
    });
    let from_provider = |node: &RunProcess| -> BTreeSet<(String, i64)> {
        let prices = get(node, "/api/mesh/prices");
        assert_eq!(prices["success"], true, "{prices}");
        prices["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["origin"] == origin.as_str())
            .map(|p| {
                (
                    p["asset"].as_str().unwrap().to_owned(),
                    p["mantissa"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    for node in &nodes[1..] {
        // Birdeye may not price every address; what the provider published is what counts.
        eventually("the provider's prices at a node", &|| {
            let published = from_provider(&nodes[0]);
            !published.is_empty() && from_provider(node) == published
        });
    }
    let network = get(&nodes[1], "/api/mesh/network/status");
    let active = network["data"]["active_providers"].as_array().unwrap();
    assert_eq!(active.len(), 1, "{network}");
    assert!(
        venue.stats().endpoint(Endpoint::BirdeyeMultiPrice).requests >= 1,
        "the prices came from Birdeye"
    );

    // A new Birdeye key given to the provider through the admin API (the venue refuses it, so
    // the provider's calls fail from now on, and they are logged): neither the key nor any
    // part of a body carrying it appears in an answer or in the log.
    const POSTED: &str = "be-mesh-posted-key-e41b";
    let post = |token: Option<&str>, body: String| -> (u16, String) {
        rt.block_on(async {
            let mut request = client
                .post(format!("http://{}/api/mesh/provider/enable", nodes[0].addr))
                .header("content-type", "application/json")
                .body(body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    let valid = format!(r#"{{"api_key": "{POSTED}"}}"#);
    for (token, body, want) in [
        (None, valid.clone(), 401),
        (Some("wrong"), valid.clone(), 401),
        (Some(ADMIN), format!(r#"{{"api_key": ["{POSTED}"]}}"#), 400),
        (Some(ADMIN), format!(r#"{{"api_key": "{POSTED}""#), 400),
        (Some(ADMIN), valid.clone(), 200),
    ] {
        let (status, text) = post(token, body);
        assert_eq!(status, want, "{text}");
        assert!(!text.contains(POSTED), "{text}");
    }
    let calls = venue.stats().endpoint(Endpoint::BirdeyeMultiPrice).requests;
    eventually("the provider calls Birdeye with the posted key", &|| {
        venue.stats().endpoint(Endpoint::BirdeyeMultiPrice).requests > calls
    });
    std::thread::sleep(Duration::from_millis(500));

    let logs: Vec<String> = nodes.into_iter().map(RunProcess::terminate).collect();
    for (i, log) in logs.iter().enumerate() {
        assert!(!log.contains(KEY), "{} logged the Birdeye key", names[i]);
        assert!(!log.contains(POSTED), "{} logged the posted key", names[i]);
    }
    assert!(
        logs[0].contains("mesh provider: Birdeye fetch failed"),
        "the refused calls were logged: {}",
        logs[0]
    );
    for dir in &dirs[1..] {
        let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
        let mesh_prices = journal
            .lines()
            .filter(|l| l.contains("\"mesh_price\"") && l.contains(&origin))
            .count();
        assert!(mesh_prices >= 1, "{journal}");
    }
    rt.block_on(venue.shutdown());
}
