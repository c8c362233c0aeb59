//! Configuration: compiled-in defaults, then a file, then the environment, validated.
//!
//! `config/default.toml` holds every knob with a comment and is compiled in. A file given with
//! `--config` overrides it, and the environment overrides both: `SLUICE__SECTION__KEY`, plus the
//! names the tools sluice replaces used (`DEX_SCREENER_API_KEY`, `BIRDEYE_API_KEY`,
//! `HERMES_API_KEY`, `PRIVATE_KEY`, `RPC_URL`, ...). Unknown keys and bad values are errors that
//! name the key and where its value came from.
//!
//! ```
//! let config = sluice::config::Config::load(None, &[]).unwrap();
//! assert_eq!(config.dataflow.tick_ms, 10);
//! ```

mod chain;
mod computations;
mod live;
mod mesh;
mod pipeline;
mod secret;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

pub use chain::{ChainConfig, ChainMode, UpdateDataSource, parse_address};
pub use computations::{
    DebounceConfig, EarlyUpdate, FeedConfig, FusionConfig, Percent, RiskConfig, TrendingConfig,
    UnlistedFeeds,
};
pub use live::{
    BirdeyeConfig, DexscreenerConfig, HermesConfig, HttpConfig, ServeConfig, SourcesConfig,
};
pub use mesh::MeshConfig;
pub use pipeline::{Computation, Pipeline, SinkKind};
pub use secret::{REDACTED, Secret, shown_url};

use crate::model::{Asset, AssetMap, FeedId, Instrument, TokenRef};

/// The compiled-in defaults.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Environment variables of the seed tools and the configuration keys they set.
pub const SEED_ENV: &[(&str, &str)] = &[
    ("DEX_SCREENER_API_KEY", "dexscreener.api_key"),
    ("BIRDEYE_API_KEY", "birdeye.api_key"),
    ("HERMES_API_KEY", "hermes.api_key"),
    ("PRIVATE_KEY", "chain.private_key"),
    ("RPC_URL", "chain.rpc_urls"),
    ("MESH_OPERATOR_KEY", "mesh.operator_key"),
    ("MESH_ADMIN_TOKEN", "mesh.admin_token"),
    (
        "MIN_PRICE_CHANGE_PERCENT",
        "debounce.min_price_change_percent",
    ),
    (
        "FORCE_UPDATE_INTERVAL_MS",
        "debounce.force_update_interval_ms",
    ),
    ("MAX_STALENESS", "debounce.max_staleness_secs"),
    ("DEBOUNCE_MS", "debounce.debounce_ms"),
];

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Time model and parsing limits.
    pub dataflow: DataflowConfig,
    /// The journal sink.
    pub journal: JournalConfig,
    /// The embedded state store.
    pub store: StoreConfig,
    /// Replay pacing.
    pub replay: ReplayConfig,
    /// Trending: boost-rank velocity.
    pub trending: TrendingConfig,
    /// Fusion: prices by asset and discrepancies.
    pub fusion: FusionConfig,
    /// Debounce: price deltas into push batches.
    pub debounce: DebounceConfig,
    /// Risk: the paper portfolio and drawdown tiers.
    pub risk: RiskConfig,
    /// The HTTP layer every poller shares.
    pub http: HttpConfig,
    /// DEX Screener.
    pub dexscreener: DexscreenerConfig,
    /// Birdeye.
    pub birdeye: BirdeyeConfig,
    /// Pyth Hermes.
    pub hermes: HermesConfig,
    /// Live sources.
    pub sources: SourcesConfig,
    /// The operations server.
    pub serve: ServeConfig,
    /// The on-chain keeper.
    pub chain: ChainConfig,
    /// The signed price mesh.
    pub mesh: MeshConfig,
    /// Assets and the identifiers that price them.
    #[serde(default)]
    pub assets: Vec<AssetConfig>,
}

/// Time model and parsing limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataflowConfig {
    /// Dataflow timestamps are ingest times rounded down to a multiple of this (ms).
    pub tick_ms: u64,
    /// Publish times further than this ahead of the ingest time are invalid input (ms).
    pub max_future_skew_ms: i64,
}

/// The journal sink.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Also journal every normalised input (prices, snapshots, chain reads).
    pub inputs: bool,
}

/// The embedded state store.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// How often coalesced writes are applied and flushed (ms of wall time).
    pub flush_interval_ms: u64,
}

/// Replay pacing.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// Frames a replay source reads per activation.
    pub frames_per_step: usize,
    /// How far (ms of recorded time) reading may run ahead of completed output.
    pub lookahead_ms: u64,
}

/// One asset and what prices it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetConfig {
    /// The asset's name (`SOL`).
    pub symbol: String,
    /// Its Pyth feed id, if any.
    #[serde(default)]
    pub pyth_feed: Option<String>,
    /// Tokens that are this asset, as `<chain>:<address>`.
    #[serde(default)]
    pub tokens: Vec<String>,
}

/// A configuration problem, naming the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value failed to parse, or a key is unknown (figment names key and origin).
    #[error("configuration: {0}")]
    Load(Box<figment::Error>),
    /// A value parsed but is not acceptable.
    #[error("configuration: `{key}` {problem} (set in {origin})")]
    Invalid {
        /// Dotted key.
        key: String,
        /// What is wrong with it.
        problem: String,
        /// Which layer supplied it.
        origin: String,
    },
    /// The config file does not exist or cannot be read.
    #[error("configuration file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
}

impl Config {
    /// Loads defaults, then `file`, then the process environment, then `overrides`
    /// (`("section.key", "value")`, for command-line flags), and validates.
    pub fn load(
        file: Option<&Path>,
        overrides: &[(&str, figment::value::Value)],
    ) -> Result<Config, ConfigError> {
        let figment = Self::figment(file, overrides)?;
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.validate(&figment)?;
        Ok(config)
    }

    /// The layered sources, for `load` and for `sluice check`.
    pub fn figment(
        file: Option<&Path>,
        overrides: &[(&str, figment::value::Value)],
    ) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::File {
                    path: path.to_owned(),
                    reason: "no such file".into(),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("SLUICE__").split("__"));
        let seed_keys: Vec<(&str, &str)> = SEED_ENV.to_vec();
        figment = figment.merge(Env::raw().filter_map(move |k| {
            seed_keys
                .iter()
                .find(|(name, _)| k.as_str().eq_ignore_ascii_case(name))
                .map(|(_, key)| (*key).into())
        }));
        figment = figment.merge(secret::SecretEnv::from_process());
        for (key, value) in overrides {
            figment = figment.merge(figment::providers::Serialized::default(key, value));
        }
        Ok(figment)
    }

    /// Checks values that parse but make no sense.
    fn validate(&self, figment: &Figment) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            key: key.to_owned(),
            origin: origin_of(figment, key),
            problem,
        };
        if self.dataflow.tick_ms == 0 || self.dataflow.tick_ms > 60_000 {
            return Err(invalid(
                "dataflow.tick_ms",
                format!("must be 1..=60000 ms, got {}", self.dataflow.tick_ms),
            ));
        }
        if self.dataflow.max_future_skew_ms < 0 {
            return Err(invalid(
                "dataflow.max_future_skew_ms",
                format!(
                    "must not be negative, got {}",
                    self.dataflow.max_future_skew_ms
                ),
            ));
        }
        if self.store.flush_interval_ms == 0 {
            return Err(invalid(
                "store.flush_interval_ms",
                "must be at least 1 ms".into(),
            ));
        }
        if self.replay.frames_per_step == 0 {
            return Err(invalid(
                "replay.frames_per_step",
                "must be at least 1".into(),
            ));
        }
        self.asset_map()
            .map_err(|(index, problem)| invalid(&format!("assets[{index}]"), problem))?;
        self.trending
            .validate()
            .map_err(|(key, problem)| invalid(&format!("trending.{key}"), problem))?;
        self.fusion
            .validate()
            .map_err(|(key, problem)| invalid(&format!("fusion.{key}"), problem))?;
        self.debounce
            .validate(self.dataflow.tick_ms)
            .map_err(|(key, problem)| invalid(&format!("debounce.{key}"), problem))?;
        self.risk
            .validate()
            .map_err(|(key, problem)| invalid(&format!("risk.{key}"), problem))?;
        self.http
            .validate()
            .map_err(|(key, problem)| invalid(&format!("http.{key}"), problem))?;
        self.dexscreener
            .validate()
            .map_err(|(key, problem)| invalid(&format!("dexscreener.{key}"), problem))?;
        self.birdeye
            .validate()
            .map_err(|(key, problem)| invalid(&format!("birdeye.{key}"), problem))?;
        self.hermes
            .validate()
            .map_err(|(key, problem)| invalid(&format!("hermes.{key}"), problem))?;
        self.serve
            .validate()
            .map_err(|(key, problem)| invalid(&format!("serve.{key}"), problem))?;
        self.chain
            .validate()
            .map_err(|(key, problem)| invalid(&format!("chain.{key}"), problem))?;
        // Files get copied, committed and shared: a signing key lives only in the environment
        // or in `chain.private_key_file`.
        let key_source = figment
            .find_metadata("chain.private_key")
            .and_then(|m| m.source.as_ref());
        if !self.chain.private_key.is_empty()
            && matches!(key_source, Some(figment::Source::File(_)))
        {
            return Err(invalid(
                "chain.private_key",
                "is never read from a configuration file; set PRIVATE_KEY or \
                 chain.private_key_file instead"
                    .into(),
            ));
        }
        self.mesh
            .validate()
            .map_err(|(key, problem)| invalid(&format!("mesh.{key}"), problem))?;
        if self.sources.watermark_interval_ms == 0 {
            return Err(invalid(
                "sources.watermark_interval_ms",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The configured asset mapping.
    pub fn asset_map(&self) -> Result<AssetMap, (usize, String)> {
        let mut map = AssetMap::default();
        for (index, asset) in self.assets.iter().enumerate() {
            if asset.symbol.is_empty() || asset.symbol.contains(':') {
                return Err((
                    index,
                    format!(
                        "symbol {:?} must be non-empty and contain no ':'",
                        asset.symbol
                    ),
                ));
            }
            let named = Asset::named(&asset.symbol);
            if let Some(feed) = &asset.pyth_feed {
                let id: FeedId = feed
                    .parse()
                    .map_err(|e| (index, format!("pyth_feed: {e}")))?;
                map.insert(Instrument::Feed(id), named.clone());
            }
            for token in &asset.tokens {
                let (chain, address) = token
                    .split_once(':')
                    .ok_or_else(|| (index, format!("token {token:?} must be <chain>:<address>")))?;
                let token =
                    TokenRef::parse(chain, address).map_err(|e| (index, format!("tokens: {e}")))?;
                map.insert(Instrument::Token(token), named.clone());
            }
        }
        Ok(map)
    }

    /// The configuration as TOML, secrets redacted: what `sluice check` prints.
    pub fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        // Secrets serialize redacted; RPC URLs may carry keys in their paths.
        let mut shown = self.clone();
        for url in &mut shown.chain.rpc_urls {
            *url = shown_url(url);
        }
        toml::to_string_pretty(&shown)
    }
}

/// Which layer supplied `key`, for error messages.
fn origin_of(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(meta) => match &meta.source {
            Some(source) => format!("{} ({source})", meta.name),
            None => meta.name.to_string(),
        },
        None => "compiled-in defaults".into(),
    }
}
