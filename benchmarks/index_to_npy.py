#!/usr/bin/env python3
"""Copies an index's relation vectors (its `vectors` file) into a float32 .npy, for the ANN
benchmark on real vectors (`bench_index ann --vectors`, `ann_peer.py --vectors`).

    python3 benchmarks/index_to_npy.py INDEX_DIR OUT.npy [--shuffle-seed S]

Rows are shuffled with a fixed seed (default 0) so that the benchmark's query rows (the last
ones) are a random sample of the vocabulary, not the last vocabulary file.
"""
import argparse
import json
import subprocess
import sys

import numpy as np

HEADER = 32  # index/src/format.rs HEADER_LEN

ap = argparse.ArgumentParser()
ap.add_argument("index")
ap.add_argument("out")
ap.add_argument("--shuffle-seed", type=int, default=0)
ap.add_argument("--relbert", default="target/release/relbert")
a = ap.parse_args()

info = json.loads(subprocess.check_output([a.relbert, "index", "info", "--json", a.index]))
n, dim = int(info["count"]), int(info["dim"])
dtype = np.float16 if info.get("precision", "f32").lower() in ("f16", "half") else np.float32
raw = np.fromfile(f"{a.index}/vectors", dtype=np.uint8)
rows = np.frombuffer(raw[HEADER:HEADER + n * dim * np.dtype(dtype).itemsize], dtype=dtype)
v = rows.reshape(n, dim).astype(np.float32)
np.random.default_rng(a.shuffle_seed).shuffle(v)
np.save(a.out, v)
print(f"{a.out}: {n} x {dim} float32", file=sys.stderr)
