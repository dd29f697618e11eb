#!/usr/bin/env bash
# Compares the DTLS libraries the LwM2M client could use (the footprint
# issue): builds dtls-compare/'s PSK client once per library with the
# agent's release profile and link, runs each against openssl s_server
# (DTLS 1.2, TLS_PSK_WITH_AES_128_CCM_8) on 127.0.0.1, and prints the
# stripped and xz sizes beside a program with no DTLS at all. By hand, not
# in CI: it needs openssl and libssl-dev (apt-get install openssl
# libssl-dev pkg-config) and builds five release binaries (about 3 min).
set -euo pipefail
cd "$(dirname "$0")/../dtls-compare"
command -v openssl > /dev/null || { echo "dtls-compare: needs the openssl command" >&2; exit 1; }
key=00112233445566778899aabbccddeeff
# name, binary, cargo features
probes=(
    "none (std, a UDP socket)|bare|"
    "rtc-dtls 0.21 (ring)|rtc|rtc"
    "dimpl 0.9 (RustCrypto)|dimpl|dimpl-rc"
    "dimpl 0.9 (aws-lc-rs)|dimpl|dimpl-aws"
    "openssl 0.10 (system libssl3)|ossl|ossl"
)
printf '| library | stripped B | xz B | more than none | s_server saw |\n|---|---|---|---|---|\n'
base=
for probe in "${probes[@]}"; do
    IFS='|' read -r name bin features <<< "$probe"
    dir="target/${features:-bare}"
    cargo build --release -q --bin "$bin" ${features:+--features "$features"} --target-dir "$dir"
    exe="$dir/release/$bin"
    size=$(stat -c %s "$exe")
    xz=$(xz -9e -c "$exe" | wc -c)
    base=${base:-$size}
    saw="(no server)"
    if [[ $bin != bare ]]; then
        port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        log=$(mktemp)
        # s_server quits at the end of its input: it gets 15 s of none.
        (sleep 15 | openssl s_server -dtls1_2 -accept "127.0.0.1:$port" -nocert \
            -psk "$key" -psk_identity probe -cipher PSK-AES128-CCM8 > "$log" 2>&1) 2> /dev/null &
        server=$!
        for _ in $(seq 50); do grep -q ACCEPT "$log" && break; sleep 0.1; done
        if "$exe" "127.0.0.1:$port" probe "$key" > /dev/null; then
            for _ in $(seq 50); do grep -qa "hello from" "$log" && break; sleep 0.1; done
            cipher=$(grep -a -o 'CIPHER is [A-Z0-9-]*' "$log" | cut -d' ' -f3)
            grep -qa "hello from" "$log" && saw="${cipher:-?} and the data" || saw="${cipher:-?}, no data"
        else
            saw="handshake failed"
        fi
        pkill -P "$server" 2> /dev/null || true
        wait "$server" 2> /dev/null || true
        rm -f "$log"
    fi
    printf '| %s | %s | %s | %s | %s |\n' "$name" "$size" "$xz" "$((size - base))" "$saw"
done
