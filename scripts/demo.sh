#!/bin/sh
# Shows dmagent doing its job, on this machine only: installs what the
# demo needs (a C compiler, Rust, aiocoap), builds the agent, and runs it
# against the local ACS and LwM2M server the end-to-end tests use (on
# 127.0.0.1), narrating each step: registered to both; the ACS reads
# values; an LwM2M write to a parameter the ACS watches reaches the ACS as
# 4 VALUE CHANGE; firmware pushed over LwM2M is reported to the ACS. The
# agent runs on the in-memory platform: nothing is done to this machine.
# Ends by itself (exit 0 when every step happened).
set -eu
cd "$(dirname "$0")/.."

scripts/install-run-deps.sh
cargo build --release --locked -p dmagent --bin dmagent --example demo
exec target/release/examples/demo target/release/dmagent
