#!/bin/sh
# Runs dmagent with IPSO Temperature (3303) declared and served by
# provider.py as a D-Bus provider, both on a session bus of their own,
# against the LwM2M server COAP_URI (and the ACS ACS_URL, if given), until
# killed; then stops all three. The agent binary: $DMAGENT, else
# target/release or target/debug of this checkout, else dmagent on the
# PATH. The provider needs python3-dbus and python3-gi
# (scripts/install-deps.sh installs them).
#
#   examples/temperature/run.sh coap://127.0.0.1:5683 [http://127.0.0.1:7547/]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 COAP_URI [ACS_URL]" >&2
    exit 64
fi
command -v dbus-daemon >/dev/null || {
    echo "$0: dbus-daemon is missing (Debian: dbus-daemon)" >&2
    exit 69
}
agent=${DMAGENT:-}
for candidate in "$here/../../target/release/dmagent" "$here/../../target/debug/dmagent"; do
    [ -z "$agent" ] && [ -x "$candidate" ] && agent=$candidate
done
agent=${agent:-dmagent}

agent_pid=""
provider=""
bus_pid=""
stop() {
    # shellcheck disable=SC2086 # the pids that were started, as words
    kill $agent_pid $provider 2>/dev/null || true
    # The agent de-registers before it exits: waited for.
    wait 2>/dev/null || true
    if [ -n "$bus_pid" ]; then kill "$bus_pid" 2>/dev/null || true; fi
}
trap stop EXIT
trap 'exit 143' TERM INT

# A session bus of its own: ready once dbus-daemon --fork returns, which
# prints its address and pid.
bus=$(dbus-daemon --session --fork --print-address=1 --print-pid=1)
DBUS_SESSION_BUS_ADDRESS=$(echo "$bus" | sed -n 1p)
bus_pid=$(echo "$bus" | sed -n 2p)
export DBUS_SESSION_BUS_ADDRESS
# Both on it, whoever runs this.
export DMAGENT_BUS=session
"${PYTHON:-/usr/bin/python3}" "$here/provider.py" --bus --instance 1 &
provider=$!
"$agent" --config "$here/dmagent.toml" --lwm2m-server "$1" ${2:+--acs-url "$2"} run &
agent_pid=$!
# Until the agent ends (or this script is stopped).
wait "$agent_pid"
