#!/bin/sh
# Installs the Python peers the end-to-end tests drive, from PyPI, into a
# virtual environment outside the checkout: aiocoap (the LwM2M server of
# the LwM2M tests) and pyftpdlib (the FTP server of the CWMP transfer
# tests). Prints the environment's python.
set -eu

aiocoap="0.4.17"
pyftpdlib="2.2.0"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/dmagent/venv"
if ! "$venv/bin/python" -c "
import sys, aiocoap.meta, pyftpdlib
sys.exit(aiocoap.meta.version != '$aiocoap' or pyftpdlib.__ver__ != '$pyftpdlib')
" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet "aiocoap==$aiocoap" "pyftpdlib==$pyftpdlib" >&2
fi
echo "$venv/bin/python"
