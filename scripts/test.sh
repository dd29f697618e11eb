#!/bin/sh
# Runs every check and test of the workspace: formatting, clippy, the
# generated-code staleness test and all unit, integration and end-to-end
# tests. Installs what the tests need first. CI runs exactly this.
set -eu
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo test --locked --workspace
