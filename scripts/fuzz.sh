#!/bin/sh
# Coverage-guided fuzzing of every decoder and both protocol engines with
# libFuzzer (libfuzzer-sys), on the stable toolchain: the sanitizer-coverage
# instrumentation cargo-fuzz would ask of a nightly compiler is passed here
# as stable codegen flags, and `--cfg fuzzing` opens the private parsers
# to the targets (fuzz/).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   scripts/fuzz.sh smoke
#
# Runs each target (all by default) for SECONDS (default 600), one after
# the other, on its corpus in target/fuzz/corpus/TARGET seeded from
# fuzz/seeds/TARGET; a crash or hang stops the script with libFuzzer's
# reproducer in target/fuzz/artifacts/TARGET. Prints, per target, the
# executions, executions per second and coverage (edges) libFuzzer
# reports, in target/fuzz/report.tsv too.
#
# `smoke` (the test suite runs it) builds every target and runs each over
# its seeds and 20,000 inputs of a fixed mutation sequence: deterministic,
# a few seconds each, so that the targets keep building and the seeds keep
# passing.
set -eu
cd "$(dirname "$0")/.."

smoke=""
if [ "${1:-}" = smoke ]; then
    smoke=1
    shift
    set -- 0 "$@"
fi
seconds=${1:-600}
[ $# -gt 0 ] && shift
targets=$*
if [ -z "$targets" ]; then
    targets=$(find fuzz/fuzz_targets -name '*.rs' | sed 's|.*/||; s/\.rs$//' | sort)
fi

export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# Its own target directory: the instrumented build never mixes with the
# agent's.
export CARGO_TARGET_DIR="$PWD/target/fuzz/build"
bins=""
for target in $targets; do bins="$bins --bin $target"; done
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros
# (they run on the host and must not be instrumented).
host=$(rustc -vV | sed -n 's/^host: //p')
# The smoke run builds at opt-level 1 (fuzz/Cargo.toml's smoke profile):
# the same instrumentation in a fraction of the build time.
profile=release
[ -n "$smoke" ] && profile=smoke
# Word splitting is wanted: one flag or name per word.
# shellcheck disable=SC2086
cargo build --profile "$profile" --manifest-path fuzz/Cargo.toml --target "$host" $bins
binaries="$CARGO_TARGET_DIR/$host/$profile"

out=target/fuzz
mkdir -p "$out"
report="$out/report.tsv"
printf 'target\tseconds\texecutions\texec_per_s\tedges\n' > "$report"
for target in $targets; do
    corpus="$out/corpus/$target"
    artifacts="$out/artifacts/$target/"
    mkdir -p "$corpus" "$artifacts"
    seeds=""
    [ -d "fuzz/seeds/$target" ] && seeds="fuzz/seeds/$target"
    log="$out/$target.log"
    if [ -n "$smoke" ]; then echo "fuzz: $target (smoke)"; else echo "fuzz: $target for $seconds s"; fi
    # -timeout: an input that takes over 10 s is a hang; -rss_limit_mb:
    # over 2 GiB is unbounded work.
    if [ -n "$smoke" ]; then
        # Seeds only, no corpus from earlier runs: the same inputs each time.
        corpus=$(mktemp -d)
        limit="-runs=20000 -seed=1"
    else
        limit="-max_total_time=$seconds"
    fi
    # shellcheck disable=SC2086
    if ! "$binaries/$target" $limit -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts" \
        "$corpus" $seeds > "$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: $target FAILED; reproducer in $artifacts" >&2
        exit 1
    fi
    [ -n "$smoke" ] && rm -rf "$corpus"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    edges=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    per_second=$(( ${runs:-0} / (seconds > 0 ? seconds : 1) ))
    printf '%s\t%s\t%s\t%s\t%s\n' "$target" "$seconds" "${runs:-0}" "$per_second" "${edges:-0}" >> "$report"
    echo "fuzz: $target: ${runs:-0} executions (${per_second}/s), ${edges:-0} edges"
done
column -t "$report" 2>/dev/null || cat "$report"
