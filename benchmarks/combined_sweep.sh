#!/usr/bin/env bash
# Chooses the offset weight w of `relbert bench analogy --method combined` on the VALIDATION
# splits of SAT, BATS and Google (never test): scores w = 0, 0.1, …, 1 and keeps the highest
# mean of the three accuracies (the trainer's selection rule); ties go to the higher pooled
# count of questions answered right, then to the smaller w. Writes a markdown table. The
# sweep combines the model's prompt vectors whatever its own relbert_config.offset_weight, so
# it can be rerun after that weight is set; setting it (in config.json) is left to a person.
#
#   benchmarks/combined_sweep.sh [MODEL_DIR]   (default models/relbert-minilm)
#
# Output: benchmarks/results/<model name>/combined_validation.md (+ .json per w in a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${1:-models/relbert-minilm}
DATA=${DATA:-../shared/data}
THREADS=${THREADS:-2}
OUT=benchmarks/results/$(basename "$MODEL")
mkdir -p "$OUT"
cargo build --release --quiet
export RELBERT_LOG=${RELBERT_LOG:-warn}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for w in 0 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 1; do
  target/release/relbert --threads "$THREADS" bench analogy --model "$MODEL" --data "$DATA" \
    --dataset sat,bats,google --split validation --method combined --offset-weight "$w" \
    --json "$tmp/w$w.json" > /dev/null
done
python3 - "$tmp" "$MODEL" "$(git rev-parse --short HEAD)" > "$OUT/combined_validation.md.tmp" <<'PY'
import glob, json, os, sys
tmp, model, commit = sys.argv[1:4]
rows = []
for path in glob.glob(os.path.join(tmp, "w*.json")):
    r = json.load(open(path))
    acc = {k.split("/")[0]: v for k, v in r["results"].items()}
    right = sum(round(acc[d]["accuracy"] * acc[d]["n"]) for d in ("sat", "bats", "google"))
    n = sum(acc[d]["n"] for d in ("sat", "bats", "google"))
    mean = sum(acc[d]["accuracy"] for d in ("sat", "bats", "google")) / 3
    rows.append((r["offset_weight"], acc, mean, right, n))
rows.sort(key=lambda x: x[0])
best = max(rows, key=lambda x: (round(x[2], 10), x[3], -x[0]))
print(f"# `--method combined`: offset weight chosen on the validation splits\n")
print(f"Model `{model}`, commit {commit}, command `benchmarks/combined_sweep.sh {model}`. "
      "Score = mean of the sat / bats / google validation accuracies (ties: pooled count, then "
      "smaller w). w = 0 is the relation vectors alone, w = 1 the word-vector offset alone.\n")
print("| w | SAT | BATS | Google | mean | pooled right |")
print("|---:|---:|---:|---:|---:|---:|")
for w, acc, mean, right, n in rows:
    b = "**" if w == best[0] else ""
    print(f"| {b}{w:g}{b} | {100*acc['sat']['accuracy']:.1f} | {100*acc['bats']['accuracy']:.1f} | "
          f"{100*acc['google']['accuracy']:.1f} | {b}{mean:.4f}{b} | {right} / {n} |")
print(f"\nChosen: w = {best[0]:g}. The test splits are scored at it once, for reporting, by "
      f"`OFFSET_WEIGHT={best[0]:g} benchmarks/run_harness.sh {model}` (run_harness.sh has no "
      "default weight: without OFFSET_WEIGHT it runs no combined step and keeps an existing "
      "`analogy_combined.json`).")
PY
mv "$OUT/combined_validation.md.tmp" "$OUT/combined_validation.md"
cat "$OUT/combined_validation.md"
