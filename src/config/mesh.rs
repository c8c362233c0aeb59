//! Settings of the price mesh: the closed libp2p network, validation bounds, the seen-message
//! cache, the operator's signing key, and Birdeye provider coordination.

use serde::{Deserialize, Serialize};

use super::Secret;

type Problem = (&'static str, String);

/// The price mesh.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    /// Run a mesh node in a live run.
    pub enabled: bool,
    /// Listen multiaddr (`/ip4/0.0.0.0/tcp/4001`; port 0 picks one).
    pub listen: String,
    /// The node's libp2p keypair file (created 0600 on first run); empty means
    /// `mesh_identity.key` in the run's output directory.
    #[serde(default)]
    pub identity_file: String,
    /// Peers dialled at start, as multiaddrs ending in `/p2p/<peer id>`.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Peer ids allowed to connect (besides the bootstrap peers); others are refused.
    #[serde(default)]
    pub allowed_peers: Vec<String>,
    /// Operator ed25519 public keys (64 hex) whose prices are accepted.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Discover peers by mdns (LAN only; they must still be allowlisted).
    pub mdns: bool,
    /// The gossipsub topic prices travel on.
    pub topic: String,
    /// Larger messages are rejected (bytes).
    pub max_message_bytes: usize,
    /// Publish times further ahead than this are rejected (ms).
    pub max_clock_skew_ms: u64,
    /// Messages older than this are rejected: the seed's TTL, as an age (s).
    pub max_age_secs: u64,
    /// Seen message ids kept (in sled, across restarts).
    pub seen_messages_cache_size: usize,
    /// The operator's ed25519 signing key file (64 hex of the 32-byte seed); empty: none.
    #[serde(default)]
    pub operator_key_file: String,
    /// The operator's signing key itself (`MESH_OPERATOR_KEY`), when no file is given.
    #[serde(default)]
    pub operator_key: Secret,
    /// Fetch Birdeye and publish (provider mode).
    pub provider: bool,
    /// Providers fetch Birdeye `multi_price` this often (s).
    pub provider_fetch_interval_secs: u64,
    /// A stand-by provider takes over when no broadcast arrived this long into a window (s).
    pub coordination_window_secs: u64,
    /// Bearer token of the mesh admin API (`MESH_ADMIN_TOKEN`); empty disables it.
    #[serde(default)]
    pub admin_token: Secret,
}

impl MeshConfig {
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        if !self.enabled {
            return Ok(());
        }
        self.listen.parse::<libp2p::Multiaddr>().map_err(|e| {
            (
                "listen",
                format!("{:?} is not a multiaddr ({e})", self.listen),
            )
        })?;
        for addr in &self.bootstrap {
            let parsed: libp2p::Multiaddr = addr
                .parse()
                .map_err(|e| ("bootstrap", format!("{addr:?} is not a multiaddr ({e})")))?;
            let has_peer = parsed
                .iter()
                .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)));
            if !has_peer {
                return Err(("bootstrap", format!("{addr:?} must end in /p2p/<peer id>")));
            }
        }
        for peer in &self.allowed_peers {
            peer.parse::<libp2p::PeerId>()
                .map_err(|e| ("allowed_peers", format!("{peer:?} is not a peer id ({e})")))?;
        }
        for origin in &self.allowed_origins {
            let ok = origin.len() == 64 && origin.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err((
                    "allowed_origins",
                    format!("{origin:?} must be 64 hex digits (an ed25519 public key)"),
                ));
            }
        }
        if self.topic.is_empty() {
            return Err(("topic", "must not be empty".into()));
        }
        if !(256..=65_536).contains(&self.max_message_bytes) {
            return Err((
                "max_message_bytes",
                format!("must be 256..=65536, got {}", self.max_message_bytes),
            ));
        }
        if self.max_age_secs == 0 {
            return Err(("max_age_secs", "must be at least 1".into()));
        }
        if self.seen_messages_cache_size == 0 {
            return Err(("seen_messages_cache_size", "must be at least 1".into()));
        }
        if self.provider_fetch_interval_secs == 0 {
            return Err(("provider_fetch_interval_secs", "must be at least 1".into()));
        }
        if self.coordination_window_secs == 0
            || self.coordination_window_secs >= self.provider_fetch_interval_secs
        {
            return Err((
                "coordination_window_secs",
                "must be at least 1 and below provider_fetch_interval_secs".into(),
            ));
        }
        if self.provider && self.operator_key.is_empty() && self.operator_key_file.is_empty() {
            return Err((
                "provider",
                "a provider needs operator_key_file or MESH_OPERATOR_KEY to sign with".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use figment::value::Value;

    fn load(extra: &[(&str, Value)]) -> Result<Config, String> {
        let mut overrides: Vec<(&str, Value)> = vec![("mesh.enabled", true.into())];
        overrides.extend(extra.iter().cloned());
        Config::load(None, &overrides).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_load_and_mistakes_name_their_key() {
        let config = load(&[]).unwrap();
        assert_eq!(config.mesh.seen_messages_cache_size, 20_000);
        assert_eq!(config.mesh.provider_fetch_interval_secs, 30);
        assert_eq!(config.mesh.coordination_window_secs, 5);
        let no_peer = Value::from(vec![Value::from("/ip4/127.0.0.1/tcp/4001")]);
        let err = load(&[("mesh.bootstrap", no_peer)]).unwrap_err();
        assert!(
            err.contains("mesh.bootstrap") && err.contains("/p2p/"),
            "{err}"
        );
        let bad_origin = Value::from(vec![Value::from("abc")]);
        let err = load(&[("mesh.allowed_origins", bad_origin)]).unwrap_err();
        assert!(err.contains("mesh.allowed_origins"), "{err}");
        let err = load(&[("mesh.coordination_window_secs", 30u64.into())]).unwrap_err();
        assert!(err.contains("mesh.coordination_window_secs"), "{err}");
        let err = load(&[("mesh.provider", true.into())]).unwrap_err();
        assert!(err.contains("mesh.provider"), "{err}");
    }

    #[test]
    fn keys_are_redacted() {
        let config = load(&[
            ("mesh.operator_key", "07".repeat(32).into()),
            ("mesh.admin_token", "tok-zz9".into()),
        ])
        .unwrap();
        let shown = config.to_redacted_toml().unwrap();
        assert!(!shown.contains("0707") && !shown.contains("tok-zz9"));
        assert!(!format!("{config:?}").contains("tok-zz9"));
    }
}

#[cfg(test)]
mod list_tests {
    use crate::config::Config;

    #[test]
    fn bootstrap_lists_load_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let a = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWM4n6jDhUkQrgwF8wzNFfuE4qdEQShdzatC6UxjbuXUvZ";
        let b = "/ip4/127.0.0.1/tcp/2/p2p/12D3KooWM4n6jDhUkQrgwF8wzNFfuE4qdEQShdzatC6UxjbuXUvZ";
        std::fs::write(&file, format!("[mesh]\nbootstrap = [\"{a}\", \"{b}\"]\n")).unwrap();
        let config = Config::load(Some(&file), &[]).unwrap();
        assert_eq!(
            config.mesh.bootstrap.len(),
            2,
            "{:?}",
            config.mesh.bootstrap
        );
    }
}
