#!/bin/bash
# The real NetworkManager and oFono on a private system bus, for the
# platform tests.
#
# Usage: dbus-stack.sh
#
# Starts a dbus-daemon of type system on a socket in a fresh temporary
# directory, a network namespace with a veth pair (veth0 up with
# 198.51.100.1/24, documentation addresses that never leave the
# namespace), NetworkManager inside it (keyfile profiles in the temporary
# directory, no DNS, no connectivity checks, no polkit), oFono inside it
# with its phonesim plugin talking to tests/peers/phonesim.py, the modem
# powered and online. Then prints one line:
#
#   READY bus=<D-Bus address> keyfiles=<NetworkManager profile directory> netns=<name>
#
# and reads commands from stdin, one per line, answering "ok" or
# "error ...":
#
#   cell LAC CI   the modem's network reports a new cell (hex values)
#   nm ARGS...    runs nmcli ARGS... inside the namespace, on this bus
#
# At end of input (or SIGTERM) it stops every process it started, by pid,
# and deletes the namespace and the directory. Needs root (namespaces).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/dmagent-dbus.XXXXXX)
ns=dmagent-test-$$
pids=()

cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
    # A resolver file a test gave the namespace (ip netns exec mounts it).
    rm -rf "/etc/netns/$ns"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

fail() {
    echo "dbus-stack: $*" >&2
    for log in "$work"/*.log; do
        [ -s "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }
    done
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "needs root to create a network namespace"
for tool in dbus-daemon NetworkManager ofonod ip nmcli busctl gdbus; do
    command -v "$tool" >/dev/null || fail "$tool is missing: run scripts/install-deps.sh"
done

mkdir -p "$work/nm/lib" "$work/nm/profiles" "$work/nm/conf.d" "$work/ofono"
cat > "$work/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$work/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
EOF
cat > "$work/nm/NetworkManager.conf" <<EOF
[main]
plugins=keyfile
dns=none
rc-manager=unmanaged
hostname-mode=none
auth-polkit=false
no-auto-default=*

[keyfile]
path=$work/nm/profiles

[connectivity]
enabled=false
EOF
printf '[phonesim]\nDriver=phonesim\nAddress=127.0.0.1\nPort=12345\n' > "$work/ofono/phonesim.conf"

dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile 2> "$work/dbus.log" &
pids+=($!)
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$work/bus.sock"
for _ in $(seq 100); do [ -S "$work/bus.sock" ] && break; sleep 0.05; done
[ -S "$work/bus.sock" ] || fail "the bus did not start"

ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add veth0 type veth peer name veth1

# NetworkManager keeps run and lib state in fixed places: give it private
# ones inside the namespace's own mount namespace.
ip netns exec "$ns" sh -c "
    mkdir -p /run/NetworkManager
    mount -t tmpfs dmagent-nm /run/NetworkManager
    mount -o remount,bind,ro /sys
    mount --bind '$work/nm/lib' /var/lib/NetworkManager
    exec NetworkManager --no-daemon --config='$work/nm/NetworkManager.conf' \
        --config-dir='$work/nm/conf.d' --system-config-dir='$work/nm/conf.d' \
        --state-file='$work/nm/lib/state' --intern-config='$work/nm/lib/intern.conf' \
        --pid-file=/run/NetworkManager/nm.pid" > "$work/nm.log" 2>&1 &
pids+=($!)
ip netns exec "$ns" /usr/bin/python3 "$here/phonesim.py" > "$work/phonesim.log" 2>&1 &
pids+=($!)
ip netns exec "$ns" sh -c "
    mkdir -p /var/lib/ofono
    mount --bind '$work/ofono' /var/lib/ofono
    OFONO_PHONESIM_CONFIG='$work/ofono/phonesim.conf' exec ofonod -n" > "$work/ofono.log" 2>&1 &
pids+=($!)

gdbus wait --system --timeout 20 org.freedesktop.NetworkManager || fail "NetworkManager did not start"
gdbus wait --system --timeout 20 org.ofono || fail "oFono did not start"

modem() {
    for _ in $(seq 100); do
        busctl --system call org.ofono /phonesim "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
modem org.ofono.Modem SetProperty sv Powered b true || fail "the modem did not power up"
modem org.ofono.Modem SetProperty sv Online b true || fail "the modem did not go online"
modem org.ofono.ConnectionManager GetContexts || fail "no packet-data service"
for _ in $(seq 100); do
    busctl --system call org.ofono /phonesim org.ofono.ConnectionManager GetContexts 2>/dev/null \
        | grep -q context && break
    sleep 0.1
done

ip netns exec "$ns" nmcli -w 10 connection add type ethernet ifname veth0 con-name wired \
    ipv4.method manual ipv4.addresses 198.51.100.1/24 ipv6.method disabled autoconnect no \
    > /dev/null || fail "nmcli could not add the wired profile"
ip netns exec "$ns" nmcli -w 10 connection up wired > /dev/null || fail "veth0 did not come up"

echo "READY bus=$DBUS_SYSTEM_BUS_ADDRESS keyfiles=$work/nm/profiles netns=$ns"

while read -r command args; do
    case "$command" in
        cell)
            # The responder's control port lives inside the namespace.
            if ip netns exec "$ns" /usr/bin/python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", 12346), timeout=5)
s.sendall(("cell " + sys.argv[1] + "\n").encode())
assert s.recv(16).startswith(b"ok")' "$args" 2>> "$work/control.log"; then
                echo ok
            else
                echo "error cell $args"
            fi
            ;;
        nm)
            # Word splitting of the arguments is wanted, globbing not.
            set -f
            # shellcheck disable=SC2086
            if out=$(ip netns exec "$ns" nmcli $args 2>&1); then
                echo ok
            else
                echo "error $out" | tr '\n' ' '
                echo
            fi
            set +f
            ;;
        *) echo "error unknown command $command" ;;
    esac
done
