//! A local anvil node on a free loopback port with Pyth's MockPyth deployed, for the keeper's
//! integration tests. `test.sh` installs both from npm and exports their paths; a test that
//! cannot find them fails with the reason.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;

/// anvil's first funded account (its well-known test mnemonic).
pub const KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// anvil's second funded account.
pub const KEY_1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// anvil's third funded account.
pub const KEY_2: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

/// A running anvil, killed on drop.
pub struct Anvil {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The port.
    pub port: u16,
}

/// The path in `name`, or else where `test.sh` installs it (`.test-deps/<default>`); a
/// missing file fails the test with what to do.
fn env_path(name: &str, default: &str, what: &str) -> String {
    let path = std::env::var(name).unwrap_or_else(|_| {
        format!(
            "{}/.test-deps/node_modules/{default}",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    assert!(
        std::path::Path::new(&path).is_file(),
        "{path} does not exist ({name}): run ./test.sh, which installs {what} from npm and exports {name}"
    );
    path
}

impl Anvil {
    /// Starts anvil on a free loopback port (`--port 0`), with `extra` arguments.
    pub fn start(extra: &[&str]) -> Anvil {
        Anvil::start_on(0, extra)
    }

    /// Starts anvil on `port` (0: a free one), with `extra` arguments.
    pub fn start_on(port: u16, extra: &[&str]) -> Anvil {
        let bin = env_path(
            "SLUICE_ANVIL",
            "@foundry-rs/anvil-linux-amd64/bin/anvil",
            "@foundry-rs/anvil",
        );
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("anvil starts");
        let stdout = child.stdout.take().expect("anvil stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            assert!(Instant::now() < deadline, "anvil did not start listening");
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => {
                    let _ = child.kill();
                    panic!("anvil exited before listening");
                }
            };
            if let Some(addr) = line.trim().strip_prefix("Listening on ") {
                let port = addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().parse::<u16>().ok())
                    .expect("anvil prints host:port");
                break port;
            }
        };
        // Keep draining stdout so anvil never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Anvil {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
        }
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deploys MockPyth (`validTimePeriod`, `singleUpdateFeeInWei`) from account 0; returns its
/// address.
pub async fn deploy_mock_pyth(url: &str, valid_time_period: u64, fee_wei: u64) -> Address {
    let path = env_path(
        "SLUICE_MOCKPYTH_BIN",
        "@pythnetwork/pyth-sdk-solidity/build/MockPyth_sol_MockPyth.bin",
        "@pythnetwork/pyth-sdk-solidity (MockPyth's creation bytecode)",
    );
    let text = std::fs::read_to_string(path).expect("MockPyth .bin reads");
    let mut code = hex::decode(text.trim().trim_start_matches("0x")).expect("bytecode is hex");
    code.extend((U256::from(valid_time_period), U256::from(fee_wei)).abi_encode_params());
    let provider = wallet_provider(url, KEY_0);
    let tx = TransactionRequest::default().with_deploy_code(Bytes::from(code));
    let receipt = provider
        .send_transaction(tx)
        .await
        .expect("deploy sent")
        .get_receipt()
        .await
        .expect("deploy mined");
    assert!(receipt.status(), "MockPyth deployment reverted");
    receipt.contract_address.expect("a contract address")
}

/// A provider signing with `key`, with alloy's recommended fillers.
pub fn wallet_provider(url: &str, key: &str) -> impl Provider + Clone {
    let signer: PrivateKeySigner = key.parse().expect("test key");
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url.parse().expect("url"))
}

/// A provider without a wallet.
pub fn provider(url: &str) -> impl Provider + Clone {
    ProviderBuilder::new().connect_http(url.parse().expect("url"))
}
