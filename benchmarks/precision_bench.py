#!/usr/bin/env python3
"""CPU encoder throughput at each --dtype beside the PyTorch float32 peer, in one run.

For each round and batch size: the peer (../shared/peers/encode_peer.py, HF transformers,
float32, dynamic padding), then relbert's `embed_throughput` example at every dtype
(RELBERT_DTYPE), all on the same 2,000 pairs and thread count; medians and ratios against the
peer of the same run. Then, for the README's first query, a real `relbert index build` of a
slice of the bundled vocabulary with the default model at each dtype, whose encode rate
projects the full vocabulary's encoding time.

  python3 benchmarks/precision_bench.py --peer-python .peer-venv/bin/python [--rounds 3]

Writes benchmarks/results/precision/throughput.json (raw) and prints a markdown table.
"""
import argparse, datetime, glob, json, os, re, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from embed_bench import PEER, ROOT, cpu_name, sh  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer-python", required=True)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--pairs", default=os.path.join(ROOT, "benchmarks", "data", "pairs2000.tsv"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-sizes", default="32")
    ap.add_argument("--dtypes", default="f32,bf16,f16")
    ap.add_argument("--build-pairs", type=int, default=6000,
                    help="vocabulary rows for the index-build projection (0: skip)")
    a = ap.parse_args()

    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    sh(["cargo", "build", "--release", "--quiet", "--example", "embed_throughput", "--bin", "relbert"])
    ours_bin = os.path.join(target, "release", "examples", "embed_throughput")
    relbert = os.path.join(target, "release", "relbert")
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    batches = [int(b) for b in a.batch_sizes.split(",")]
    dtypes = a.dtypes.split(",")
    peer = {bs: [] for bs in batches}
    ours = {(bs, d): [] for bs in batches for d in dtypes}
    kernels = {}
    load = [os.getloadavg()[0]]
    for r in range(a.rounds):
        for bs in batches:
            out = sh([a.peer_python, PEER, "--one", "--model", a.model, "--pairs", a.pairs,
                      "--runs", str(a.runs), "--threads", str(a.threads), "--batch-size", str(bs),
                      "--padding", "longest"], env)
            peer[bs].append(json.loads(out.strip().splitlines()[-1])["pairs_per_s"])
            for d in dtypes:
                doc = json.loads(sh([ours_bin, a.model, a.pairs, str(a.runs), str(bs)],
                                    dict(env, RELBERT_DTYPE=d)))
                kernels[d] = doc["cpu_kernel"]
                ours[(bs, d)].append(doc["results"][0]["pairs_per_s"])
            load.append(os.getloadavg()[0])
            print(f"round {r} bs {bs}: peer {peer[bs][-1]} "
                  + " ".join(f"{d} {ours[(bs, d)][-1]}" for d in dtypes), file=sys.stderr)

    rows = []
    for bs in batches:
        p = statistics.median(peer[bs])
        for d in dtypes:
            o = statistics.median(ours[(bs, d)])
            rows.append({"batch_size": bs, "dtype": d, "cpu_kernel": kernels[d],
                         "peer_f32_pairs_per_s": p, "relbert_pairs_per_s": o,
                         "ratio_to_peer": round(o / p, 3),
                         "ratio_to_relbert_f32": round(o / statistics.median(ours[(bs, "f32")]), 3)
                         if "f32" in dtypes else None,
                         "peer_runs": peer[bs], "relbert_runs": ours[(bs, d)]})

    builds = []
    if a.build_pairs > 0:
        vocab = sorted(glob.glob(os.path.join(ROOT, "index", "vocab", "*.tsv")))
        total = 0
        lines = []
        for f in vocab:
            with open(f) as fh:
                rows_f = [l for l in fh if l.strip() and not l.startswith("#")]
            total += len(rows_f)
            lines += rows_f
        with tempfile.TemporaryDirectory() as tmp:
            # Every k-th row, so the slice has the full vocabulary's mix of lengths.
            step = max(1, len(lines) // a.build_pairs)
            part = os.path.join(tmp, "slice.tsv")
            with open(part, "w") as fh:
                fh.writelines(lines[::step][: a.build_pairs])
            for d in dtypes:
                out = os.path.join(tmp, f"idx-{d}")
                t = time.time()
                p = subprocess.run([relbert, "--threads", str(a.threads), "index", "build",
                                    "--pairs", part, "--out", out, "--dtype", d, "--f16"],
                                   capture_output=True, text=True, env=env, cwd=ROOT)
                if p.returncode != 0:
                    sys.exit(p.stderr)
                wall = time.time() - t
                # The build's own report: "encoding 12.3s (487 pairs/s), graph 0.4s".
                m = re.search(r"encoding ([0-9.]+)s \(([0-9.]+) pairs/s\)", p.stderr)
                if not m:
                    sys.exit(f"no encoding report in:\n{p.stderr}")
                secs, rate = float(m.group(1)), float(m.group(2))
                builds.append({"dtype": d, "pairs": min(a.build_pairs, len(lines[::step])),
                               "wall_s": round(wall, 1), "encode_s": secs, "pairs_per_s": rate,
                               "projected_encode_min_full_vocab": round(total / rate / 60, 1)})
                print(f"build {d}: {rate} pairs/s", file=sys.stderr)
        builds_note = {"vocabulary_rows": total, "model": "default (models/relbert-minilm)"}
    else:
        builds_note = {}

    doc = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python3", "benchmarks/precision_bench.py"] + sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "nproc": os.cpu_count(), "threads": a.threads,
                    "load_average_during": load},
        "pairs": os.path.relpath(a.pairs, ROOT), "model": os.path.relpath(a.model, ROOT),
        "results": rows, "index_build": builds, "index_build_setup": builds_note,
    }
    os.makedirs(os.path.join(ROOT, "benchmarks", "results", "precision"), exist_ok=True)
    with open(os.path.join(ROOT, "benchmarks", "results", "precision", "throughput.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"load average {min(load):.2f}-{max(load):.2f}")
    print("| batch | dtype | kernel | PyTorch f32 (pairs/s) | relbert (pairs/s) | × PyTorch | × relbert f32 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['dtype']} | {r['cpu_kernel']} | {r['peer_f32_pairs_per_s']:.1f} | "
              f"{r['relbert_pairs_per_s']:.1f} | {r['ratio_to_peer']:.2f}× | {r['ratio_to_relbert_f32']}× |")
    for b in builds:
        print(f"build {b['dtype']}: {b['pairs']} pairs, encoding {b['pairs_per_s']} pairs/s -> "
              f"{b['projected_encode_min_full_vocab']} min for the full vocabulary")


if __name__ == "__main__":
    main()
