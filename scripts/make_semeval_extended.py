#!/usr/bin/env python3
"""Build SemEval-2012 training relations with every positively rated pair as a positive.

RelBERT's training file (`semeval2012_relational_similarity/train.jsonl`, the EMNLP-2021
recipe) keeps, per relation, the 10 highest-rated pairs as positive candidates and gives 2 of
them to validation, so each relation trains on 8 positives. The same SemEval ratings
(`semeval2012_ratings/semeval2012_ratings.jsonl`, 3,218 rated pairs, 14-26 with a positive
MaxDiff score per relation) hold about 2.6 times as many pairs that the annotators judged more
typical of the relation than not. This script writes the 79 relations with the same ids and
negatives as `train.jsonl` and, as positives, `train.jsonl`'s 8 followed by every other pair
whose score is > 0 (the reference's own bar for a positive candidate), highest score first.

Dropped from the added positives:

* the SemEval validation pairs (positives and negatives of every relation, either order), so
  the SemEval validation score stays held out;
* every pair, either order, of any analogy question of any split and of the lexical
  classification `val.tsv` / `test.tsv` files (the rule of `make_extra_relations.py`, whose
  `held_out_pairs` this script calls);
* a pair that would be a positive of two relations (the trainer uses each relation's
  positives as the others' negatives).

The output is a drop-in replacement for `train.jsonl`: `relbert train --train-file FILE`.
Deterministic; standard library only.

    python3 scripts/make_semeval_extended.py --data ../shared/data \
        --out data/semeval2012_train_extended.jsonl
"""

import argparse
import json
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_extra_relations import held_out_pairs  # noqa: E402


def die(msg):
    sys.exit(f"make_semeval_extended: {msg}")


def read_jsonl(path):
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except ValueError as e:
                        die(f"{path}:{no}: not JSON ({e})")
    except OSError as e:
        die(f"{path}: {e}")
    return rows


def key(h, t):
    return (h.lower(), t.lower())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="the shared data directory")
    ap.add_argument("--out", required=True, help="output JSONL (refused if it exists)")
    ap.add_argument("--force", action="store_true", help="overwrite --out")
    args = ap.parse_args()
    if os.path.exists(args.out) and not args.force:
        die(f"{args.out} exists (use --force to overwrite)")

    sem = os.path.join(args.data, "semeval2012_relational_similarity")
    train = read_jsonl(os.path.join(sem, "train.jsonl"))
    valid = read_jsonl(os.path.join(sem, "validation.jsonl"))
    ratings_path = os.path.join(args.data, "semeval2012_ratings", "semeval2012_ratings.jsonl")
    ratings = {r["relation_id"]: r for r in read_jsonl(ratings_path)}

    held, _ = held_out_pairs(args.data)
    for r in valid:
        for h, t in r["positives"] + r["negatives"]:
            held.add(key(h, t))
            held.add(key(t, h))

    added = {}
    for r in train:
        rid = r["relation_type"]
        if rid not in ratings:
            die(f"{ratings_path}: no ratings for relation {rid}")
        have = {key(h, t) for h, t in r["positives"]}
        pairs = sorted(ratings[rid]["pairs"], key=lambda p: -p["score"])
        added[rid] = [
            (p["head"], p["tail"])
            for p in pairs
            if p["score"] > 0
            and key(p["head"], p["tail"]) not in have
            and key(p["head"], p["tail"]) not in held
        ]
    # Pairs that are (or would become) positives of more than one relation.
    count = Counter()
    for r in train:
        for k in {key(h, t) for h, t in r["positives"]} | {
            key(h, t) for h, t in added[r["relation_type"]]
        }:
            count[k] += 1

    tmp = args.out + ".tmp"
    total_before = total_after = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in train:
            rid = r["relation_type"]
            extra = [[h, t] for h, t in added[rid] if count[key(h, t)] == 1]
            positives = r["positives"] + extra
            total_before += len(r["positives"])
            total_after += len(positives)
            row = {"relation_type": rid, "positives": positives, "negatives": r["negatives"]}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, args.out)
    print(
        f"{args.out}: {len(train)} relations, {total_before} -> {total_after} positives",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
