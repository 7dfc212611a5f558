#!/usr/bin/env bash
# Before/after comparison of two `relbert` binaries on `relbert index build`'s encoding rate,
# alternating them so both see the same machine.
#   benchmarks/build_ab.sh BEFORE_BIN AFTER_BIN PAIRS DTYPES ROUNDS
# e.g. benchmarks/build_ab.sh /tmp/relbert-before target/release/relbert pairs.tsv bf16,f32 3
# Builds with the default model into a scratch directory (removed at the end) and prints the
# build's own summary line (encoding seconds and pairs/s) per run, with the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1 after=$2 pairs=$3 dtypes=$4 rounds=$5
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "# machine: $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); pairs: $pairs ($(wc -l < "$pairs") lines)"
for r in $(seq "$rounds"); do
    for dtype in ${dtypes//,/ }; do
        for name in before after; do
            if [ "$name" = before ]; then bin=$before; else bin=$after; fi
            line=$(RELBERT_LOG=info "$bin" index build --pairs "$pairs" --out "$work/idx" --dtype "$dtype" --force 2>&1 | grep -E 'INFO index .*encoding' | sed 's/.*INFO //')
            echo "round $r $dtype $name load $(cut -d' ' -f1 /proc/loadavg) $(date -u +%FT%TZ): $line"
        done
    done
done
