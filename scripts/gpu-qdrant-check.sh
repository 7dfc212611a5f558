#!/usr/bin/env bash
# One unattended GPU check of `relbert index build --device cuda:0 --collection` (issue 25): a
# GPU encoding straight into a local 3-node Qdrant cluster (3 shards x 2 replicas, f32
# vectors), as each loader of the 100M/1B plan in benchmarks/scale/README.md would, all on
# one machine. ~2 minutes on one H100/H200 with PyTorch installed (it makes the model):
#   1. a random-weight BERT-base-shaped model (768-d vectors, the export target's size;
#      speed does not depend on the weights) and PAIRS distinct pairs from the bundled
#      vocabulary (scripts/gpu_peer.py);
#   2. the encoder alone on the same pairs (`relbert embed --format npy`): the rate a
#      loader could reach if Qdrant took everything at once;
#   3. the build into the cluster: pairs/s end to end, and the count the collection holds.
# Results in OUT (default gpu-qdrant-out/): facts.txt, embed.json, build.json (relbert's
# --json summaries with GNU time's wall where installed), *.log, summary.txt.
#
# Before: scripts/build-cuda.sh --release --bin relbert; bring target/release/relbert (or
# set RELBERT_BIN), a Qdrant binary (QDRANT_BIN) and the cluster's start script
# (QDRANT_START: ../shared/engines/qdrant/start-local-cluster.sh, with its stop script beside).
#
#   scripts/gpu-qdrant-check.sh [OUT]   env: PYTHON, PAIRS (200000), DTYPE (f16), QDRANT_PORT
#   (6400); DEVICE (cuda:0) and MODEL (a model folder instead of the random one) try it without
#   a GPU: DEVICE=cpu MODEL=tests/fixtures/tiny-bert PAIRS=2000.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-qdrant-out}}
mkdir -p "$out"
work=$(mktemp -d)
py=${PYTHON:-python3}
bin=${RELBERT_BIN:-${CARGO_TARGET_DIR:-target}/release/relbert}
start_cluster=${QDRANT_START:?set QDRANT_START to start-local-cluster.sh}
stop_cluster=$(dirname "$start_cluster")/stop-local-cluster.sh
n=${PAIRS:-200000}
dtype=${DTYPE:-f16}
device=${DEVICE:-cuda:0}
port=${QDRANT_PORT:-6400}
t0=$SECONDS
trap '"$stop_cluster" "$work/qc" >/dev/null 2>&1; rm -rf "$work"' EXIT
say() { echo "gpu-qdrant-check [$((SECONDS - t0)) s] $*" | tee -a "$out/summary.txt" >&2; }

. scripts/gpu-env.sh
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -f 'wall %e s, peak RSS %M kB')

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    echo "nproc $(nproc)"
    echo "relbert: $("$bin" --version 2>&1)"
    echo "qdrant: $("${QDRANT_BIN:-qdrant}" --version 2>&1 | head -1)"
} > "$out/facts.txt"

# 1. Model and pairs.
if [ -n "${MODEL:-}" ]; then
    ln -s "$(realpath "$MODEL")" "$work/model"
else
    timeout 120 "$py" scripts/gpu_peer.py model --shape base --tokenizer models/relbert-minilm/tokenizer.json \
        --out "$work/model" >/dev/null || say "FAILED: making the model"
fi
timeout 120 "$py" scripts/gpu_peer.py pairs --n "$n" --out "$work/pairs.tsv" --seed 4 || say "FAILED: pairs"
if QDRANT_WAIT_SECS=60 timeout 120 "$start_cluster" 3 "$port" "$work/qc" > "$out/cluster.log" 2>&1; then
    say "model, $(wc -l < "$work/pairs.tsv") pairs and the cluster ready"
else
    say "FAILED: starting the cluster (cluster.log)"
fi

# 2. The encoder alone.
${timer[@]+"${timer[@]}"} timeout 240 "$bin" embed --model "$work/model" --pairs "$work/pairs.tsv" --device "$device" \
    --dtype "$dtype" --format npy --out "$work/v.npy" 2> "$out/embed.log" && rm -f "$work/v.npy" ||
    say "FAILED: embed (embed.log)"
say "encoder alone: $(grep -E 'pairs/s|wall' "$out/embed.log" | tail -2 | tr '\n' ' ')"

# 3. Into the cluster.
urls="http://127.0.0.1:$((port + 1)),http://127.0.0.1:$((port + 11)),http://127.0.0.1:$((port + 21))"
${timer[@]+"${timer[@]}"} timeout 300 "$bin" index build --model "$work/model" --pairs "$work/pairs.tsv" --device "$device" \
    --dtype "$dtype" --qdrant "$urls" --collection gpucheck --shards 3 --replication 2 --json \
    > "$out/build.json" 2> "$out/build.log" || say "FAILED: the build into the cluster (build.log)"
count=$(curl -s -X POST "http://127.0.0.1:$port/collections/gpucheck/points/count" \
    -H 'content-type: application/json' -d '{"exact": true}')
say "into the cluster: $(cat "$out/build.json") $(grep -E 'wall' "$out/build.log" | tail -1); count $count"
