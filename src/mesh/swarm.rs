//! The libp2p side of a node: the behaviour and the swarm.
//!
//! - The allowlist refuses connections from peers not on it (both directions).
//! - Gossipsub signs every message with the node key (strict validation), lets the node validate
//!   before relaying, names messages by the sha256 of their bytes, and uses mesh sizes that two
//!   to twenty nodes can meet.
//! - Peer scores: only invalid messages weigh much. One rejected message costs −100 (decaying),
//!   which is below the graylist threshold however much positive score a peer collected, so its
//!   messages and control traffic are ignored from then on and it is pruned from the mesh.
//!   Delivery-rate penalties stay off: a quiet mesh of a few nodes would punish honest peers.
//!   IP colocation is off too (several nodes per host is normal here).

use std::time::Duration;

use libp2p::allow_block_list::{self, AllowedPeers};
use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds,
    TopicScoreParams, ValidationMode,
};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{PeerId, Swarm, SwarmBuilder, mdns, noise, tcp, yamux};

use crate::ops::mesh::signed::message_id;

/// Score below which a peer is graylisted (everything from it ignored).
pub const GRAYLIST_THRESHOLD: f64 = -80.0;

/// The behaviour of a mesh node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connections only with allowlisted peers.
    pub allow: allow_block_list::Behaviour<AllowedPeers>,
    /// Prices and provider announcements.
    pub gossipsub: gossipsub::Behaviour,
    /// LAN discovery, when enabled.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

/// What the swarm is built with.
pub struct SwarmSettings<'a> {
    /// The node key.
    pub keypair: Keypair,
    /// Peers allowed to connect.
    pub allowed: &'a [PeerId],
    /// Enable mdns.
    pub mdns: bool,
    /// Topics scored (prices, control).
    pub topics: &'a [IdentTopic],
    /// Largest message gossipsub carries at all; the application's limit is lower, so an
    /// oversized message reaches validation and is counted.
    pub max_transmit_bytes: usize,
}

/// Builds the swarm.
pub fn build(settings: SwarmSettings<'_>) -> Result<Swarm<Behaviour>, String> {
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| MessageId::new(&message_id(&m.data)))
        .max_transmit_size(settings.max_transmit_bytes)
        .mesh_n_low(2)
        .mesh_n(4)
        .mesh_n_high(8)
        .mesh_outbound_min(1)
        .gossip_lazy(4)
        .heartbeat_interval(Duration::from_millis(500))
        .build()
        .map_err(|e| format!("gossipsub configuration: {e}"))?;
    let mut gossipsub = gossipsub::Behaviour::new(
        // No envelope signature: price messages carry the operator's, control messages their
        // node's (`super::control`). A second check per message would halve validation.
        MessageAuthenticity::Anonymous,
        gossip_config,
    )
    .map_err(|e| format!("gossipsub: {e}"))?;
    let (params, thresholds) = score_params(settings.topics);
    gossipsub
        .with_peer_score(params, thresholds)
        .map_err(|e| format!("gossipsub peer scores: {e}"))?;
    let mut allow = allow_block_list::Behaviour::<AllowedPeers>::default();
    for peer in settings.allowed {
        allow.allow_peer(*peer);
    }
    let peer_id = settings.keypair.public().to_peer_id();
    let mdns = if settings.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|e| format!("mdns: {e}"))?,
        )
    } else {
        None
    };
    let behaviour = Behaviour {
        allow,
        gossipsub,
        mdns: Toggle::from(mdns),
    };
    let swarm = SwarmBuilder::with_existing_identity(settings.keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| format!("tcp transport: {e}"))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| format!("behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

/// The calibrated scores (see the module docs).
pub fn score_params(topics: &[IdentTopic]) -> (PeerScoreParams, PeerScoreThresholds) {
    let mut params = PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        app_specific_weight: 0.0,
        topic_score_cap: 10.0,
        decay_interval: Duration::from_secs(1),
        ..PeerScoreParams::default()
    };
    for topic in topics {
        params.topics.insert(
            topic.hash(),
            TopicScoreParams {
                topic_weight: 1.0,
                time_in_mesh_weight: 0.01,
                time_in_mesh_quantum: Duration::from_secs(1),
                time_in_mesh_cap: 100.0,
                first_message_deliveries_weight: 1.0,
                first_message_deliveries_decay: 0.9,
                first_message_deliveries_cap: 10.0,
                mesh_message_deliveries_weight: 0.0,
                mesh_failure_penalty_weight: 0.0,
                invalid_message_deliveries_weight: -100.0,
                invalid_message_deliveries_decay: 0.99,
                ..TopicScoreParams::default()
            },
        );
    }
    let thresholds = PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: GRAYLIST_THRESHOLD,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    };
    (params, thresholds)
}
