#!/usr/bin/env bash
# Fuzzes the relbert-index file readers with cargo-fuzz (libFuzzer + AddressSanitizer): each
# target of index/fuzz/ (index_open, index_bytes) runs SECONDS_PER_TARGET seconds (default 60)
# from a temporary copy of its committed seed corpus, index/fuzz/corpus/<target>/, so the
# repository is not modified. Prints the executions per target; exits non-zero if a target
# crashes (panic, sanitizer report, timeout or out-of-memory), keeping the crash input and the
# log in the temporary directory it names.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Needs a nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz with
# `cargo install cargo-fuzz --locked` if absent (30 s on the dev machine). The instrumented
# build goes to $FUZZ_TARGET_DIR (default target/fuzz); from scratch it took 5 min 35 s on the
# 2-core dev machine (shared with other builds), about 40 s after a change to relbert-index
# alone. Total time: build + targets × (SECONDS_PER_TARGET + a few seconds of start-up), so
# about 8 minutes from cold with the default 60 s.
#
# The main crate's parsers are fuzzed with proptest instead (tests/fuzz_parsers.rs, part of
# `cargo test`); see benchmarks/robustness.md ("Fuzzing") for figures.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi
targets=(index_open index_bytes)

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo +nightly install cargo-fuzz --locked
fi

export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target/fuzz}"
work="$(mktemp -d "${TMPDIR:-/tmp}/relbert-fuzz.XXXXXX")"
# The harnesses rewrite index files for every input; on tmpfs that costs no disk flushes.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    scratch="$(mktemp -d /dev/shm/relbert-fuzz.XXXXXX)"
else
    scratch="$work/scratch"
    mkdir -p "$scratch"
fi
export RELBERT_FUZZ_SCRATCH="$scratch"
trap 'rm -rf "$scratch"' EXIT

cd index
echo "fuzz.sh: building the fuzz targets (target dir $CARGO_TARGET_DIR)"
start=$SECONDS
cargo +nightly fuzz build
echo "fuzz.sh: built in $((SECONDS - start)) s"

failed=0
for t in "${targets[@]}"; do
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
    cp fuzz/corpus/"$t"/* "$work/$t/corpus/"
    start=$SECONDS
    rc=0
    cargo +nightly fuzz run "$t" "$work/$t/corpus" -- \
        -max_total_time="$secs" -timeout=30 -print_final_stats=1 \
        -artifact_prefix="$work/$t/artifacts/" >"$work/$t/log" 2>&1 || rc=$?
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t/log" | grep -o '[0-9]*$' || true)"
    if [ -z "$execs" ]; then
        execs="$(grep -o '^#[0-9]*' "$work/$t/log" | tail -n 1 | tr -d '#' || true)"
    fi
    crashes="$(find "$work/$t/artifacts" -type f | wc -l)"
    echo "fuzz.sh: $t: ${execs:-?} executions in $((SECONDS - start)) s, exit $rc, $crashes crash file(s)"
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        grep -v 'Uses:' "$work/$t/log" | grep -m 1 -A 20 -E 'panicked|ERROR|SUMMARY' || tail -n 30 "$work/$t/log"
        echo "fuzz.sh: $t FAILED; log $work/$t/log, inputs:"
        find "$work/$t/artifacts" -type f
        echo "fuzz.sh: reproduce with: (cd index && cargo +nightly fuzz run $t <input>)"
    fi
done
if [ "$failed" -ne 0 ]; then
    exit 1
fi
rm -rf "$work"
echo "fuzz.sh: no crash"
