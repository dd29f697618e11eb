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
# The reduced feature sets (the footprint issue) build and say what they
# carry. The smallest, lwm2m alone, passes the agent's own tests, which
# check that a configuration needing what it left out (everything but
# LwM2M) is refused by the feature's name; its libraries then carry what
# the test crates enable, so the builds are what compile them reduced.
# After the workspace's tests: these builds replace target/debug/dmagent.
cargo test --locked -p dmagent --no-default-features --features lwm2m --bin dmagent
for features in lwm2m,dtls cwmp,https lwm2m; do
    cargo build --locked -p dmagent --no-default-features --features "$features"
    expected="(features: $(echo "$features" | sed 's/,/, /g'))"
    target/debug/dmagent --version | grep -qF "$expected" ||
        { echo "dmagent --version does not say $expected" >&2; exit 1; }
done
cargo check --locked -p dmagent --no-default-features --features usp
# Every fuzz target builds and passes its seeds (scripts/fuzz.sh runs them
# for real).
scripts/fuzz.sh smoke
