#!/usr/bin/env python3
"""Writes the throughput benchmark's pair list: n distinct (a, b) pairs of whole alphabetic
vocabulary words (3-12 letters), drawn as ../shared/peers/encode_peer.py draws them, from the
vocabulary in the model's tokenizer.json (id order = vocab.txt order)."""
import json, random, sys

model_dir, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
vocab = json.load(open(f"{model_dir}/tokenizer.json", encoding="utf-8"))["model"]["vocab"]
words = [w for w, _ in sorted(vocab.items(), key=lambda kv: kv[1])
         if w.isascii() and w.isalpha() and 3 <= len(w) <= 12]
rng = random.Random(0)
pairs, seen = [], set()
while len(pairs) < n:
    a, b = rng.choice(words), rng.choice(words)
    if a != b and (a, b) not in seen:
        seen.add((a, b))
        pairs.append((a, b))
with open(out, "w", encoding="utf-8") as f:
    f.writelines(f"{a}\t{b}\n" for a, b in pairs)
