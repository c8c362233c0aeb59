//! A running mesh node: one tokio task owning the swarm.
//!
//! Everything that arrives on the price topic is checked ([`crate::ops::mesh::rules`], then the
//! seen cache) before gossipsub is told to accept (relay), reject (penalise the sender) or
//! ignore it. Messages that arrive together (already waiting in the swarm) are validated
//! together, their signatures as one batch. Accepted prices go to the node's `on_accept` hook (the live runner turns them into
//! envelopes). The node's own prices are signed with the operator key, published, and handed to
//! the same hook. Connections from peers not on the allowlist are refused and counted.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use futures::{FutureExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{DialError, ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::control::ControlError;
use super::identity::{load_or_create_identity, operator_key};
use super::seen_store::SeenStore;
use super::stats::NodeStats;
use super::swarm::{Behaviour, BehaviourEvent, SwarmSettings, build};
use crate::config::MeshConfig;
use crate::model::parse::mesh::MeshPriceMessage;
use crate::ops::mesh::rules::{self, Policy, Rejection};
use crate::ops::mesh::signed::{message_id, origin_hex, sign_wire};
use crate::sources::now_ms;
use crate::store::Store;

/// How often bootstrap peers that are not connected are dialled again.
const REDIAL_EVERY: Duration = Duration::from_secs(2);

/// How often pending seen ids are written to the store.
const PERSIST_EVERY: Duration = Duration::from_millis(200);

/// Most price messages validated as one signature batch. Messages already waiting in the swarm
/// are taken together (a burst), never waited for: a lone message is validated at once.
pub const VALIDATE_BATCH: usize = 64;

/// Largest control message (provider announcements are tiny).
const MAX_CONTROL_BYTES: usize = 512;

/// A mesh failure.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// Bad settings or keys (never containing a key).
    #[error("mesh setup: {0}")]
    Setup(String),
    /// Publishing failed (no peers yet, duplicate, too large).
    #[error("mesh publish: {0}")]
    Publish(String),
    /// The node has stopped.
    #[error("the mesh node has stopped")]
    Stopped,
}

/// How a node runs.
pub struct NodeSettings {
    /// The node key (its peer id is what others allowlist).
    pub keypair: Keypair,
    /// Where it listens.
    pub listen: Multiaddr,
    /// Peers dialled at start and whenever they are disconnected.
    pub bootstrap: Vec<Multiaddr>,
    /// Peers allowed to connect (bootstrap peers are added).
    pub allowed_peers: Vec<PeerId>,
    /// LAN discovery.
    pub mdns: bool,
    /// The price topic.
    pub topic: String,
    /// What messages must satisfy.
    pub policy: Policy,
    /// Seen ids kept.
    pub seen_capacity: usize,
    /// The operator key this node signs its own prices with.
    pub operator: Option<SigningKey>,
}

impl NodeSettings {
    /// Settings from configuration; the identity file defaults to `mesh_identity.key` in
    /// `state_dir`.
    pub fn from_config(config: &MeshConfig, state_dir: &Path) -> Result<NodeSettings, MeshError> {
        let identity_path = if config.identity_file.is_empty() {
            state_dir.join("mesh_identity.key")
        } else {
            config.identity_file.clone().into()
        };
        let keypair = load_or_create_identity(&identity_path).map_err(MeshError::Setup)?;
        let parse_addr = |a: &String| {
            a.parse::<Multiaddr>()
                .map_err(|e| MeshError::Setup(format!("{a:?}: {e}")))
        };
        let listen = parse_addr(&config.listen)?;
        let bootstrap = config
            .bootstrap
            .iter()
            .map(parse_addr)
            .collect::<Result<Vec<_>, _>>()?;
        let allowed_peers = config
            .allowed_peers
            .iter()
            .map(|p| {
                p.parse::<PeerId>()
                    .map_err(|e| MeshError::Setup(format!("allowed peer {p:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let policy = Policy::new(
            &config.allowed_origins,
            config.max_message_bytes,
            i64::try_from(config.max_clock_skew_ms).unwrap_or(i64::MAX),
            i64::try_from(config.max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        )
        .map_err(|o| MeshError::Setup(format!("allowed origin {o:?} is not an ed25519 key")))?;
        let operator = operator_key(&config.operator_key_file, &config.operator_key)
            .map_err(MeshError::Setup)?;
        Ok(NodeSettings {
            keypair,
            listen,
            bootstrap,
            allowed_peers,
            mdns: config.mdns,
            topic: config.topic.clone(),
            policy,
            seen_capacity: config.seen_messages_cache_size,
            operator,
        })
    }
}

/// A price a node accepted (from a peer, or its own).
#[derive(Clone, Debug)]
pub struct AcceptedPrice {
    /// The wire bytes, as signed.
    pub wire: Bytes,
    /// What they state.
    pub msg: MeshPriceMessage,
    /// Publish time to acceptance here (ms).
    pub latency_ms: i64,
}

/// A control-topic message from a peer.
#[derive(Clone, Debug)]
pub struct ControlMessage {
    /// Its libp2p author.
    pub author: PeerId,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// Called for every accepted price, on the node's task: keep it quick.
pub type OnAccept = Box<dyn FnMut(&AcceptedPrice) + Send>;

/// What the network looks like from a node.
#[derive(Clone, Debug, Default)]
pub struct NetStatus {
    /// This node.
    pub peer_id: String,
    /// Addresses it listens on.
    pub listen_addrs: Vec<String>,
    /// Connected peers with their gossipsub scores.
    pub peers: Vec<(String, f64)>,
    /// Connected peers subscribed to the price topic.
    pub topic_peers: usize,
    /// Peers in this node's gossipsub mesh of the price topic (the ones it relays to); a peer
    /// with a negative score is pruned from it.
    pub mesh_peers: Vec<String>,
    /// Seen ids held.
    pub seen: usize,
}

enum Command {
    Publish {
        topic: IdentTopic,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), MeshError>>,
    },
    Status(oneshot::Sender<NetStatus>),
    Dial(Multiaddr),
}

/// A running node.
pub struct MeshNode {
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    commands: mpsc::Sender<Command>,
    stop: tokio_util::sync::CancellationToken,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    stats: Arc<NodeStats>,
    topic: IdentTopic,
    control_topic: IdentTopic,
    operator: Option<SigningKey>,
    /// Seals control messages (their author is this node).
    keypair: Keypair,
    seq: AtomicU64,
}

impl MeshNode {
    /// Starts a node: listens, dials the bootstrap peers, subscribes, and runs until stopped.
    /// Control-topic messages go to `control` when given.
    pub async fn start(
        settings: NodeSettings,
        store: Store,
        on_accept: OnAccept,
        control: Option<mpsc::UnboundedSender<ControlMessage>>,
    ) -> Result<MeshNode, MeshError> {
        let topic = IdentTopic::new(settings.topic.clone());
        let control_topic = IdentTopic::new(format!("{}/control", settings.topic));
        let peer_id = settings.keypair.public().to_peer_id();
        let mut allowed = settings.allowed_peers.clone();
        allowed.extend(settings.bootstrap.iter().filter_map(peer_of));
        let mut swarm = build(SwarmSettings {
            keypair: settings.keypair.clone(),
            allowed: &allowed,
            mdns: settings.mdns,
            topics: &[topic.clone(), control_topic.clone()],
            max_transmit_bytes: max_transmit_bytes(settings.policy.max_message_bytes),
        })
        .map_err(MeshError::Setup)?;
        for t in [&topic, &control_topic] {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(t)
                .map_err(|e| MeshError::Setup(format!("subscribing: {e}")))?;
        }
        swarm
            .listen_on(settings.listen.clone())
            .map_err(|e| MeshError::Setup(format!("listening on {}: {e}", settings.listen)))?;
        // Wait for the listen addresses, so callers can hand them to other nodes.
        let mut listen_addrs = Vec::new();
        while listen_addrs.is_empty() {
            match tokio::time::timeout(Duration::from_secs(5), swarm.select_next_some()).await {
                Ok(SwarmEvent::NewListenAddr { address, .. }) => listen_addrs.push(address),
                Ok(_) => {}
                Err(_) => return Err(MeshError::Setup("no listen address within 5 s".into())),
            }
        }
        for addr in &settings.bootstrap {
            if let Err(e) = swarm.dial(addr.clone()) {
                warn!(%addr, error = %e, "dialling a bootstrap peer failed");
            }
        }
        let now = now_ms() as i64;
        let seen = SeenStore::open(store, settings.seen_capacity, now)
            .map_err(|e| MeshError::Setup(e.to_string()))?;
        let stats = Arc::new(NodeStats::default());
        let (commands, rx) = mpsc::channel(256);
        let stop = tokio_util::sync::CancellationToken::new();
        let state = NodeTask {
            swarm,
            policy: settings.policy,
            seen,
            stats: Arc::clone(&stats),
            on_accept,
            control,
            topic: topic.clone(),
            control_topic: control_topic.clone(),
            bootstrap: settings.bootstrap,
            listen_addrs: listen_addrs.clone(),
            pending: Vec::new(),
        };
        info!(%peer_id, addrs = ?listen_addrs, "mesh node running");
        let task = tokio::spawn(state.run(rx, stop.clone()));
        Ok(MeshNode {
            peer_id,
            listen_addrs,
            commands,
            stop,
            task: std::sync::Mutex::new(Some(task)),
            stats,
            topic,
            control_topic,
            operator: settings.operator,
            keypair: settings.keypair,
            // Counters restart above anything sent before a restart.
            seq: AtomicU64::new(now_ms().saturating_mul(1000)),
        })
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Where it listens, each with `/p2p/<peer id>` appended (what others bootstrap from).
    pub fn addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs
            .iter()
            .map(|a| a.clone().with(Protocol::P2p(self.peer_id)))
            .collect()
    }

    /// The node's counters.
    pub fn stats(&self) -> Arc<NodeStats> {
        Arc::clone(&self.stats)
    }

    /// The operator origin this node signs as, if it has a key.
    pub fn origin(&self) -> Option<String> {
        self.operator
            .as_ref()
            .map(|k| origin_hex(&k.verifying_key()))
    }

    /// Signs and publishes a price stating `asset = mantissa × 10^expo` at `publish_ms`.
    pub async fn publish_price(
        &self,
        asset: &str,
        mantissa: i64,
        expo: i32,
        publish_ms: i64,
        change_24h: Option<String>,
    ) -> Result<(), MeshError> {
        let key = self
            .operator
            .as_ref()
            .ok_or_else(|| MeshError::Publish("this node has no operator key".into()))?;
        let msg = MeshPriceMessage {
            v: crate::model::parse::mesh::MESH_VERSION,
            asset: asset.to_owned(),
            mantissa,
            expo,
            chain: None,
            publish_ms,
            change_24h,
            origin: origin_hex(&key.verifying_key()),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
        };
        self.publish_wire(sign_wire(&msg, key).into_bytes()).await
    }

    /// Publishes wire bytes as they are (a relay of a signed message, or a test's hostile one).
    pub async fn publish_wire(&self, data: Vec<u8>) -> Result<(), MeshError> {
        self.request(self.topic.clone(), data).await
    }

    /// Publishes `body` on the control topic, sealed with this node's key.
    pub async fn publish_control(&self, body: &[u8]) -> Result<(), MeshError> {
        let wire = super::control::seal(&self.keypair, body).map_err(MeshError::Publish)?;
        self.request(self.control_topic.clone(), wire).await
    }

    /// Publishes bytes on the control topic as they are (a test's hostile ones).
    pub async fn publish_control_wire(&self, data: Vec<u8>) -> Result<(), MeshError> {
        self.request(self.control_topic.clone(), data).await
    }

    async fn request(&self, topic: IdentTopic, data: Vec<u8>) -> Result<(), MeshError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Publish { topic, data, reply })
            .await
            .map_err(|_| MeshError::Stopped)?;
        answer.await.map_err(|_| MeshError::Stopped)?
    }

    /// Dials a peer.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), MeshError> {
        self.commands
            .send(Command::Dial(addr))
            .await
            .map_err(|_| MeshError::Stopped)
    }

    /// The network as this node sees it.
    pub async fn status(&self) -> Result<NetStatus, MeshError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Status(reply))
            .await
            .map_err(|_| MeshError::Stopped)?;
        answer.await.map_err(|_| MeshError::Stopped)
    }

    /// A handle that stops the node when cancelled.
    pub fn stop_token(&self) -> tokio_util::sync::CancellationToken {
        self.stop.clone()
    }

    /// Stops the node and waits until its swarm is gone and the seen cache is flushed.
    pub async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The largest frame gossipsub reads from a peer, for a node whose messages may be at most
/// `max_message_bytes`.
///
/// Above the application's limit, so an oversized message still reaches validation, where it
/// is rejected (the sender penalised) and counted as `oversized`. A frame beyond this bound is
/// refused by gossipsub's decoder before any message exists: the frame is dropped whole, this
/// node's inbound stream from that peer is closed (the peer opens another to go on), nothing
/// is delivered or relayed, and, there being no message, nothing is counted. Reading larger
/// frames to count them would let any peer make the node buffer them.
pub fn max_transmit_bytes(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_mul(4).max(4096)
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

struct NodeTask {
    swarm: Swarm<Behaviour>,
    policy: Policy,
    seen: SeenStore,
    stats: Arc<NodeStats>,
    on_accept: OnAccept,
    control: Option<mpsc::UnboundedSender<ControlMessage>>,
    topic: IdentTopic,
    control_topic: IdentTopic,
    bootstrap: Vec<Multiaddr>,
    listen_addrs: Vec<Multiaddr>,
    /// Price messages received and not yet validated (at most [`VALIDATE_BATCH`]).
    pending: Vec<PendingPrice>,
}

/// A price message waiting for its verdict.
struct PendingPrice {
    message_id: gossipsub::MessageId,
    from: PeerId,
    message: gossipsub::Message,
}

impl NodeTask {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut redial = tokio::time::interval(REDIAL_EVERY);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut persist = tokio::time::interval(PERSIST_EVERY);
        persist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => {
                    self.event(event);
                    // Whatever else the swarm already holds joins this batch.
                    while self.pending.len() < VALIDATE_BATCH {
                        match self.swarm.next().now_or_never() {
                            Some(Some(event)) => self.event(event),
                            _ => break,
                        }
                    }
                    self.validate_pending();
                }
                _ = redial.tick() => self.redial(),
                _ = persist.tick() => {
                    if let Err(e) = self.seen.persist() {
                        warn!(error = %e, "persisting seen message ids failed");
                    }
                }
            }
        }
        if let Err(e) = self.seen.flush() {
            warn!(error = %e, "flushing the seen-message cache failed");
        }
        metrics::gauge!("mesh_network_connected_peers").set(0.0);
    }

    fn redial(&mut self) {
        for addr in &self.bootstrap {
            if let Some(peer) = peer_of(addr)
                && !self.swarm.is_connected(&peer)
            {
                let _ = self.swarm.dial(addr.clone());
            }
        }
        metrics::gauge!("mesh_network_connected_peers")
            .set(self.swarm.connected_peers().count() as f64);
        metrics::gauge!("mesh_seen_messages_cache_size").set(self.seen.len() as f64);
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::Status(reply) => {
                let gossip = &self.swarm.behaviour().gossipsub;
                let peers = self
                    .swarm
                    .connected_peers()
                    .map(|p| (p.to_string(), gossip.peer_score(p).unwrap_or(0.0)))
                    .collect();
                let topic = self.topic.hash();
                let topic_peers = gossip
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&topic))
                    .count();
                let mesh_peers = gossip.mesh_peers(&topic).map(|p| p.to_string()).collect();
                let _ = reply.send(NetStatus {
                    topic_peers,
                    mesh_peers,
                    peer_id: self.swarm.local_peer_id().to_string(),
                    listen_addrs: self.listen_addrs.iter().map(|a| a.to_string()).collect(),
                    peers,
                    seen: self.seen.len(),
                });
            }
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    debug!(%addr, error = %e, "dial failed");
                }
            }
        }
    }

    fn publish(&mut self, topic: IdentTopic, data: Vec<u8>) -> Result<(), MeshError> {
        let own = topic.hash() == self.topic.hash();
        // This node's own prices count as seen, and as accepted here too.
        let accepted = if own {
            let now = now_ms() as i64;
            rules::check(&data, now, &self.policy)
                .ok()
                .map(|msg| (msg, now))
        } else {
            None
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, data.clone())
            .map_err(|e| MeshError::Publish(e.to_string()))?;
        if own {
            self.stats.count_published();
        }
        if let Some((msg, now)) = accepted {
            let id = message_id(&data);
            if !self.seen.contains(&id, now) {
                self.remember(id, &msg, now);
                let price = AcceptedPrice {
                    wire: Bytes::from(data),
                    latency_ms: now - msg.publish_ms,
                    msg,
                };
                (self.on_accept)(&price);
            }
        }
        Ok(())
    }

    fn remember(&mut self, id: [u8; 32], msg: &MeshPriceMessage, now: i64) {
        if let Err(e) = self
            .seen
            .insert(id, self.policy.expiry_ms(msg.publish_ms), now)
        {
            warn!(error = %e, "persisting a seen message id failed");
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                if message.topic == self.topic.hash() {
                    self.pending.push(PendingPrice {
                        message_id,
                        from: propagation_source,
                        message,
                    });
                    if self.pending.len() >= VALIDATE_BATCH {
                        self.validate_pending();
                    }
                    return;
                }
                let acceptance = if message.topic == self.control_topic.hash() {
                    self.control_message(message)
                } else {
                    MessageAcceptance::Ignore
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(libp2p::mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    debug!(%peer, %addr, "mdns found a peer");
                    let _ = self.swarm.dial(addr);
                }
            }
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { .. },
                send_back_addr,
                ..
            } => {
                warn!(addr = %send_back_addr, "refused a connection from a peer not on the allowlist");
                self.stats.count_rejected(Rejection::PeerNotAllowed);
            }
            SwarmEvent::OutgoingConnectionError {
                error: DialError::Denied { .. },
                peer_id,
                ..
            } => {
                debug!(peer = ?peer_id, "not dialling a peer off the allowlist");
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                debug!(%peer_id, "mesh peer connected");
            }
            SwarmEvent::NewListenAddr { address, .. } if !self.listen_addrs.contains(&address) => {
                self.listen_addrs.push(address);
            }
            _ => {}
        }
    }

    fn control_message(&mut self, message: gossipsub::Message) -> MessageAcceptance {
        if message.data.len() > MAX_CONTROL_BYTES {
            self.stats.count_rejected(Rejection::Oversized);
            return MessageAcceptance::Reject;
        }
        let (author, body) = match super::control::open(&message.data) {
            Ok(opened) => opened,
            Err(e) => {
                debug!(error = %e, "control message refused");
                self.stats.count_rejected(match e {
                    ControlError::Malformed => Rejection::Malformed,
                    ControlError::BadSignature => Rejection::BadSignature,
                });
                return MessageAcceptance::Reject;
            }
        };
        if let Some(tx) = &self.control {
            let _ = tx.send(ControlMessage {
                author,
                data: body.to_vec(),
            });
        }
        MessageAcceptance::Accept
    }

    /// Validates the pending price messages (signatures as one batch) and tells gossipsub.
    fn validate_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let now = now_ms() as i64;
        let wires: Vec<&[u8]> = pending.iter().map(|p| p.message.data.as_slice()).collect();
        let verdicts = rules::check_many(&wires, now, &self.policy);
        for (p, verdict) in pending.into_iter().zip(verdicts) {
            let acceptance = self.price_message(p.message, p.from, verdict, now);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&p.message_id, &p.from, acceptance);
        }
    }

    /// The verdict on one price message (relayed by `from`) whose rules `verdict` holds: the seen check, then
    /// acceptance (counted, remembered, handed on) or refusal (counted).
    fn price_message(
        &mut self,
        message: gossipsub::Message,
        from: PeerId,
        verdict: Result<MeshPriceMessage, Rejection>,
        now: i64,
    ) -> MessageAcceptance {
        let id = message_id(&message.data);
        // Checked after the batch's earlier messages were remembered: a duplicate within one
        // batch is a replay too.
        let verdict = verdict.and_then(|msg| {
            if self.seen.contains(&id, now) {
                Err(Rejection::Replayed)
            } else {
                Ok(msg)
            }
        });
        match verdict {
            Ok(msg) => {
                self.remember(id, &msg, now);
                let latency_ms = now - msg.publish_ms;
                self.stats.count_accepted(latency_ms);
                let price = AcceptedPrice {
                    wire: Bytes::from(message.data),
                    msg,
                    latency_ms,
                };
                (self.on_accept)(&price);
                MessageAcceptance::Accept
            }
            Err(reason) => {
                debug!(reason = reason.reason(), %from, "mesh message refused");
                self.stats.count_rejected(reason);
                if reason.penalises() {
                    MessageAcceptance::Reject
                } else {
                    MessageAcceptance::Ignore
                }
            }
        }
    }
}
