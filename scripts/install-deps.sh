#!/bin/sh
# Installs what building and testing dmagent needs on a fresh Debian
# machine. Idempotent: installs only what is missing. Later features add
# their packages here (xmllint, dbus-daemon, python3-dbusmock, ...), never
# by hand.
set -eu

need_rust="1.95"

have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing Debian packages: $*; run as root or install them" >&2
        exit 1
    fi
    if [ -z "${DMAGENT_APT_UPDATED:-}" ]; then
        apt-get update -qq
        DMAGENT_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=""
have cc || missing="$missing gcc libc6-dev"
have git || missing="$missing git"
# xmllint validates every CWMP message the agent emits against cwmp-1-4.xsd.
have xmllint || missing="$missing libxml2-utils"
# acsrs, the test ACS, makes its TLS certificate with openssl at start.
have openssl || missing="$missing openssl"
# python3-venv: the LwM2M end-to-end test runs aiocoap from a virtualenv.
python3 -c "import venv, ensurepip" 2>/dev/null || missing="$missing python3-venv"
# The platform tests run the real NetworkManager and oFono on a private
# system bus in a network namespace (tests/peers/dbus-stack.sh), and
# python-dbusmock for what those cannot do here (Wi-Fi radios). ip makes
# the namespace; nmcli, busctl and gdbus drive and wait for the daemons.
have dbus-daemon || missing="$missing dbus-daemon"
have NetworkManager || missing="$missing network-manager"
have ofonod || missing="$missing ofono"
have ip || missing="$missing iproute2"
have gdbus || missing="$missing libglib2.0-bin"
have busctl || missing="$missing systemd"
/usr/bin/python3 -c "import dbusmock" 2>/dev/null || missing="$missing python3-dbusmock"
# The temperature example's D-Bus provider (examples/temperature/provider.py
# --bus), which the provider tests run: dbus-python and PyGObject.
/usr/bin/python3 -c "import dbus.mainloop.glib, gi" 2>/dev/null || missing="$missing python3-dbus python3-gi"
# coturn's turnserver is the STUN server the UDP connection-request test
# binds to (TR-069 Annex G).
have turnserver || missing="$missing coturn"
# The shell scripts are checked by a test; the unit file by systemd-analyze.
have shellcheck || missing="$missing shellcheck"
have systemd-analyze || missing="$missing systemd"
# Word splitting is wanted: one package name per word.
# shellcheck disable=SC2086
[ -n "$missing" ] && apt_install $missing

if ! have cargo; then
    # Debian's own cargo is older than the edition this workspace uses;
    # rustup (Debian 13's package, or from rustup.rs) provides a current one.
    if apt-cache show rustup >/dev/null 2>&1; then
        apt_install rustup
        rustup default stable
    else
        echo "install-deps: cargo >= $need_rust not found; install Rust with rustup" >&2
        exit 1
    fi
fi

version=$(rustc --version | sed -n 's/^rustc \([0-9]*\.[0-9]*\).*/\1/p')
if [ "$(printf '%s\n%s\n' "$need_rust" "$version" | sort -V | head -n1)" != "$need_rust" ]; then
    echo "install-deps: rustc $version is older than $need_rust; run 'rustup update stable'" >&2
    exit 1
fi

# The real ACS the CWMP end-to-end test talks to.
"$(dirname "$0")/install-acsrs.sh" >/dev/null

# The CoAP and FTP peers the end-to-end tests drive (aiocoap, pyftpdlib).
"$(dirname "$0")/install-py-peers.sh" >/dev/null
