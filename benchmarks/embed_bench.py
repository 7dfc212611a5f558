#!/usr/bin/env python3
"""Encoder throughput of relbert against the PyTorch peer, in one run on one machine.

Runs ../shared/peers/encode_peer.py (HF transformers, dynamic padding) and relbert's
`embed_throughput` example on the same 2,000 distinct pairs with the same thread count,
alternating peer and relbert for several rounds, and reports medians and their ratio; also the
peer's float32 GEMM peak, and relbert's peak RSS while embedding 100,000 pairs to .npy.

  python3 benchmarks/embed_bench.py --peer-python /path/to/venv/bin/python [--rounds 2]

Writes benchmarks/results/embed_throughput.{json,md}.
"""
import argparse, datetime, json, os, platform, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER = os.path.join(ROOT, "..", "shared", "peers", "encode_peer.py")


def sh(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    return p.stdout


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer-python", required=True)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--pairs", default=os.path.join(ROOT, "benchmarks", "data", "pairs2000.tsv"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mem-pairs", type=int, default=100000)
    a = ap.parse_args()

    sh(["cargo", "build", "--release", "--quiet", "--example", "embed_throughput", "--bin", "relbert"])
    ours_bin = os.path.join(ROOT, "target", "release", "examples", "embed_throughput")
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    batch_sizes = [32, 128]
    peer = {bs: [] for bs in batch_sizes}
    ours = {bs: [] for bs in batch_sizes}
    load = [os.getloadavg()[0]]
    for r in range(a.rounds):
        for bs in batch_sizes:
            out = sh([a.peer_python, PEER, "--one", "--model", a.model, "--pairs", a.pairs,
                      "--runs", str(a.runs), "--threads", str(a.threads), "--batch-size", str(bs),
                      "--padding", "longest"], env)
            peer[bs].append(json.loads(out.strip().splitlines()[-1]))
            doc = json.loads(sh([ours_bin, a.model, a.pairs, str(a.runs), str(bs)], env))
            ours[bs].append(doc["results"][0])
            load.append(os.getloadavg()[0])
            print(f"round {r} bs {bs}: peer {peer[bs][-1]['pairs_per_s']} ours {ours[bs][-1]['pairs_per_s']}",
                  file=sys.stderr)
    gemm = json.loads(sh([a.peer_python, PEER, "--gemm-only", "--model", a.model,
                          "--threads", str(a.threads)], env).strip().splitlines()[-1])

    # Peak memory while embedding many pairs (streamed to .npy).
    mem_pairs = os.path.join("/tmp", f"relbert-mem-{a.mem_pairs}.tsv")
    sh([sys.executable, os.path.join(ROOT, "benchmarks", "make_bench_pairs.py"), a.model,
        str(a.mem_pairs), mem_pairs])
    out_npy = os.path.join("/tmp", "relbert-mem.npy")
    t = time.time()
    # /usr/bin/time reports this one process's peak RSS (KiB); getrusage(RUSAGE_CHILDREN) would
    # report the largest child so far, the peer's included.
    timed = subprocess.run(["/usr/bin/time", "-f", "%M", os.path.join(ROOT, "target", "release", "relbert"),
                            "--threads", str(a.threads), "embed", "--model", a.model, "--pairs", mem_pairs,
                            "--format", "npy", "--out", out_npy, "--force"],
                           capture_output=True, text=True, env=env, cwd=ROOT)
    if timed.returncode != 0:
        sys.exit(timed.stderr)
    peak_mib = int(timed.stderr.strip().splitlines()[-1]) / 1024
    mem_secs = time.time() - t
    for f in (out_npy, out_npy.replace(".npy", ".pairs.tsv"), mem_pairs):
        os.remove(f)

    rows = []
    for bs in batch_sizes:
        p = statistics.median(x["pairs_per_s"] for x in peer[bs])
        o = statistics.median(x["pairs_per_s"] for x in ours[bs])
        gf = ours[bs][0]["est_gflop_per_pair"]
        rows.append({"batch_size": bs, "peer_pairs_per_s": p, "relbert_pairs_per_s": o,
                     "ratio": round(o / p, 3), "relbert_gflops": round(o * gf, 1),
                     "peer_gflops": round(p * gf, 1),
                     "peer_runs": [x["pairs_per_s"] for x in peer[bs]],
                     "relbert_runs": [x["pairs_per_s"] for x in ours[bs]]})
    doc = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python3", "benchmarks/embed_bench.py"] + sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "nproc": os.cpu_count(), "threads": a.threads,
                    "load_average_during": load},
        "pairs": os.path.relpath(a.pairs, ROOT), "model": "all-MiniLM-L6-v2 (float32)",
        "results": rows,
        "gemm_peak_gflops": {"torch_2048": gemm.get("torch_gflops"),
                             "numpy_2048": gemm.get("numpy_gflops"),
                             "torch_3456x384x1536": gemm.get("torch_gflops_3456x384x1536")},
        "memory": {"pairs": a.mem_pairs, "peak_rss_mib": round(peak_mib, 1),
                   "seconds": round(mem_secs, 1), "pairs_per_s": round(a.mem_pairs / mem_secs, 1)},
        "peer_raw": {str(k): v for k, v in peer.items()},
    }
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "benchmarks", "results", "embed_throughput.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    peak = doc["gemm_peak_gflops"]["torch_2048"]
    md = [f"# Encoder throughput: relbert vs PyTorch + transformers ({doc['date']})", "",
          f"Machine: {doc['machine']['cpu']}, {doc['machine']['nproc']} cores, {a.threads} threads; "
          f"load average during the run {min(load):.2f}–{max(load):.2f}.",
          f"Command: `{doc['command']}`. Model: all-MiniLM-L6-v2, float32, 2,000 distinct pairs "
          "(`benchmarks/data/pairs2000.tsv`, drawn like the peer's), default template, average_no_mask; "
          "tokenisation + encoding + pooling timed, start-up and model load excluded. "
          f"Medians over {a.rounds} rounds × {a.runs} runs, peer and relbert alternating.", "",
          "| batch | PyTorch peer (pairs/s) | relbert (pairs/s) | ratio | relbert GFLOP/s | float32 GEMM peak (torch) |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['batch_size']} | {r['peer_pairs_per_s']:.1f} | {r['relbert_pairs_per_s']:.1f} | "
                  f"{r['ratio']:.2f}× | {r['relbert_gflops']} ({100 * r['relbert_gflops'] / peak:.0f}% of peak) | {peak} |")
    md += ["", f"Peak RSS embedding {a.mem_pairs:,} pairs to `.npy` (`relbert embed --format npy`, "
           f"start-up included): **{doc['memory']['peak_rss_mib']} MiB**, "
           f"{doc['memory']['pairs_per_s']} pairs/s end to end.", ""]
    with open(os.path.join(ROOT, "benchmarks", "results", "embed_throughput.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
