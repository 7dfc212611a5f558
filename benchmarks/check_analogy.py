#!/usr/bin/env python3
"""Independent check of `relbert bench analogy`: recompute analogy accuracy from vectors that
`relbert embed` wrote, with numpy only, and compare with the harness's JSON report.

  # 1. every distinct pair of the questions, one per line
  check_analogy.py pairs --data DIR --datasets sat,bats,google --split test --out pairs.tsv
  # 2. relbert embed --pairs pairs.tsv --format npy --out vectors.npy   (writes vectors.pairs.tsv)
  # 3. accuracy from those vectors, compared with `relbert bench analogy --json report.json`
  check_analogy.py score --data DIR --datasets sat,bats,google --split test \
      --vectors vectors.npy [--report report.json]

Scoring: cosine similarity between the stem's vector and each choice's; the first maximum is the
prediction (numpy argmax), as in the RelBERT reference. Exit status 1 if a dataset disagrees.
"""
import argparse
import json
import os
import sys

import numpy as np


def load_questions(data, name, split):
    path = os.path.join(data, name, f"{split}.jsonl")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def distinct_pairs(questions):
    seen, out = set(), []
    for q in questions:
        for p in [q["stem"]] + q["choice"]:
            t = tuple(p)
            if t not in seen:
                seen.add(t)
                out.append(t)
    return out


def cmd_pairs(a):
    pairs, seen = [], set()
    for name in a.datasets.split(","):
        for p in distinct_pairs(load_questions(a.data, name, a.split)):
            if p not in seen:
                seen.add(p)
                pairs.append(p)
    with open(a.out, "w", encoding="utf-8") as f:
        for h, t in pairs:
            f.write(f"{h}\t{t}\n")
    print(f"{len(pairs)} distinct pairs -> {a.out}")


def cmd_score(a):
    vec = np.load(a.vectors).astype(np.float64)
    side = os.path.splitext(a.vectors)[0] + ".pairs.tsv"
    with open(side, encoding="utf-8") as f:
        keys = [tuple(line.rstrip("\n").split("\t")[:2]) for line in f]
    assert len(keys) == len(vec), f"{len(keys)} pairs but {len(vec)} vectors"
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    vec = vec / np.where(norms == 0, 1, norms)
    index = {k: i for i, k in enumerate(keys)}
    report = None
    if a.report:
        with open(a.report, encoding="utf-8") as f:
            report = json.load(f)["results"]
    ok = True
    print("| dataset | questions | accuracy (numpy) | accuracy (relbert bench) | agree |")
    print("|---|---:|---:|---:|---|")
    for name in a.datasets.split(","):
        qs = load_questions(a.data, name, a.split)
        right = 0
        for q in qs:
            s = vec[index[tuple(q["stem"])]]
            c = vec[[index[tuple(p)] for p in q["choice"]]]
            right += int(np.argmax(c @ s)) == q["answer"]
        acc = right / len(qs)
        theirs = report.get(f"{name}/{a.split}", {}).get("accuracy") if report else None
        agree = "n/a" if theirs is None else ("yes" if abs(theirs - acc) < 1e-9 else "NO")
        ok &= agree != "NO"
        shown = "" if theirs is None else f"{100 * theirs:.2f}"
        print(f"| {name} | {len(qs)} | {100 * acc:.2f} | {shown} | {agree} |")
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("pairs", "score"):
        p = sub.add_parser(name)
        p.add_argument("--data", required=True)
        p.add_argument("--datasets", default="sat,bats,google")
        p.add_argument("--split", default="test")
        if name == "pairs":
            p.add_argument("--out", required=True)
        else:
            p.add_argument("--vectors", required=True)
            p.add_argument("--report")
    a = ap.parse_args()
    cmd_pairs(a) if a.cmd == "pairs" else cmd_score(a)


if __name__ == "__main__":
    main()
