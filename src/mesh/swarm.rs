//! The libp2p side of a node: the behaviour and the swarm.
//!
//! - The allowlist refuses connections from peers not on it (both directions).
//! - Gossipsub runs anonymous: it signs nothing and accepts no envelope signature, author or
//!   sequence number. Price messages carry the operator's signature and control messages their
//!   node's seal ([`super::control`]); a second, per-message libp2p signature would halve
//!   validation. It lets the node validate before relaying, names messages by the sha256 of
//!   their signed `msg` bytes ([`message_id`]; a control message by that of all its bytes),
//!   and uses mesh sizes that two to twenty nodes can meet.
//! - Duplicates: gossipsub drops a message whose id it saw within [`DUPLICATE_WINDOW`] before
//!   the node sees it (every mesh delivers each message over several paths; those copies are
//!   not attacks and are not counted). Later copies reach the node, whose persistent seen
//!   cache refuses them and counts them as `replayed`.
//! - Peer scores: only invalid messages weigh much. One rejected message puts a peer below the
//!   graylist threshold however much positive score it collected (on every topic), and keeps
//!   it there for about [`GRAYLIST_FOR`]: its messages and control traffic are ignored, and
//!   with a negative score it is pruned from the mesh and not grafted again until the penalty
//!   has decayed (about twice as long). An attacker therefore gets one invalid message looked
//!   at per ten minutes, not one per few seconds. The price: an honest peer whose rules differ
//!   (an older version relaying what this one refuses) is cut off as long, so every node of a
//!   mesh should run the same validation rules and allowlists.
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

/// How long one invalid message keeps its sender graylisted, at least.
pub const GRAYLIST_FOR: Duration = Duration::from_secs(600);

/// How long gossipsub's own duplicate filter remembers a message id. Longer than its gossip
/// horizon (message cache `history_length` × heartbeat = 2.5 s, IWANT follow-up 3 s), so the
/// copies honest relays send over other paths stay silent; short against `mesh.max_age_secs`,
/// so a message republished later reaches the node's seen cache and is refused and counted
/// there (`replayed`) instead of vanishing uncounted.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(5);

/// Penalty weight of one invalid message (squared count): far beyond any positive score.
const INVALID_WEIGHT: f64 = -1000.0;

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
        .duplicate_cache_time(DUPLICATE_WINDOW)
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
///
/// P4 (invalid messages) is `INVALID_WEIGHT × count²`, and the count decays each second. The
/// topic score cap trims only a positive sum, so the penalty must beat the positive score of
/// every topic together: one invalid message (count 1) decays to the count `c` where
/// `|INVALID_WEIGHT| × c² = max positive − GRAYLIST_THRESHOLD`, and the decay is chosen so that
/// this takes [`GRAYLIST_FOR`].
pub fn score_params(topics: &[IdentTopic]) -> (PeerScoreParams, PeerScoreThresholds) {
    let mut params = PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        app_specific_weight: 0.0,
        topic_score_cap: 10.0,
        decay_interval: Duration::from_secs(1),
        ..PeerScoreParams::default()
    };
    let mut topic_params = TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 10.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_WEIGHT,
        ..TopicScoreParams::default()
    };
    let max_positive = max_positive(&topic_params) * topics.len() as f64;
    let graylisted_above = ((max_positive - GRAYLIST_THRESHOLD) / -INVALID_WEIGHT).sqrt();
    topic_params.invalid_message_deliveries_decay =
        graylisted_above.powf(1.0 / GRAYLIST_FOR.as_secs_f64());
    for topic in topics {
        params.topics.insert(topic.hash(), topic_params.clone());
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

/// The most positive score one topic gives: time in mesh and first deliveries, each at its cap
/// (the other positive components are off).
fn max_positive(topic: &TopicScoreParams) -> f64 {
    topic.topic_weight
        * (topic.time_in_mesh_weight * topic.time_in_mesh_cap
            + topic.first_message_deliveries_weight * topic.first_message_deliveries_cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The score of a peer with `positive` score from the other components and `invalid`
    /// (decayed) invalid-message count on one topic.
    fn score(params: &PeerScoreParams, positive: f64, invalid: f64) -> f64 {
        let topic = params.topics.values().next().unwrap();
        positive + topic.invalid_message_deliveries_weight * invalid * invalid
    }

    #[test]
    fn one_invalid_message_graylists_for_ten_minutes_then_fades() {
        let topics = [IdentTopic::new("p"), IdentTopic::new("p/control")];
        let (params, thresholds) = score_params(&topics);
        let topic = params.topics.values().next().unwrap();
        let decay = topic.invalid_message_deliveries_decay;
        assert_eq!(params.decay_interval, Duration::from_secs(1));
        let best = max_positive(topic) * topics.len() as f64;
        assert_eq!(best, 22.0);
        // The count after `secs` seconds of decay, as gossipsub applies it.
        let after = |secs: u64| {
            let mut c = 1.0f64;
            for _ in 0..secs {
                c *= decay;
                if c < params.decay_to_zero {
                    c = 0.0;
                }
            }
            c
        };
        // Just after the message, and still ten minutes later, even for the best-scored peer.
        assert!(score(&params, best, after(0)) < thresholds.graylist_threshold);
        assert!(score(&params, best, after(599)) < thresholds.graylist_threshold);
        // Not for ever: the graylist lifts, the penalty fades to nothing within the hour.
        assert!(score(&params, best, after(700)) > thresholds.graylist_threshold);
        assert!(
            score(&params, 0.0, after(700)) < 0.0,
            "still kept out of the mesh"
        );
        assert_eq!(after(3_600), 0.0);
        // A fresh peer (no positive score) is graylisted at least as long.
        assert!(score(&params, 0.0, after(599)) < thresholds.graylist_threshold);
    }
}
