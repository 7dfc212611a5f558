#!/usr/bin/env bash
# Analogy accuracy (SAT, BATS, Google) of the default model at each --dtype, validation and
# test splits, into benchmarks/results/precision/analogy_<dtype>_<split>.json.
#   benchmarks/precision_accuracy.sh [RELBERT_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/relbert}
out=benchmarks/results/precision
mkdir -p "$out"
for split in validation test; do
    for dtype in f32 bf16 f16; do
        "$bin" bench analogy --dataset sat,bats,google --split "$split" --dtype "$dtype" \
            --json "$out/analogy_${dtype}_${split}.json" --force > "$out/analogy_${dtype}_${split}.txt"
    done
done
