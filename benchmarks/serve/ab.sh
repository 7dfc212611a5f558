#!/usr/bin/env bash
# Before/after comparison of two `relbert serve` binaries on the load of run.sh (README.md
# here), alternating them so both see the same machine: 127.0.0.1 only, bounded in time.
#   benchmarks/serve/ab.sh BEFORE_BIN AFTER_BIN stored|encoded CLIENTS SECONDS ROUNDS
# e.g. benchmarks/serve/ab.sh /tmp/relbert-before target/release/relbert encoded 1,64 8 3
# Needs the index and pair lists run.sh makes (run it once first; BENCH_INDEX=DIR serves another
# index, e.g. the float16 one). Prints one JSON line per
# run and, per server, the encoder's pairs and forward passes from /v1/metrics.
set -euo pipefail
cd "$(dirname "$0")/../.."
before=$1 after=$2 kind=$3 clients=$4 secs=$5 rounds=$6
work=${BENCH_DIR:-target/serve-bench}
index=${BENCH_INDEX:-$work/idx}
load=${CARGO_TARGET_DIR:-target}/release/examples/serve_load
port=18090
for r in $(seq "$rounds"); do
    for name in before after; do
        if [ "$name" = before ]; then bin=$before; else bin=$after; fi
        RELBERT_LOG=warn "$bin" serve --index "$index" --addr 127.0.0.1:$port 2> "$work/ab-server.log" &
        pid=$!
        for _ in $(seq 300); do curl -sf http://127.0.0.1:$port/v1/health >/dev/null && break; sleep 0.2; done
        echo "# round $r, $name, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
        "$load" --addr 127.0.0.1:$port --pairs "$work/$kind.tsv" --clients "$clients" --seconds "$secs" --label "$name-$kind"
        curl -s http://127.0.0.1:$port/v1/metrics | grep -E '^relbert_encoder_batch_size_(sum|count)' | sed 's/^/# /'
        kill -TERM $pid; wait $pid || true
    done
done
