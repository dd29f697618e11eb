#!/bin/sh
# Runs dmagent with IPSO Temperature (3303) declared and served by
# provider.py as a D-Bus provider, both on a session bus of their own,
# against the LwM2M server COAP_URI (and the ACS ACS_URL, if given), until
# killed. The agent binary: $DMAGENT, else target/release or target/debug
# of this checkout, else dmagent on the PATH. The provider needs
# python3-dbus and python3-gi (scripts/install-deps.sh installs them).
#
#   examples/temperature/run.sh coap://127.0.0.1:5683 [http://127.0.0.1:7547/]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 COAP_URI [ACS_URL]" >&2
    exit 64
fi
if [ -z "${DMAGENT_EXAMPLE_BUS:-}" ]; then
    command -v dbus-run-session >/dev/null || {
        echo "$0: dbus-run-session is missing (Debian: dbus-daemon)" >&2
        exit 69
    }
    # A session bus of its own, gone with the script.
    DMAGENT_EXAMPLE_BUS=1 exec dbus-run-session -- "$0" "$@"
fi
agent=${DMAGENT:-}
for candidate in "$here/../../target/release/dmagent" "$here/../../target/debug/dmagent"; do
    [ -z "$agent" ] && [ -x "$candidate" ] && agent=$candidate
done
agent=${agent:-dmagent}
# Both on the session bus, whoever runs this.
export DMAGENT_BUS=session
"${PYTHON:-/usr/bin/python3}" "$here/provider.py" --bus --instance 1 &
provider=$!
"$agent" --config "$here/dmagent.toml" --lwm2m-server "$1" ${2:+--acs-url "$2"} run &
agent_pid=$!
trap 'kill "$agent_pid" "$provider" 2>/dev/null || true' EXIT
trap 'exit 143' TERM INT
# Until the agent ends (or this script is killed).
wait "$agent_pid"
