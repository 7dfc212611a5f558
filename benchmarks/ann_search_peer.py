#!/usr/bin/env python3
"""hnswlib search timing without rebuilding: for alternating same-run comparisons.

`../shared/peers/ann_peer.py` builds its hnswlib graph on every call (about a minute for 148k
vectors here) and times one pass per ef, so interleaving many short timing rounds with ours is
impractical with it. This script builds the graph with the same settings (space "ip", M,
ef_construction, random_seed 100, one thread; base = all rows but the last --queries, the
queries = the last --queries rows, all L2-normalised) once, saves it to --graph, and on later
calls only loads it and times --passes passes of the queries, one query at a time, one thread,
for each ef. Prints one JSON line: per ef, the q/s of each pass and recall@k against numpy's
exact top-k.

    python benchmarks/ann_search_peer.py --vectors V.npy --graph /tmp/h.bin --ef 32,128 --passes 1
"""
import argparse
import json
import os
import time

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = "1"

import numpy as np  # noqa: E402
import hnswlib  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", required=True)
    ap.add_argument("--graph", required=True, help="hnswlib index file (built if missing)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", default="32,128")
    ap.add_argument("--passes", type=int, default=1)
    a = ap.parse_args()
    data = np.load(a.vectors).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    n = data.shape[0] - a.queries
    base, q = np.ascontiguousarray(data[:n]), np.ascontiguousarray(data[n:])
    idx = hnswlib.Index(space="ip", dim=data.shape[1])
    built = None
    if os.path.exists(a.graph):
        idx.load_index(a.graph, max_elements=n)
    else:
        idx.init_index(max_elements=n, M=a.M, ef_construction=a.ef_construction, random_seed=100)
        idx.set_num_threads(1)
        t0 = time.perf_counter()
        idx.add_items(base, np.arange(n), num_threads=1)
        built = time.perf_counter() - t0
        idx.save_index(a.graph)
    idx.set_num_threads(1)
    sims = q @ base.T
    truth = np.argsort(-sims, axis=1)[:, : a.k]
    out = {"hnswlib": hnswlib.__version__ if hasattr(hnswlib, "__version__") else "?",
           "n": n, "queries": a.queries, "build_s": built, "search": []}
    for ef in [int(x) for x in a.ef.split(",")]:
        idx.set_ef(ef)
        for row in q[:50]:
            idx.knn_query(row.reshape(1, -1), k=a.k)
        qps, found = [], None
        for _ in range(a.passes):
            found = []
            t0 = time.perf_counter()
            for row in q:
                labels, _ = idx.knn_query(row.reshape(1, -1), k=a.k)
                found.append(labels[0])
            qps.append(a.queries / (time.perf_counter() - t0))
        rec = float(np.mean([len(set(f) & set(t)) / a.k for f, t in zip(found, truth)]))
        out["search"].append({"ef": ef, "qps": [round(x, 1) for x in qps], "recall": round(rec, 4)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
