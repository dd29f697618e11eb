#!/bin/sh
# Installs what testing dmagent needs on a fresh Debian machine, on top of
# what building and running it need (scripts/install-run-deps.sh, which
# installs the packages missing here with its own). Idempotent: installs
# only what is missing. Later features add their packages here, never by
# hand.
set -eu

have() { command -v "$1" >/dev/null 2>&1; }

missing=""
have git || missing="$missing git"
# xmllint validates every CWMP message the agent emits against cwmp-1-4.xsd.
have xmllint || missing="$missing libxml2-utils"
# acsrs, the test ACS, makes its TLS certificate with openssl at start.
have openssl || missing="$missing openssl"
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
# mosquitto is the MQTT broker of the USP end-to-end tests (TR-369's
# MQTT binding).
have mosquitto || missing="$missing mosquitto"
# nft: the NAT test puts a masquerade rule in a namespace of its own and
# the agent reads the ruleset back (Device.NAT.InterfaceSetting).
have nft || missing="$missing nftables"
# The shell scripts are checked by a test; the unit file by systemd-analyze.
have shellcheck || missing="$missing shellcheck"
have systemd-analyze || missing="$missing systemd"
# build-deb.sh (run by the test command) reads the binary's glibc needs.
have objdump || missing="$missing binutils"
# The footprint benchmark (cargo bench -p dmagent --bench footprint)
# reports each binary's size compressed with xz.
have xz || missing="$missing xz-utils"

# What building and the demo need, and these with them. Word splitting is
# wanted: one package name per word.
# shellcheck disable=SC2086
"$(dirname "$0")/install-run-deps.sh" $missing

# The real ACS the CWMP end-to-end test talks to.
"$(dirname "$0")/install-acsrs.sh" >/dev/null
