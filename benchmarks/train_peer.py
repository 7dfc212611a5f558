#!/usr/bin/env python3
"""Seconds per RelBERT training step for the PyTorch peer (HF transformers + torch, CPU, float32).

The same step as `relbert train` with the reference settings: for one SemEval relation, up to 10
positives and 400 negatives (its own negatives plus the other relations' positives), prompts
with the default RelBERT template, embedded with gradients in length-sorted chunks of 32
(dynamic padding), average_no_mask pooling (sum over non-mask tokens; cosine is scale-free),
InfoNCE at temperature 0.05 as DESIGN.md section 2 writes it, backward, torch.optim.AdamW
(weight decay 0). model.train(), so dropout is on as in the reference.  One untimed warm-up
step, then STEPS timed steps.  Prints one JSON document.

  python benchmarks/train_peer.py --model models/all-MiniLM-L6-v2 \
      --data ../shared/data [--steps 5] [--threads 2]
"""
import argparse
import json
import os
import random
import statistics
import time

TEMPLATE = ("I wasn\u2019t aware of this relationship, but I just read in the encyclopedia "
            "that <subj> is the <mask> of <obj>")


def prompt(tok, a, b):
    return TEMPLATE.replace("<subj>", a).replace("<obj>", b).replace("<mask>", tok.mask_token)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from transformers import AutoModel, AutoTokenizer
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-6, weight_decay=0.0)

    rels = []
    with open(os.path.join(args.data, "semeval2012_relational_similarity", "train.jsonl")) as f:
        for line in f:
            rels.append(json.loads(line))
    rng = random.Random(args.seed)
    order = list(range(len(rels)))
    rng.shuffle(order)

    def step(r):
        rel = rels[r]
        pos = rng.sample(rel["positives"], min(10, len(rel["positives"])))
        pool = list(rel["negatives"])
        for o, other in enumerate(rels):
            if o != r:
                pool.extend(other["positives"])
        neg = rng.sample(pool, min(400, len(pool)))
        texts = [prompt(tok, a, b) for a, b in pos + neg]
        enc = [tok(t, truncation=True, max_length=64)["input_ids"] for t in texts]
        idx = sorted(range(len(enc)), key=lambda i: len(enc[i]))
        out = [None] * len(enc)
        for c in range(0, len(idx), 32):
            chunk = idx[c:c + 32]
            batch = tok.pad({"input_ids": [enc[i] for i in chunk]}, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            keep = batch["attention_mask"] * (batch["input_ids"] != tok.mask_token_id)
            pooled = (hidden * keep.unsqueeze(-1)).sum(1)
            for j, i in enumerate(chunk):
                out[i] = pooled[j]
        emb = torch.nn.functional.normalize(torch.stack(out), dim=-1)
        p, n = emb[:len(pos)], emb[len(pos):]
        tau = 0.05
        pp = torch.exp(p @ p.T / tau)          # [np, np]
        pn = torch.exp(p @ n.T / tau).sum(1)   # [np]
        loss = -torch.log(pp / (pn.unsqueeze(1) + pp + 1e-5)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return sum(len(e) for e in enc)

    step(order[0])
    seconds, tokens = [], []
    for r in order[1:args.steps + 1]:
        t = time.perf_counter()
        tokens.append(step(r))
        seconds.append(time.perf_counter() - t)
    s = sorted(seconds)
    print(json.dumps({
        "engine": "PyTorch %s + transformers (train mode, dropout on)" % torch.__version__,
        "threads": args.threads,
        "steps": args.steps,
        "seconds_per_step": seconds,
        "tokens_per_step": tokens,
        "median_seconds_per_step": statistics.median(s),
        "tokens_per_second": sum(tokens) / sum(seconds),
    }, indent=2))


if __name__ == "__main__":
    main()
