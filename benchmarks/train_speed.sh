#!/usr/bin/env bash
# Training-step speed, relbert vs the PyTorch peer, alternated twice in one run (see
# benchmarks/results/training_speed.md). Needs target/release/examples/train_step
# (cargo build --release --example train_step) and a python with torch + transformers.
cd "$(dirname "$0")/.."
PY=${PY:-/work/peer-venv/bin/python}
OUT=${OUT:-/tmp}
for r in 1 2; do
  echo "== round $r ours load $(cut -d' ' -f1-3 /proc/loadavg)"
  RAYON_NUM_THREADS=2 ./target/release/examples/train_step models/all-MiniLM-L6-v2 ../shared/data 6 > $OUT/tb_ours_$r.json 2>$OUT/tb_ours_$r.err
  echo "== round $r peer load $(cut -d' ' -f1-3 /proc/loadavg)"
  "$PY" benchmarks/train_peer.py --model models/all-MiniLM-L6-v2 --data ../shared/data --steps 6 > $OUT/tb_peer_$r.json 2>$OUT/tb_peer_$r.err
done
echo "== end load $(cut -d' ' -f1-3 /proc/loadavg)"
