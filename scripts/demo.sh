#!/bin/sh
# Installs what is needed, builds dmagent and runs it on its embedded
# default configuration: the in-memory platform and the real host's
# uptime, memory, CPU and clock. Prints the object tree, then runs until
# Ctrl-C. State goes to a throw-away directory unless DMAGENT_STATE_DIR is
# set.
set -eu
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --release --locked -p dmagent

state="${DMAGENT_STATE_DIR:-$(mktemp -d -t dmagent-demo.XXXXXX)}"
export DMAGENT_STATE_DIR="$state"
echo "== dmagent dump (state in $state)"
target/release/dmagent dump
echo "== dmagent run (Ctrl-C to stop)"
exec target/release/dmagent run
