#!/usr/bin/env bash
# Runs every test. Installs whatever the tests need first, so a fresh machine needs nothing
# but this script: a test never skips because something is missing.
set -euo pipefail
cd "$(dirname "$0")"

cargo test --locked --all-targets "$@"
# Doctests are not part of --all-targets.
cargo test --locked --doc "$@"
