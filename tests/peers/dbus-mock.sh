#!/bin/bash
# python-dbusmock services on a private bus, for what the real daemons
# cannot do here: Wi-Fi radios, services that come and go, error replies,
# logind's Reboot (which must not reboot the test machine).
#
# Usage: dbus-mock.sh
#
# Starts a dbus-daemon on a socket in a fresh temporary directory (no root
# needed), prints
#
#   READY bus=<D-Bus address>
#
# and reads commands from stdin, one per line, answering one line, "ok
# [output]" or "error ...":
#
#   start TEMPLATE   starts python-dbusmock's TEMPLATE (networkmanager,
#                    logind, ofono, timedated, modemmanager) as a system
#                    service, waits for its name
#   stop TEMPLATE    stops it (its name leaves the bus)
#   call ARGS...     busctl --system call ARGS... (e.g. the mocks' own
#                    org.freedesktop.DBus.Mock methods)
#
# At end of input it stops everything it started, by pid.
set -euo pipefail

work=$(mktemp -d /tmp/dmagent-dbusmock.XXXXXX)
declare -A mocks=()
pids=()

cleanup() {
    for pid in "${pids[@]}" ${mocks[@]+"${mocks[@]}"}; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

for tool in dbus-daemon busctl gdbus; do
    command -v "$tool" >/dev/null || { echo "dbus-mock: $tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
/usr/bin/python3 -c 'import dbusmock' 2>/dev/null \
    || { echo "dbus-mock: python3-dbusmock is missing: run scripts/install-deps.sh" >&2; exit 1; }

dbus-daemon --session --nofork --nopidfile --address="unix:path=$work/bus.sock" 2> "$work/dbus.log" &
pids+=($!)
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$work/bus.sock"
for _ in $(seq 100); do [ -S "$work/bus.sock" ] && break; sleep 0.05; done
[ -S "$work/bus.sock" ] || { echo "dbus-mock: the bus did not start" >&2; exit 1; }

name_of() {
    case "$1" in
        networkmanager) echo org.freedesktop.NetworkManager ;;
        logind) echo org.freedesktop.login1 ;;
        ofono) echo org.ofono ;;
        timedated) echo org.freedesktop.timedate1 ;;
        modemmanager) echo org.freedesktop.ModemManager1 ;;
        *) return 1 ;;
    esac
}

# Debian's python-dbusmock has no ModemManager template: PyPI's, which
# scripts/install-py-peers.sh puts there, runs it on the same python.
pypi_dbusmock="${XDG_CACHE_HOME:-$HOME/.cache}/dmagent/dbusmock-0.38.1"
python_path() {
    case "$1" in
        modemmanager)
            [ -f "$pypi_dbusmock/dbusmock/templates/modemmanager.py" ] || return 1
            echo "$pypi_dbusmock" ;;
        *) echo "" ;;
    esac
}

echo "READY bus=$DBUS_SYSTEM_BUS_ADDRESS"

while read -r command args; do
    case "$command" in
        start)
            if ! name=$(name_of "$args"); then
                echo "error unknown template $args"
                continue
            fi
            if [ -n "${mocks[$args]:-}" ]; then
                kill "${mocks[$args]}" 2>/dev/null || true
                wait "${mocks[$args]}" 2>/dev/null || true
            fi
            if ! path=$(python_path "$args"); then
                echo "error the $args template is missing: run scripts/install-deps.sh"
                continue
            fi
            PYTHONPATH="$path" /usr/bin/python3 -m dbusmock --system -t "$args" > "$work/$args.log" 2>&1 &
            mocks[$args]=$!
            if gdbus wait --system --timeout 20 "$name"; then
                echo ok
            else
                echo "error $args did not start: $(tail -n 3 "$work/$args.log" | tr '\n' ' ')"
            fi
            ;;
        stop)
            if [ -n "${mocks[$args]:-}" ]; then
                kill "${mocks[$args]}" 2>/dev/null || true
                wait "${mocks[$args]}" 2>/dev/null || true
                unset "mocks[$args]"
            fi
            echo ok
            ;;
        call)
            # Word splitting of the arguments is wanted.
            # shellcheck disable=SC2086
            if out=$(eval busctl --system call $args 2>&1); then
                echo "ok $out" | tr '\n' ' '
                echo
            else
                echo "error $out" | tr '\n' ' '
                echo
            fi
            ;;
        *) echo "error unknown command $command" ;;
    esac
done
