"""How often WordNet relates mined pairs, and how many analogy-set pairs the miner finds.

Usage:
  python3 quality.py --pmi pmi.tsv --count count.tsv --all all.tsv --vocab vocab.tsv \
      --analogy-dir ../shared/data [--n 10000 100000] [--seed 0]

- pmi.tsv / count.tsv: `relbert pairs mine` output ranked by PMI / by count;
- all.tsv: every pair at or above the same count floor (mined with a huge --max-pairs), from
  which the random baseline is drawn;
- vocab.tsv: `--save-vocab` of the same run.

"WordNet relates (a, b)" means: some sense of a and some sense of b are the same synset
(synonymy) or are linked by a hypernym/hyponym (incl. instance), meronym/holonym (member,
substance, part), antonym or derivation pointer, in either direction. Lexical pointers are
taken at the synset level. Words are reduced to WordNet lemmas with its exception lists and
morphy's suffix rules. WordNet 3.0 from Debian's wordnet-base (/usr/share/wordnet).

Prints one JSON object.
"""
import argparse
import json
import random
import sys
from collections import defaultdict

WN = "/usr/share/wordnet"
POS = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
KEEP = {"@", "@i", "~", "~i", "#m", "#s", "#p", "%m", "%s", "%p", "!", "+"}
RULES = {
    "n": [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
          ("men", "man"), ("ies", "y")],
    "v": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""),
          ("ing", "e"), ("ing", "")],
    "a": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    "r": [],
}


def load_wordnet():
    senses = defaultdict(set)  # lemma -> {(pos, offset)}
    links = set()  # frozenset of two synsets
    for name, p in POS.items():
        with open(f"{WN}/data.{name}", encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                head = line.split(" | ")[0].split()
                off, ss = head[0], (p, head[0])
                n = int(head[3], 16)
                words = head[4:4 + 2 * n:2]
                for w in words:
                    w = w.lower().replace("_", " ")
                    if w.endswith(")") and "(" in w:  # adjective markers: (a), (p), (ip)
                        w = w[: w.rindex("(")]
                    senses[w].add(ss)
                i = 4 + 2 * n
                pc = int(head[i])
                i += 1
                for _ in range(pc):
                    sym, toff, tpos = head[i], head[i + 1], head[i + 2]
                    i += 4
                    if sym in KEEP:
                        tpos = "a" if tpos == "s" else tpos
                        links.add(frozenset([(p, off), (tpos, toff)]))
    exc = {}
    for name, p in POS.items():
        with open(f"{WN}/{name}.exc", encoding="latin-1") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    exc.setdefault((parts[0].replace("_", " "), p), []).extend(
                        x.replace("_", " ") for x in parts[1:])
    # Adjective satellites are stored with pos 's' in pointers but 'a' in file names.
    return senses, links, exc


def lemmas(word, senses, exc):
    out = set()
    if word in senses:
        out.add(word)
    for p, rules in RULES.items():
        out.update(b for b in exc.get((word, p), []) if b in senses)
        for suf, rep in rules:
            if word.endswith(suf) and len(word) > len(suf):
                base = word[: -len(suf)] + rep
                if base in senses:
                    out.add(base)
    return out


def related(a, b, senses, links, exc):
    sa = set().union(*[senses[x] for x in lemmas(a, senses, exc)] or [set()])
    sb = set().union(*[senses[x] for x in lemmas(b, senses, exc)] or [set()])
    if not sa or not sb:
        return None  # not both in WordNet
    if sa & sb:
        return True
    return any(frozenset([x, y]) in links for x in sa for y in sb)


def read_pairs(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            h, t = line.rstrip("\n").split("\t")[:2]
            out.append((h, t))
    return out


def share(pairs, senses, links, exc):
    hits = in_wn = 0
    for h, t in pairs:
        r = related(h, t, senses, links, exc)
        if r is not None:
            in_wn += 1
            hits += r
    return {
        "pairs": len(pairs),
        "both_in_wordnet": in_wn,
        "related": hits,
        "share_related": round(hits / max(len(pairs), 1), 4),
        "share_related_of_in_wordnet": round(hits / max(in_wn, 1), 4),
    }


def analogy_pairs(data_dir):
    out = {}
    for name in ["sat", "bats", "google"]:
        pairs = set()
        for split in ["validation", "test"]:
            with open(f"{data_dir}/{name}/{split}.jsonl", encoding="utf-8") as f:
                for line in f:
                    q = json.loads(line)
                    pairs.add(tuple(w.lower() for w in q["stem"]))
                    pairs.add(tuple(w.lower() for w in q["choice"][q["answer"]]))
        out[name] = pairs
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pmi", required=True)
    ap.add_argument("--count", required=True)
    ap.add_argument("--all", required=True)
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--analogy-dir", required=True)
    ap.add_argument("--n", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    senses, links, exc = load_wordnet()
    pmi, count, every = read_pairs(a.pmi), read_pairs(a.count), read_pairs(a.all)
    rng = random.Random(a.seed)
    result = {"wordnet_lemmas": len(senses), "wordnet_links": len(links), "top": {}}
    for n in a.n:
        rand = rng.sample(every, min(n, len(every)))
        result["top"][str(n)] = {
            "pmi": share(pmi[:n], senses, links, exc),
            "count": share(count[:n], senses, links, exc),
            "random_above_floor": share(rand, senses, links, exc),
        }
    vocab = set()
    with open(a.vocab, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                vocab.add(line.split("\t")[0])
    mined_sets = {str(n): {frozenset(p) for p in pmi[:n]} for n in a.n}
    cov = {}
    for name, pairs in analogy_pairs(a.analogy_dir).items():
        both = [p for p in pairs if p[0] in vocab and p[1] in vocab]
        cov[name] = {
            "pairs": len(pairs),
            "both_in_vocab": len(both),
            **{f"found_top_{n}": sum(frozenset(p) in s for p in both) for n, s in mined_sets.items()},
        }
    result["analogy_coverage"] = cov
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
