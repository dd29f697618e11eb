#!/bin/sh
# Runs every check and test of the workspace: formatting, clippy, the
# generated-code staleness test and all unit, integration and end-to-end
# tests. Installs what the tests need first. CI runs exactly this.
set -eu
cd "$(dirname "$0")/.."

# Each phase's start, in seconds since this script's: CI's budget is 20
# minutes, and a log that says where they went is how it is kept.
start=$(date +%s)
phase() { echo "== test.sh at $(($(date +%s) - start)) s: $*" >&2; }

phase "dependencies"
scripts/install-deps.sh
phase "format and lints"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# The Debian package, which a test installs into a throw-away root.
phase "Debian package"
scripts/build-deb.sh >/dev/null
phase "workspace tests"
cargo test --locked --workspace
# The reduced feature sets (the footprint issue). The smallest, lwm2m
# alone, passes the agent's own tests, which check that a configuration
# needing what it left out (everything but LwM2M) is refused by the
# feature's name. lwm2m,dtls is built and says what it carries (after the
# workspace's tests: it replaces target/debug/dmagent); the other sets
# the issue names, and usp alone, are checked: each set unifies its
# dependencies' features anew, and a build of each would cost CI minutes
# (cargo bench -p dmagent --bench footprint builds them in release).
phase "reduced feature sets"
cargo test --locked -p dmagent --no-default-features --features lwm2m --bin dmagent
cargo build --locked -p dmagent --no-default-features --features lwm2m,dtls
target/debug/dmagent --version | grep -qF "(features: lwm2m, dtls)" ||
    { echo "dmagent --version does not say (features: lwm2m, dtls)" >&2; exit 1; }
for features in cwmp,https lwm2m usp; do
    cargo check --locked -p dmagent --no-default-features --features "$features"
done
# Every fuzz target builds and passes its seeds (scripts/fuzz.sh runs them
# for real).
phase "fuzz smoke"
scripts/fuzz.sh smoke
phase "done"
