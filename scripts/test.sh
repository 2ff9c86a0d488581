#!/usr/bin/env bash
# Runs every Ferrite test: formatting, lints, unit and property tests, multi-process
# integration tests, the crash test and the python-linstor compatibility suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build the binaries the integration tests start"
cargo build --workspace --bins
echo "== cargo nextest"
cargo nextest run --workspace --profile ci "$@"
