#!/bin/sh
# Installs aiocoap (PyPI), the CoAP library the LwM2M end-to-end test
# drives as a server, into a virtual environment outside the checkout.
# Prints the environment's python.
set -eu

version="0.4.17"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/dmagent/venv"
if ! "$venv/bin/python" -c "import sys, aiocoap.meta; sys.exit(aiocoap.meta.version != '$version')" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet "aiocoap==$version" >&2
fi
echo "$venv/bin/python"
