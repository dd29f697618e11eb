#!/bin/sh
# Runs every check and test of the workspace: formatting, clippy, the
# generated-code staleness test and all unit, integration and end-to-end
# tests. Installs what the tests need first. CI runs exactly this.
set -eu
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# The Debian package, which a test installs into a throw-away root.
scripts/build-deb.sh >/dev/null
cargo test --locked --workspace
# Every fuzz target builds and passes its seeds (scripts/fuzz.sh runs them
# for real).
scripts/fuzz.sh smoke
