#!/usr/bin/env python3
"""Query latency and relation-retrieval quality of a relbert index, through one
`relbert query --json` process fed on standard input (the model stays loaded, as in a script).

  python3 benchmarks/query_bench.py --index indexes/default [--n 1000] [--encoded 200] [--ef 64]

- latency: per-query round trip (write a line, read its JSON answer) for pairs stored in the
  index and for pairs that must be encoded (random vocabulary pairs not in the index); p50/p99.
- quality: relation-retrieval precision@10 on the index's WordNet labels: for N random stored
  pairs whose label comes from WordNet, the share of the top 10 results (query pair and pairs
  sharing a word with it excluded) that carry the query's label.

Prints JSON; --out writes it to a file.
"""
import argparse, json, os, random, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_vocab(files):
    out = []
    for f in files:
        for line in open(f, encoding="utf-8"):
            if line.startswith("#") or not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            out.append((cols[0], cols[1], cols[2] if len(cols) > 2 else None, os.path.basename(f)))
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", default=os.path.join(ROOT, "indexes", "default"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "relbert"))
    ap.add_argument("--vocab-dir", default=os.path.join(ROOT, "index", "vocab"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--encoded", type=int, default=200)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    a = ap.parse_args()

    files = sorted(os.path.join(a.vocab_dir, f) for f in os.listdir(a.vocab_dir) if f.endswith(".tsv"))
    vocab = read_vocab(files)
    stored = {(h, t) for h, t, _, _ in vocab}
    rng = random.Random(0)
    wordnet = [v for v in vocab if v[3].startswith("wordnet_")]
    queries = rng.sample(wordnet, a.n)
    words = sorted({w for h, t, _, _ in vocab for w in (h, t) if " " not in w and w.isalpha()})
    novel = []
    while len(novel) < a.encoded:
        p = (rng.choice(words), rng.choice(words))
        if p[0] != p[1] and p not in stored:
            novel.append(p)

    proc = subprocess.Popen([a.binary, "--threads", str(a.threads), "query", "--json", "--index", a.index,
                             "-k", "10", "--ef", str(a.ef)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                            env=dict(os.environ, RELBERT_LOG="warn"))

    def ask(h, t):
        t0 = time.perf_counter()
        proc.stdin.write(f"{h}\t{t}\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        return time.perf_counter() - t0, json.loads(line)

    # Warm-up: load the model and touch the maps once.
    ask(*novel[0])
    ask(queries[0][0], queries[0][1])
    lat_in, lat_enc, precisions = [], [], []
    for h, t, label, _ in queries:
        dt, doc = ask(h, t)
        assert doc.get("source") == "index", doc
        lat_in.append(dt)
        res = doc["results"]
        if res:
            precisions.append(sum(r.get("label") == label for r in res[:10]) / 10)
    for h, t in novel[1:]:
        dt, doc = ask(h, t)
        assert doc.get("source") == "encoded", doc
        lat_enc.append(dt)
    proc.stdin.close()
    proc.wait()
    ms = lambda x: round(1000 * x, 2)
    doc = {
        "index": os.path.relpath(a.index, ROOT),
        "command": "python3 benchmarks/query_bench.py " + " ".join(sys.argv[1:]),
        "ef": a.ef,
        "latency_ms": {
            "in_index": {"n": len(lat_in), "p50": ms(statistics.median(lat_in)), "p99": ms(pct(lat_in, 99))},
            "encoded": {"n": len(lat_enc), "p50": ms(statistics.median(lat_enc)), "p99": ms(pct(lat_enc, 99))},
        },
        "precision_at_10_wordnet_labels": round(statistics.mean(precisions), 4),
        "n_quality_queries": len(precisions),
    }
    s = json.dumps(doc, indent=2)
    print(s)
    if a.out:
        with open(a.out, "w") as f:
            f.write(s + "\n")


if __name__ == "__main__":
    main()
