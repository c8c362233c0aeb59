//! The price mesh over libp2p: a closed gossipsub network between sluice nodes.
//!
//! - [`identity`]: the node's persistent libp2p key and the operator's signing key.
//! - [`swarm`]: the libp2p behaviour (allowlist, gossipsub with small-mesh parameters and
//!   calibrated peer scores, optional mdns).
//! - [`control`]: control-topic messages sealed with the sender's node key (gossipsub itself
//!   signs nothing: price messages carry the operator's signature).
//! - [`node`]: the running node: validates what arrives, relays only what it accepts, hands
//!   accepted prices on, publishes this operator's prices.
//! - [`seen_store`]: the seen-message cache, persisted in sled.
//! - [`stats`]: per-node counters and the process metrics.
//!
//! The seed's TTL is a maximum age here (`mesh.max_age_secs`), and its hop count a measured
//! propagation latency (`mesh_message_propagation_latency_seconds`): relays cannot rewrite a
//! message the operator signed.

pub mod book;
pub mod control;
pub mod identity;
pub mod live;
pub mod node;
pub mod provider;
pub mod seen_store;
pub mod stats;
#[allow(missing_docs)] // `NetworkBehaviour` derives an undocumented event enum.
pub mod swarm;

pub use node::{AcceptedPrice, MeshError, MeshNode, NetStatus, NodeSettings};
