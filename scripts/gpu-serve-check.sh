#!/usr/bin/env bash
# One unattended GPU check of `relbert serve --device cuda:0` (issue 23's encoded path on a GPU),
# ~4 minutes on one H100/H200 with PyTorch installed (it makes the model) and no network:
#   1. facts (GPU, driver, cores, the binary and its CUDA libraries);
#   2. a random-weight MiniLM-shaped model (scripts/gpu_peer.py; answers and speed do not
#      depend on the weights) and a 4,000-pair index built on the CPU, chosen by
#      benchmarks/serve/pairs.sh as for benchmarks/serve/run.sh, with 2,000 encoded
#      pairs (never stored ones);
#   3. start-up on a cold kernel cache (CUDA_CACHE_PATH empty, so the driver compiles the
#      PTX as on a fresh machine): seconds until /v1/health says ready, and the first encoded
#      query's latency: the start's warm-up pass must take the compile, not the first request;
#   4. parity: 200 encoded pairs through /v1/query and /v1/embed of the GPU server against a
#      CPU server on the same index (same top-10 pairs, largest score difference, worst cosine);
#   5. load (benchmarks/serve/load.rs, 127.0.0.1, SECS seconds per run): encoded pairs at
#      1/8/64/256 clients and stored pairs at 64 on the GPU server at f32; the CPU server's
#      encoded pairs at 1 and 64 for comparison on the same machine; the GPU server at bf16,
#      then at bf16 with --max-batch 64 --max-batch-tokens 4096 (the CPU's defaults, against
#      the GPU's 512 and 32,768); after each run, its forward passes and mean batch size.
# Results in OUT (default gpu-serve-out/): facts.txt, startup.json, parity.json, load.jsonl,
# server-*.log, summary.txt. Each step is time-boxed; a failing one does not stop the rest.
#
# Before (on any machine, with network): scripts/build-cuda.sh --release --bin relbert
# --example serve_load; bring target/release/relbert and target/release/examples/serve_load
# (or set RELBERT_BIN / RELBERT_LOAD_BIN).
#
#   scripts/gpu-serve-check.sh [OUT]     env: PYTHON, SECS (8), RELBERT_BIN, RELBERT_LOAD_BIN;
#   DEVICE (cuda:0) and MODEL (a model folder instead of the random one) try the script
#   without a GPU: DEVICE=cpu MODEL=models/all-MiniLM-L6-v2 SECS=2.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-serve-out}}
mkdir -p "$out"
work=$(mktemp -d)
py=${PYTHON:-python3}
bin=${RELBERT_BIN:-${CARGO_TARGET_DIR:-target}/release/relbert}
load=${RELBERT_LOAD_BIN:-${CARGO_TARGET_DIR:-target}/release/examples/serve_load}
secs=${SECS:-8}
device=${DEVICE:-cuda:0}
start=$SECONDS
# Servers still running at the end (the shell's own jobs: never a pid reused by another).
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
say() { echo "gpu-serve-check [$((SECONDS - start)) s] $*" | tee -a "$out/summary.txt" >&2; }

. scripts/gpu-env.sh

# 1. Facts.
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
    echo "nproc $(nproc)"
    grep -m1 'model name' /proc/cpuinfo
    echo "relbert: $("$bin" --version 2>&1)"
    ldd "$bin" 2>&1 | grep -E 'cuda|cublas|curand|nvrtc|not found'
} > "$out/facts.txt"
say "facts: $(sed -n 3p "$out/facts.txt")"

# 2. Model, pairs, index (the CPU builds it, so that step 3's GPU start is the first GPU use).
tokenizer=models/relbert-minilm/tokenizer.json
if [ -n "${MODEL:-}" ]; then
    ln -s "$(realpath "$MODEL")" "$work/minilm"
else
    timeout 120 "$py" scripts/gpu_peer.py model --shape minilm --tokenizer "$tokenizer" --out "$work/minilm" >/dev/null ||
        say "FAILED: making the model"
fi
benchmarks/serve/pairs.sh "$work"
RELBERT_LOG=warn timeout 180 "$bin" index build --model "$work/minilm" --pairs "$work/pairs.tsv" \
    --out "$work/idx" 2> "$out/build.log" || say "FAILED: index build (build.log)"
say "model, $(wc -l < "$work/pairs.tsv") pairs and the index ready; $(wc -l < "$work/encoded.tsv") encoded pairs"

# Starts a server on port $1 (log server-$2.log) with the rest as options; sets $server (its
# pid) and $ready (seconds until /v1/health said ready, null if it never did within 120 s or
# the server ended). Its access log
# is off (it would cost the load runs), the start's lines and the warm-up's time are kept.
serve() {
    local port=$1 name=$2
    shift 2
    local t0
    t0=$(date +%s.%N)
    RELBERT_LOG=warn,relbert::serve=info,relbert::serve::access=warn,relbert::serve::batcher=debug \
        "$bin" serve --index "$work/idx" --addr 127.0.0.1:$port "$@" \
        > /dev/null 2> "$out/server-$name.log" &
    server=$!
    ready=null
    for _ in $(seq 600); do
        if curl -sf http://127.0.0.1:$port/v1/health >/dev/null; then
            ready=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
            return
        fi
        kill -0 $server 2>/dev/null || break
        sleep 0.2
    done
    say "FAILED: server $name never said ready (server-$name.log)"
}
stop() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
# Pairs encoded and forward passes so far, from /v1/metrics: "PAIRS PASSES".
passes() {
    curl -s http://127.0.0.1:$1/v1/metrics | awk '
        /^relbert_encoder_batch_size_sum / { s = $2 } /^relbert_encoder_batch_size_count / { c = $2 }
        END { printf "%d %d", s, c }'
}
# Load runs against port $1: label $2, pairs file $3, client counts $4 (comma-separated), one
# run per count, each JSON line followed by the encoder's pairs and forward passes during that
# run alone (the counters' difference around it), whose ratio is the mean batch size.
run_load() {
    local port=$1 label=$2 pairs=$3 c before after
    for c in ${4//,/ }; do
        before=$(passes $port)
        timeout $((secs * 2 + 60)) "$load" --addr 127.0.0.1:$port --pairs "$pairs" --clients $c \
            --seconds "$secs" --label "$label" >> "$out/load.jsonl" 2>> "$out/load.log" ||
            say "FAILED: load $label ($c clients)"
        after=$(passes $port)
        awk -v l="$label" -v c=$c -v b="$before" -v a="$after" 'BEGIN {
            split(b, x, " "); split(a, y, " "); p = y[1] - x[1]; f = y[2] - x[2]
            printf "{\"label\": \"%s-encoder\", \"clients\": %d, \"pairs_encoded\": %d, \"forward_passes\": %d, \"mean_batch\": %s}\n", l, c, p, f, (f > 0 ? sprintf("%.1f", p / f) : "null") }' >> "$out/load.jsonl"
    done
    say "load $label at $4 clients done"
}

# 3. Cold start on the GPU.
export CUDA_CACHE_PATH=$work/cuda-cache
gpu=18101
serve $gpu gpu-f32 --device "$device"
gpu_server=$server
first=$(head -1 "$work/encoded.tsv" | awk -F'\t' '{ printf "{\"pair\": [\"%s\", \"%s\"], \"k\": 10}", $1, $2 }')
first_s=$(curl -s -o "$work/first.json" -w '%{time_total}' -H 'content-type: application/json' \
    -d "$first" http://127.0.0.1:$gpu/v1/query)
echo "{\"ready_s\": $ready, \"first_encoded_query_s\": ${first_s:-null}, \"first_status_ok\": $(grep -q '"results"' "$work/first.json" && echo true || echo false)}" > "$out/startup.json"
say "GPU start on a cold kernel cache: $(cat "$out/startup.json")"

# 4. Parity with a CPU server on the same index.
cpu=18102
serve $cpu cpu-f32 --device cpu
cpu_server=$server
cpu_ready=$ready
timeout 120 "$py" - "$work/encoded.tsv" $gpu $cpu > "$out/parity.json" 2>> "$out/parity.log" <<'PY' || say "FAILED: parity (parity.log)"
import json, sys, urllib.request
pairs = [l.rstrip("\n").split("\t")[:2] for l in open(sys.argv[1], encoding="utf-8")][:200]
def post(port, path, body):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                               {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(r, timeout=60))
same_top = 0; worst_score = 0.0
for a, b in pairs:
    g = post(sys.argv[2], "/v1/query", {"pair": [a, b], "k": 10})["results"]
    c = post(sys.argv[3], "/v1/query", {"pair": [a, b], "k": 10})["results"]
    same_top += [h["pair"] for h in g] == [h["pair"] for h in c]
    worst_score = max([worst_score] + [abs(x["score"] - y["score"]) for x, y in zip(g, c)])
worst_cos = 1.0
for i in range(0, len(pairs), 50):
    chunk = pairs[i:i + 50]
    g = post(sys.argv[2], "/v1/embed", {"pairs": chunk})["vectors"]
    c = post(sys.argv[3], "/v1/embed", {"pairs": chunk})["vectors"]
    for u, v in zip(g, c):
        dot = sum(x * y for x, y in zip(u, v))
        nu = sum(x * x for x in u) ** 0.5; nv = sum(y * y for y in v) ** 0.5
        worst_cos = min(worst_cos, dot / (nu * nv))
print(json.dumps({"pairs": len(pairs), "same_top10_order": same_top,
                  "largest_score_difference": worst_score, "worst_cosine_embed": worst_cos}))
PY
say "parity GPU against CPU (CPU server ready in ${cpu_ready} s): $(cat "$out/parity.json")"

# 5. Load.
run_load $gpu gpu-f32-encoded "$work/encoded.tsv" 1,8,64,256
run_load $gpu gpu-f32-stored "$work/stored.tsv" 64
run_load $cpu cpu-f32-encoded "$work/encoded.tsv" 1,64
stop $cpu_server
stop $gpu_server
serve $gpu gpu-bf16 --device "$device" --dtype bf16
say "GPU server at bf16 ready in $ready s"
run_load $gpu gpu-bf16-encoded "$work/encoded.tsv" 1,64,256
stop $server
serve $gpu gpu-bf16-batch64 --device "$device" --dtype bf16 --max-batch 64 --max-batch-tokens 4096
say "GPU server at bf16, --max-batch 64, ready in $ready s"
run_load $gpu gpu-bf16-batch64-encoded "$work/encoded.tsv" 64,256
stop $server
say "done: $(wc -l < "$out/load.jsonl") lines in load.jsonl"
