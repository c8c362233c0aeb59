#!/usr/bin/env bash
# Runs every test. Installs whatever the tests need first, so a fresh machine needs nothing
# but this script: a test never skips because something is missing.
set -euo pipefail
cd "$(dirname "$0")"

# The keeper's integration tests need a local EVM node and Pyth's MockPyth contract: anvil and
# pyth-sdk-solidity from npm, pinned, into a git-ignored project-local folder (installed once).
ANVIL_VERSION=1.7.1
PYTH_SDK_VERSION=4.3.1
DEPS="$PWD/.test-deps"
# npm itself comes from the distribution when the machine has none.
if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
    else
        echo "test.sh: npm is needed to install anvil and Pyth's contracts; install Node.js with npm" >&2
        exit 1
    fi
fi
export SLUICE_ANVIL="$DEPS/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
export SLUICE_MOCKPYTH_BIN="$DEPS/node_modules/@pythnetwork/pyth-sdk-solidity/build/MockPyth_sol_MockPyth.bin"
if ! "$SLUICE_ANVIL" --version 2>/dev/null | grep -q "$ANVIL_VERSION" \
    || ! grep -q "\"version\": \"$PYTH_SDK_VERSION\"" \
        "$DEPS/node_modules/@pythnetwork/pyth-sdk-solidity/package.json" 2>/dev/null; then
    npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$DEPS" \
        "@foundry-rs/anvil@$ANVIL_VERSION" "@pythnetwork/pyth-sdk-solidity@$PYTH_SDK_VERSION"
fi

cargo test --locked --all-targets "$@"
# Doctests are not part of --all-targets.
cargo test --locked --doc "$@"
