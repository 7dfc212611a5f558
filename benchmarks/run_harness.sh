#!/usr/bin/env bash
# Regenerates benchmarks/results/: analogy accuracy on the test splits of SAT, BATS and Google
# (the model's own pair vectors, the word-vector offset baseline, the prompt vectors alone, and,
# with OFFSET_WEIGHT set, the prompt vectors combined with the offset at that weight), lexical
# relation classification F1, the independent numpy check of the analogy figures, and the
# summary RESULTS.md.
#
#   benchmarks/run_harness.sh [MODEL_DIR ...]      (default: models/all-MiniLM-L6-v2)
#
# Environment: DATA (default ../shared/data), THREADS (default 2), PYTHON (a python with numpy,
# default /work/peer-venv/bin/python, else python3), SKIP_CLASSIFY=1 to keep an existing
# classify.json (classification embeds ~99k pairs: ~10+ minutes on 2 cores), SKIP_CHECK=1 to
# skip the independent check, OFFSET_WEIGHT (unset: no such step, and an existing
# analogy_combined.json is kept) for an extra `--method combined` step at that weight (the
# default model's, chosen on validation: OFFSET_WEIGHT=0.8 benchmarks/run_harness.sh
# models/relbert-minilm models/all-MiniLM-L6-v2). The model's own pair vectors already carry its
# relbert_config.offset_weight if it has one. Per model the outputs go to
# benchmarks/results/<model name>/.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-../shared/data}
THREADS=${THREADS:-2}
PYTHON=${PYTHON:-/work/peer-venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
SETS=sat,bats,google
RESULTS=benchmarks/results
if [ "$#" -eq 0 ]; then set -- models/all-MiniLM-L6-v2; fi

cargo build --release --quiet
BIN=target/release/relbert
export RELBERT_LOG=${RELBERT_LOG:-warn}

names=()
for model in "$@"; do
  name=$(basename "$model")
  names+=("$name")
  out=$RESULTS/$name
  mkdir -p "$out"
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(nproc) cores, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' (+ local changes)')"
  } > "$out/run.txt"

  cmd=("$BIN" --threads "$THREADS" bench analogy --model "$model" --data "$DATA"
       --dataset "$SETS" --split test --breakdown --json "$out/analogy_relbert.json" --force)
  echo "+ ${cmd[*]}" | tee -a "$out/run.txt"
  /usr/bin/time -f "wall_s: %e" -a -o "$out/run.txt" "${cmd[@]}" > "$out/analogy_relbert.md"

  cmd=("$BIN" --threads "$THREADS" bench analogy --model "$model" --data "$DATA"
       --dataset "$SETS" --split test --breakdown --method offset --json "$out/analogy_offset.json" --force)
  echo "+ ${cmd[*]}" | tee -a "$out/run.txt"
  /usr/bin/time -f "wall_s: %e" -a -o "$out/run.txt" "${cmd[@]}" > "$out/analogy_offset.md"

  # The prompt vectors alone: what the reference's Python package computes from this checkpoint.
  cmd=("$BIN" --threads "$THREADS" bench analogy --model "$model" --data "$DATA"
       --dataset "$SETS" --split test --breakdown --method combined --offset-weight 0
       --json "$out/analogy_prompt.json" --force)
  echo "+ ${cmd[*]}" | tee -a "$out/run.txt"
  /usr/bin/time -f "wall_s: %e" -a -o "$out/run.txt" "${cmd[@]}" > "$out/analogy_prompt.md"

  # The combined step runs only with OFFSET_WEIGHT; without it an existing
  # analogy_combined.json (a committed result, e.g. relbert-minilm's at w = 0.8) is kept, not
  # deleted, and run.txt says it comes from an earlier run (its weight is in the JSON).
  if [ -n "${OFFSET_WEIGHT:-}" ]; then
    cmd=("$BIN" --threads "$THREADS" bench analogy --model "$model" --data "$DATA"
         --dataset "$SETS" --split test --breakdown --method combined
         --offset-weight "$OFFSET_WEIGHT" --json "$out/analogy_combined.json" --force)
    echo "+ ${cmd[*]}" | tee -a "$out/run.txt"
    /usr/bin/time -f "wall_s: %e" -a -o "$out/run.txt" "${cmd[@]}" > "$out/analogy_combined.md.tmp"
    mv "$out/analogy_combined.md.tmp" "$out/analogy_combined.md"
  elif [ -f "$out/analogy_combined.json" ]; then
    echo "analogy_combined.json: kept from an earlier run (OFFSET_WEIGHT unset)" >> "$out/run.txt"
  fi

  if [ "${SKIP_CLASSIFY:-0}" != 1 ]; then
    cmd=("$BIN" --threads "$THREADS" bench classify --model "$model"
         --data "$DATA/lexical_relation_classification" --seed 0 --json "$out/classify.json" --force)
    echo "+ ${cmd[*]}" | tee -a "$out/run.txt"
    /usr/bin/time -f "wall_s: %e" -a -o "$out/run.txt" "${cmd[@]}" > "$out/classify.md"
  else
    echo "classify.json: kept from an earlier run (SKIP_CLASSIFY=1)" >> "$out/run.txt"
  fi

  if [ "${SKIP_CHECK:-0}" != 1 ]; then
    tmp=$(mktemp -d)
    "$PYTHON" benchmarks/check_analogy.py pairs --data "$DATA" --datasets "$SETS" --split test \
      --out "$tmp/pairs.tsv" > /dev/null
    "$BIN" --threads "$THREADS" embed --model "$model" --pairs "$tmp/pairs.tsv" --format npy \
      --out "$tmp/vectors.npy"
    "$PYTHON" benchmarks/check_analogy.py score --data "$DATA" --datasets "$SETS" --split test \
      --vectors "$tmp/vectors.npy" --report "$out/analogy_relbert.json" > "$out/check_analogy.md"
    rm -rf "$tmp"
  fi
done

python3 benchmarks/render_results.py "$RESULTS" "${names[@]}" > "$RESULTS/RESULTS.md"
echo "wrote $RESULTS/RESULTS.md"
