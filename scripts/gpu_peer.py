#!/usr/bin/env python3
"""The PyTorch side of scripts/gpu-check.sh (needs torch + transformers; no network).

  gpu_peer.py model --shape minilm|base --tokenizer TOKENIZER.json --out DIR
      a random-weight BERT of that shape (seed 0) in Hugging Face format: throughput does not
      depend on the weights, and parity compares both engines on the same weights;
  gpu_peer.py pairs --n N --out FILE.tsv [--seed S]
      N distinct word pairs drawn from the bundled vocabulary (index/vocab/*.tsv);
  gpu_peer.py encode --model DIR --pairs FILE.tsv --batch-size B[,B...] --dtype f32|f16|bf16
                     [--runs R] [--save FILE.npy]
      pairs/s of HF transformers with relbert's default template and average_no_mask pooling
      (tokenisation included, dynamic padding, as benchmarks/embed_bench.py times the CPU peer),
      one JSON line per batch size: several sizes share one process, so torch is imported and
      the model uploaded once (a lent GPU's minutes are few); --save writes the pooled sums
      (relbert's raw vectors, of the last batch size) for parity;
  gpu_peer.py compare A.npy B.npy   the worst and median cosine of matching rows.
"""
import argparse, glob, json, os, random, shutil, statistics, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = ("I wasn\u2019t aware of this relationship, but I just read in the encyclopedia that "
            "<subj> is the <mask> of <obj>")
SHAPES = {"minilm": dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=12,
                         intermediate_size=1536),
          "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                       intermediate_size=3072)}


def make_model(a):
    import torch, transformers
    torch.manual_seed(0)
    with open(a.tokenizer, encoding="utf-8") as f:
        vocab = len(json.load(f)["model"]["vocab"])
    cfg = transformers.BertConfig(vocab_size=vocab, max_position_embeddings=512,
                                  type_vocab_size=2, **SHAPES[a.shape])
    model = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    model.save_pretrained(a.out, safe_serialization=True)
    shutil.copy(a.tokenizer, os.path.join(a.out, "tokenizer.json"))
    # The tokenizer's own settings, when they sit beside it (transformers reads them).
    for name in ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        side = os.path.join(os.path.dirname(a.tokenizer), name)
        if os.path.isfile(side):
            shutil.copy(side, os.path.join(a.out, name))
    print(a.out)


def make_pairs(a):
    words = set()
    for f in sorted(glob.glob(os.path.join(ROOT, "index", "vocab", "*.tsv"))):
        for line in open(f, encoding="utf-8"):
            if line.strip() and not line.startswith("#"):
                words.update(w for w in line.rstrip("\n").split("\t")[:2] if w)
    words = sorted(words)
    rng = random.Random(a.seed)
    seen = set()
    with open(a.out, "w", encoding="utf-8") as f:
        while len(seen) < a.n:
            p = (rng.choice(words), rng.choice(words))
            if p[0] != p[1] and p not in seen:
                seen.add(p)
                f.write(f"{p[0]}\t{p[1]}\n")


def encode(a):
    import numpy as np, torch, transformers
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    tok = transformers.AutoTokenizer.from_pretrained(a.model)
    model = transformers.AutoModel.from_pretrained(a.model, dtype=dtype).eval().to(a.device)
    pairs = [l.rstrip("\n").split("\t")[:2] for l in open(a.pairs, encoding="utf-8") if l.strip()]
    prompts = [TEMPLATE.replace("<subj>", s).replace("<obj>", o).replace("<mask>", tok.mask_token)
               for s, o in pairs]

    def run(ps, bs):
        out = []
        for s in range(0, len(ps), bs):
            enc = tok(ps[s:s + bs], max_length=64, truncation=True, padding="longest",
                      return_tensors="pt").to(a.device)
            h = model(**enc).last_hidden_state.float()
            ids = enc["input_ids"]
            sel = ((ids != tok.pad_token_id) & (ids != tok.mask_token_id)).unsqueeze(-1).float()
            out.append((h * sel).sum(1))
        v = torch.cat(out).cpu()
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        return v

    for bs in (int(b) for b in a.batch_size.split(",")):
        with torch.inference_mode():
            run(prompts[:max(2 * bs, 256)], bs)
            times = []
            for _ in range(a.runs):
                t = time.perf_counter()
                v = run(prompts, bs)
                times.append(time.perf_counter() - t)
        if a.save:
            np.save(a.save, v.numpy())
        med = statistics.median(times)
        print(json.dumps({"engine": "pytorch", "torch": torch.__version__,
                          "transformers": transformers.__version__, "dtype": a.dtype,
                          "batch_size": bs, "n_pairs": len(prompts),
                          "median_s": round(med, 4), "pairs_per_s": round(len(prompts) / med, 1)}),
              flush=True)


def compare(a):
    import numpy as np
    x, y = np.load(a.a).astype(np.float64), np.load(a.b).astype(np.float64)
    if x.shape != y.shape:
        sys.exit(f"shapes differ: {x.shape} vs {y.shape}")
    c = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
    print(json.dumps({"rows": len(c), "worst_cosine": float(c.min()),
                      "median_cosine": float(np.median(c))}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("model")
    m.add_argument("--shape", choices=sorted(SHAPES), required=True)
    m.add_argument("--tokenizer", required=True)
    m.add_argument("--out", required=True)
    p = sub.add_parser("pairs")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("encode")
    e.add_argument("--model", required=True)
    e.add_argument("--pairs", required=True)
    e.add_argument("--batch-size", default="128")
    e.add_argument("--dtype", default="f32")
    e.add_argument("--runs", type=int, default=1)
    e.add_argument("--device", default="cuda", help="cuda, or cpu to try the script without a GPU")
    e.add_argument("--save")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    a = ap.parse_args()
    {"model": make_model, "pairs": make_pairs, "encode": encode, "compare": compare}[a.cmd](a)


if __name__ == "__main__":
    main()
