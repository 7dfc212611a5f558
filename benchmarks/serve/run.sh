#!/usr/bin/env bash
# Load benchmark of `relbert serve` (see README.md here). 127.0.0.1 only, bounded in time.
#   benchmarks/serve/run.sh [SECONDS_PER_RUN=10] [SOAK_SECONDS=300]
# Builds (once) an index of 4000 pairs (every 37th line of index/vocab) with the default
# model, then: stored-pair and encoded-pair queries at 1/8/64/256 clients, a soak at 64
# clients with RSS samples, and the same encoded queries through `relbert query --json` stdin.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
soak=${2:-300}
work=${BENCH_DIR:-target/serve-bench}
mkdir -p "$work"
bin=${CARGO_TARGET_DIR:-target}/release/relbert
load=${CARGO_TARGET_DIR:-target}/release/examples/serve_load
cargo build --release --bin relbert --example serve_load >&2
# An index left by an earlier run is kept with its pairs.tsv; without one, pairs.tsv is made anew.
[ -f "$work/idx/meta" ] || rm -f "$work/pairs.tsv"
benchmarks/serve/pairs.sh "$work"
[ -f "$work/idx/meta" ] ||
    "$bin" index build --model models/all-MiniLM-L6-v2 --pairs "$work/pairs.tsv" --out "$work/idx" >&2
port=18089
RELBERT_LOG=warn "$bin" serve --index "$work/idx" --addr 127.0.0.1:$port 2> "$work/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -sf http://127.0.0.1:$port/v1/health >/dev/null && break; sleep 0.2; done
# Every line of standard output is a JSON object (JSON Lines): the machine first, then one
# line per run.
printf '{"label": "machine", "cores": %d, "cpu": "%s", "loadavg": "%s", "date": "%s"}\n' \
    "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//; s/["\\]//g')" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$(date -u +%FT%TZ)"
"$load" --addr 127.0.0.1:$port --pairs "$work/stored.tsv" --clients 1,8,64,256 --seconds "$secs" --pid $pid --label stored
"$load" --addr 127.0.0.1:$port --pairs "$work/encoded.tsv" --clients 1,8,64,256 --seconds "$secs" --pid $pid --label encoded
curl -s http://127.0.0.1:$port/v1/metrics | awk '
    /^relbert_encoder_batch_size_sum / { s = $2 } /^relbert_encoder_batch_size_count / { c = $2 }
    END { printf "{\"label\": \"encoder_batches\", \"pairs\": %d, \"forward_passes\": %d}\n", s, c }'
if [ "$soak" -gt 0 ]; then
    # Soak: stored and encoded pairs mixed at 64 clients.
    cat "$work/stored.tsv" "$work/encoded.tsv" | shuf --random-source=<(yes) > "$work/mixed.tsv"
    "$load" --addr 127.0.0.1:$port --pairs "$work/mixed.tsv" --clients 64 --seconds "$soak" --pid $pid --rss-every 30 --label soak-mixed
fi
kill -TERM $pid; wait $pid || true
trap - EXIT
# The CLI for comparison: one process, queries on stdin, the same pairs.
for kind in stored encoded; do
    n=500
    sed -n "1,${n}p" "$work/$kind.tsv" > "$work/cli-$kind.tsv"
    start=$(date +%s.%N)
    RELBERT_LOG=warn "$bin" query --json --index "$work/idx" < "$work/cli-$kind.tsv" > "$work/cli-$kind.jsonl"
    end=$(date +%s.%N)
    # awk, not bc: bc prints 0.5 as .5, which is not JSON.
    awk -v kind="$kind" -v n=$n -v s="$start" -v e="$end" \
        'BEGIN { printf "{\"label\": \"cli-stdin-%s\", \"queries\": %d, \"seconds\": %.6f, \"throughput_rps\": %.3f}\n", kind, n, e - s, n / (e - s) }'
done
