//! The on-chain keeper: RPC endpoints, the oracle contract, send or dry-run, fees and limits.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;
use crate::model::Decimal;
use crate::model::decimal::as_string;

/// Whether the keeper sends transactions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChainMode {
    /// Plan and journal (`tx_planned`), send nothing.
    #[default]
    DryRun,
    /// Sign and send.
    Send,
}

/// Where the update data of a transaction comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateDataSource {
    /// Fresh from Hermes REST `/v2/updates/price/latest` for exactly the batch's feeds.
    #[default]
    Hermes,
    /// The `binary` the stream events carried.
    Stream,
}

/// `[chain]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// RPC endpoints (HTTP or WebSocket), in failover order. A single string (`RPC_URL`) may
    /// list several, separated by commas.
    #[serde(default, deserialize_with = "one_or_many")]
    pub rpc_urls: Vec<String>,
    /// The IPyth contract (`0x` + 40 hex).
    #[serde(default)]
    pub contract_address: String,
    /// The chain id transactions are signed for.
    pub chain_id: u64,
    /// `dry-run` (default) or `send`.
    #[serde(default)]
    pub mode: ChainMode,
    /// The signing key (`PRIVATE_KEY`); never shown. Refused from a configuration file: files
    /// get copied, committed and shared, so a key lives only in the environment or in
    /// `private_key_file`.
    #[serde(default)]
    pub private_key: Secret,
    /// A file holding the signing key, instead of `PRIVATE_KEY`.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// `hermes` or `stream`.
    #[serde(default)]
    pub update_data: UpdateDataSource,
    /// Chain reads every this many ms.
    pub poll_interval_ms: u64,
    /// A transaction not mined this long after it was sent is replaced (ms).
    pub receipt_timeout_ms: u64,
    /// Nothing is sent while the max fee per gas is above this (gwei); 0: no cap.
    pub gas_cap_gwei: u64,
    /// Max fee = base fee × this + tip.
    #[serde(with = "as_string")]
    pub fee_multiplier: Decimal,
    /// Alert when the wallet holds less than this (wei, decimal string).
    pub min_balance: String,
}

impl ChainConfig {
    /// Checks values that parse but make no sense: `(key, problem)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for url in &self.rpc_urls {
            let ok = ["http://", "https://", "ws://", "wss://"]
                .iter()
                .any(|scheme| url.starts_with(scheme));
            if !ok {
                return Err((
                    "rpc_urls",
                    format!("{url:?} must be an http(s):// or ws(s):// URL"),
                ));
            }
        }
        if !self.contract_address.is_empty() && parse_address(&self.contract_address).is_none() {
            return Err((
                "contract_address",
                format!(
                    "{:?} must be 0x followed by 40 hex digits",
                    self.contract_address
                ),
            ));
        }
        if self.mode == ChainMode::Send {
            if self.rpc_urls.is_empty() {
                return Err((
                    "rpc_urls",
                    "must list at least one endpoint in send mode".into(),
                ));
            }
            if self.contract_address.is_empty() {
                return Err(("contract_address", "must be set in send mode".into()));
            }
            if self.private_key.is_empty() && self.private_key_file.is_none() {
                return Err((
                    "private_key",
                    "send mode needs PRIVATE_KEY or chain.private_key_file".into(),
                ));
            }
        }
        if !self.private_key.is_empty() && self.private_key_file.is_some() {
            return Err((
                "private_key_file",
                "is set and so is PRIVATE_KEY: use one".into(),
            ));
        }
        if self.chain_id == 0 {
            return Err(("chain_id", "must be at least 1".into()));
        }
        if self.poll_interval_ms == 0 {
            return Err(("poll_interval_ms", "must be at least 1 ms".into()));
        }
        if self.receipt_timeout_ms == 0 {
            return Err(("receipt_timeout_ms", "must be at least 1 ms".into()));
        }
        if self.fee_multiplier.mantissa <= 0 {
            return Err((
                "fee_multiplier",
                format!("must be positive, got {}", self.fee_multiplier),
            ));
        }
        if self.min_balance.parse::<u128>().is_err() {
            return Err((
                "min_balance",
                format!("{:?} must be an integer amount of wei", self.min_balance),
            ));
        }
        Ok(())
    }

    /// The gas cap in wei per gas, if any.
    pub fn gas_cap_wei(&self) -> Option<u128> {
        (self.gas_cap_gwei > 0).then(|| u128::from(self.gas_cap_gwei) * 1_000_000_000)
    }

    /// The minimum balance in wei (0 if unparsable; [`ChainConfig::validate`] refuses that).
    pub fn min_balance_wei(&self) -> u128 {
        self.min_balance.parse().unwrap_or(0)
    }

    /// The signing key: `PRIVATE_KEY`, or the first line of `private_key_file`. The error never
    /// contains the key.
    pub fn signing_key(&self) -> Result<Secret, String> {
        if !self.private_key.is_empty() {
            return Ok(self.private_key.clone());
        }
        let Some(path) = &self.private_key_file else {
            return Err("no signing key: set PRIVATE_KEY or chain.private_key_file".into());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("chain.private_key_file {}: {e}", path.display()))?;
        let key = text.lines().next().unwrap_or("").trim();
        if key.is_empty() {
            return Err(format!(
                "chain.private_key_file {} is empty",
                path.display()
            ));
        }
        Ok(Secret::new(key))
    }
}

/// A list of strings, or one string of comma-separated items.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(list) => list,
    })
}

/// `0x` + 40 hex digits as 20 bytes.
pub fn parse_address(text: &str) -> Option<[u8; 20]> {
    let hex_part = text.strip_prefix("0x")?;
    let mut out = [0u8; 20];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn default() -> ChainConfig {
        Config::load(None, &[]).unwrap().chain
    }

    #[test]
    fn defaults_are_a_valid_dry_run() {
        let c = default();
        assert_eq!(c.mode, ChainMode::DryRun);
        assert_eq!(c.update_data, UpdateDataSource::Hermes);
        assert_eq!(c.fee_multiplier, Decimal::new(12, -1));
        assert_eq!(c.gas_cap_wei(), Some(500_000_000_000));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn send_mode_needs_endpoints_a_contract_and_a_key() {
        let mut c = default();
        c.mode = ChainMode::Send;
        assert_eq!(c.validate().unwrap_err().0, "rpc_urls");
        c.rpc_urls = vec!["http://127.0.0.1:8545".into()];
        assert_eq!(c.validate().unwrap_err().0, "contract_address");
        c.contract_address = "0x5FbDB2315678afecb367f032d93F642f64180aa3".into();
        assert_eq!(c.validate().unwrap_err().0, "private_key");
        c.private_key = Secret::new("0x01");
        assert!(c.validate().is_ok());
        c.rpc_urls.push("ftp://x".into());
        assert_eq!(c.validate().unwrap_err().0, "rpc_urls");
        c.rpc_urls.pop();
        c.contract_address = "0x5FbD".into();
        assert_eq!(c.validate().unwrap_err().0, "contract_address");
    }

    #[test]
    fn the_key_comes_from_one_place_and_never_shows() {
        let mut c = default();
        c.private_key = Secret::new("0xsecretkeyvalue");
        assert_eq!(c.signing_key().unwrap().expose(), "0xsecretkeyvalue");
        assert!(!format!("{c:?}").contains("secretkeyvalue"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "0xfromfile\n").unwrap();
        c.private_key_file = Some(path.clone());
        assert_eq!(c.validate().unwrap_err().0, "private_key_file");
        c.private_key = Secret::default();
        assert_eq!(c.signing_key().unwrap().expose(), "0xfromfile");
        c.private_key_file = Some(dir.path().join("missing"));
        assert!(c.signing_key().is_err());
    }

    #[test]
    fn a_key_in_a_configuration_file_is_refused_without_showing_it() {
        let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keeper.toml");
        std::fs::write(&file, format!("[chain]\nprivate_key = \"{key}\"\n")).unwrap();
        let err = Config::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("chain.private_key"), "{err}");
        assert!(
            err.contains("PRIVATE_KEY or chain.private_key_file"),
            "{err}"
        );
        assert!(err.contains("keeper.toml"), "{err}");
        assert!(!err.contains(&key[2..12]), "the key shows: {err}");
        // The same key from a layer that is not a file (the environment, a flag) is taken.
        let overrides = [("chain.private_key", figment::value::Value::from(key))];
        let c = Config::load(None, &overrides).unwrap().chain;
        assert_eq!(c.signing_key().unwrap().expose(), key);
        // A key file named in the configuration file is the way to keep it in a file.
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, format!("{key}\n")).unwrap();
        std::fs::write(
            &file,
            format!(
                "[chain]\nprivate_key_file = {:?}\n",
                key_file.display().to_string()
            ),
        )
        .unwrap();
        let c = Config::load(Some(&file), &[]).unwrap().chain;
        assert!(c.private_key.is_empty());
        assert_eq!(c.signing_key().unwrap().expose(), key);
        // An empty value (what `sluice check` prints when no key is set) says nothing secret.
        std::fs::write(&file, "[chain]\nprivate_key = \"\"\n").unwrap();
        assert!(Config::load(Some(&file), &[]).is_ok());
    }

    #[test]
    fn rpc_urls_may_be_one_comma_separated_string() {
        let overrides = [(
            "chain.rpc_urls",
            figment::value::Value::from("http://a:1, ws://b:2"),
        )];
        let c = Config::load(None, &overrides).unwrap().chain;
        assert_eq!(c.rpc_urls, ["http://a:1", "ws://b:2"]);
    }

    #[test]
    fn bad_numbers_are_refused() {
        let mut c = default();
        c.min_balance = "1e18".into();
        assert_eq!(c.validate().unwrap_err().0, "min_balance");
        let mut c = default();
        c.fee_multiplier = Decimal::new(0, 0);
        assert_eq!(c.validate().unwrap_err().0, "fee_multiplier");
        let mut c = default();
        c.receipt_timeout_ms = 0;
        assert_eq!(c.validate().unwrap_err().0, "receipt_timeout_ms");
    }
}
