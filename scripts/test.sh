#!/usr/bin/env bash
# The test command of README.md: installs what the tests need, then checks format, lints and runs every test
# (unit, integration, torture, fuzz smoke, and the network-namespace tests, which need root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export CARGO_TERM_COLOR=never
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets --no-fail-fast
