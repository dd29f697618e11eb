#!/bin/sh
# Installs what building dmagent and running its demo need on a fresh
# Debian machine: a C compiler, Rust (cargo >= the workspace's version),
# and the LwM2M server the demo runs against (aiocoap, from PyPI, in a
# virtual environment outside the checkout). Idempotent: installs only
# what is missing. scripts/install-deps.sh adds what the tests need, by
# naming the Debian packages it misses as arguments: installed here with
# the rest, in one apt-get run.
set -eu

need_rust="1.95"

have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-run-deps: missing Debian packages: $*; run as root or install them" >&2
        exit 1
    fi
    if [ -z "${DMAGENT_APT_UPDATED:-}" ]; then
        apt-get update -qq
        DMAGENT_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing="$*"
have cc || missing="$missing gcc libc6-dev"
# The demo's LwM2M server is aiocoap in a virtualenv.
python3 -c "import venv, ensurepip" 2>/dev/null || missing="$missing python3-venv"
# Its DTLSSocket (tinydtls, for coaps://) is built from source with
# autoreconf.
have autoreconf || missing="$missing autoconf"
have automake || missing="$missing automake"
# Word splitting is wanted: one package name per word.
# shellcheck disable=SC2086
if [ -n "$(echo "$missing" | tr -d ' ')" ]; then apt_install $missing; fi

if ! have cargo; then
    # Debian's own cargo is older than the edition this workspace uses;
    # rustup (Debian 13's package, or from rustup.rs) provides a current one.
    if apt-cache show rustup >/dev/null 2>&1; then
        apt_install rustup
        rustup default stable
    else
        echo "install-run-deps: cargo >= $need_rust not found; install Rust with rustup" >&2
        exit 1
    fi
fi

version=$(rustc --version | sed -n 's/^rustc \([0-9]*\.[0-9]*\).*/\1/p')
if [ "$(printf '%s\n%s\n' "$need_rust" "$version" | sort -V | head -n1)" != "$need_rust" ]; then
    echo "install-run-deps: rustc $version is older than $need_rust; run 'rustup update stable'" >&2
    exit 1
fi

# aiocoap (and pyftpdlib, which the tests use) from PyPI.
"$(dirname "$0")/install-py-peers.sh" >/dev/null
