#!/bin/sh
# Installs what is needed, builds dmagent and runs it on its embedded
# default configuration. Prints the object tree as this machine's real
# values give it (the default "auto" platform), then runs until Ctrl-C on
# the in-memory platform: a Reboot or factory reset asked of the demo is
# recorded, never done to this machine. State goes to a throw-away
# directory unless DMAGENT_STATE_DIR is set.
set -eu
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --release --locked -p dmagent

state="${DMAGENT_STATE_DIR:-$(mktemp -d -t dmagent-demo.XXXXXX)}"
export DMAGENT_STATE_DIR="$state"
echo "== dmagent dump (state in $state)"
target/release/dmagent dump
echo "== dmagent run on the in-memory platform (Ctrl-C to stop)"
exec target/release/dmagent --platform memory run
