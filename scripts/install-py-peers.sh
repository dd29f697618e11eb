#!/bin/sh
# Installs the Python peers the end-to-end tests drive, from PyPI, into a
# virtual environment outside the checkout: aiocoap (the LwM2M server of
# the LwM2M tests) with DTLSSocket (tinydtls, for its coaps:// server;
# built from source, with autoconf and automake), pyftpdlib (the FTP
# server of the CWMP transfer tests), and paho-mqtt, websockets and grpcio-tools (the USP controller
# of the USP tests: MQTT 5, WebSocket, and protoc to compile the official
# .proto files).
# Prints the environment's python.
#
# Also python-dbusmock from PyPI, beside Debian's (which has no
# ModemManager template): pure Python, into a directory of its own that
# tests/peers/dbus-mock.sh puts on PYTHONPATH for the templates Debian's
# lacks. It runs on Debian's python3 and its dbus-python.
set -eu

aiocoap="0.4.17"
dtlssocket="0.2.3"
pyftpdlib="2.2.0"
dbusmock="0.38.1"
paho="2.2.0"
grpcio_tools="1.85.4"
websockets="17.4"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/dmagent"
venv="$cache/venv"
if ! "$venv/bin/python" -c "
import sys, aiocoap.meta, pyftpdlib, importlib.metadata as m
sys.exit(aiocoap.meta.version != '$aiocoap' or pyftpdlib.__ver__ != '$pyftpdlib'
         or m.version('paho-mqtt') != '$paho' or m.version('grpcio-tools') != '$grpcio_tools'
         or m.version('websockets') != '$websockets' or m.version('DTLSSocket') != '$dtlssocket')
" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet "aiocoap==$aiocoap" "DTLSSocket==$dtlssocket" \
        "pyftpdlib==$pyftpdlib" "paho-mqtt==$paho" "grpcio-tools==$grpcio_tools" \
        "websockets==$websockets" >&2
fi
if [ ! -f "$cache/dbusmock-$dbusmock/dbusmock/templates/modemmanager.py" ]; then
    "$venv/bin/pip" install --quiet --no-deps --target "$cache/dbusmock-$dbusmock" \
        "python-dbusmock==$dbusmock" >&2
fi
echo "$venv/bin/python"
