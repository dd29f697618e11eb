#!/bin/sh
# Runs dmagent with IPSO Temperature (3303) declared and served by
# provider.py, against the LwM2M server COAP_URI (and the ACS ACS_URL, if
# given), until killed. The agent binary: $DMAGENT, else target/release
# or target/debug of this checkout, else dmagent on the PATH.
#
#   examples/temperature/run.sh coap://127.0.0.1:5683 [http://127.0.0.1:7547/]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 COAP_URI [ACS_URL]" >&2
    exit 64
fi
agent=${DMAGENT:-}
for candidate in "$here/../../target/release/dmagent" "$here/../../target/debug/dmagent"; do
    [ -z "$agent" ] && [ -x "$candidate" ] && agent=$candidate
done
agent=${agent:-dmagent}
set -- --lwm2m-server "$1" ${2:+--acs-url "$2"}
exec "$agent" --config "$here/dmagent.toml" "$@" run
