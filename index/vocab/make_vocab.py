#!/usr/bin/env python3
"""Build the default word-pair vocabulary of the relation index.

Reads Princeton WordNet 3.0 directly from its database files (Debian package
`wordnet-base`, files under /usr/share/wordnet; format documented in
wndb(5WN)) plus the TRAIN splits of the project's training data, and writes
TSV pair lists `head<TAB>tail<TAB>label` into the output folder.

Standard library only. Output is deterministic: candidates are ranked by a
fixed priority and a seeded hash, never by set/dict iteration order of
unordered containers, and files are written in a fixed order.

Usage (from the repository root):

    python3 index/vocab/make_vocab.py \
        --wordnet /usr/share/wordnet --data /work/shared/data --out index/vocab

Run with --help for the sampling knobs (--cap, --max-combos, --seed).
"""

import argparse
import hashlib
import json
import os
import re
import sys
from collections import Counter, OrderedDict

# --------------------------------------------------------------------------
# WordNet relations.
#
# Each entry: pointer symbol as written in data.<pos> -> (label, symmetric).
# Direction is always "the synset/word owning the pointer" -> "pointer target",
# so e.g. `@` gives hyponym -> hypernym (dog -> canine) and `#p` (part holonym)
# gives part -> whole (wheel -> wheeled vehicle).
# Pointers that are merely the inverse of a kept one (~, ~i, %m, %s, %p, -c,
# -r, -u) are not read, so each fact appears in one direction only.
# --------------------------------------------------------------------------
POINTERS = {
    # pos-file: {symbol: (label, symmetric)}
    "noun": {
        "@": ("hypernym", False),
        "@i": ("instance_of", False),
        "#p": ("part_of", False),
        "#m": ("member_of", False),
        "#s": ("substance_of", False),
        "!": ("antonym", True),
        "+": ("derivation", True),
        ";c": ("domain_topic", False),
        ";r": ("domain_region", False),
    },
    "verb": {
        "@": ("hypernym", False),
        "*": ("entails", False),
        ">": ("causes", False),
        "!": ("antonym", True),
        "+": ("derivation", True),
        ";c": ("domain_topic", False),
        ";r": ("domain_region", False),
    },
    "adj": {
        "!": ("antonym", True),
        "&": ("similar_to", True),
        "=": ("attribute", False),
        "\\": ("pertains_to", False),
        "<": ("participle_of", False),
        "+": ("derivation", True),
        ";c": ("domain_topic", False),
        ";r": ("domain_region", False),
    },
    "adv": {
        "!": ("antonym", True),
        "\\": ("adverb_of", False),
        "+": ("derivation", True),
        ";c": ("domain_topic", False),
        ";r": ("domain_region", False),
    },
}
# Labels whose inverse is also symmetric-looking in WordNet: for these a pair
# (b, a) is dropped when (a, b) with the same label is already kept.
SYMMETRIC = {"antonym", "similar_to", "derivation", "synonym"}

# Order in which relations claim pairs (first label wins on a duplicate
# (head, tail)); also the row order of the summary table.
RELATION_ORDER = [
    "hypernym", "instance_of", "part_of", "member_of", "substance_of",
    "antonym", "entails", "causes", "attribute", "similar_to",
    "pertains_to", "adverb_of", "participle_of", "domain_topic",
    "domain_region", "derivation", "synonym",
]

# Output files: file name -> labels it holds (WordNet part). Training data
# goes to training_data.tsv.
WORDNET_FILES = OrderedDict([
    ("wordnet_hypernym.tsv", ["hypernym", "instance_of"]),
    ("wordnet_meronymy.tsv", ["part_of", "member_of", "substance_of"]),
    ("wordnet_lexical.tsv", ["antonym", "similar_to", "derivation", "synonym"]),
    ("wordnet_other.tsv", ["entails", "causes", "attribute", "pertains_to",
                           "adverb_of", "participle_of", "domain_topic",
                           "domain_region"]),
])

POS_FILES = ["noun", "verb", "adj", "adv"]
POS_TO_FILE = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}

ADJ_MARKER = re.compile(r"\((a|p|ip)\)$")
BAD_CHARS = re.compile(r"[0-9()\t\r\n]")

LEXREL_SKIP = {"random", "false"}  # compared case-insensitively
MAX_FILE_BYTES = 4_500_000


def clean_lemma(word):
    """WordNet lemma -> surface form, or None when it must be skipped.

    Strips the adjective syntactic marker ((a), (p), (ip)), which wndb(5WN)
    documents as appended to the word and not part of it; then skips lemmas
    that still contain digits or parentheses. Underscores become spaces.
    Case is kept as WordNet writes it: WordNet lowercases common words and
    capitalises proper nouns, so this is "lowercase except proper nouns".
    """
    w = ADJ_MARKER.sub("", word)
    if not w or BAD_CHARS.search(w):
        return None
    w = w.replace("_", " ").strip()
    if not w or "  " in w:
        return None
    return w


def parse_data_file(path, posfile):
    """Yield (key, ss_type, words, pointers) for each synset line.

    key = (posfile, offset); words = list of raw lemma strings;
    pointers = list of (symbol, target_key, src_word_no, tgt_word_no)
    with word numbers 1-based, 0 meaning "whole synset" (semantic pointer).
    """
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("  "):  # licence header
                continue
            data = line.split(" | ", 1)[0].split()
            offset = data[0]
            ss_type = data[2]
            w_cnt = int(data[3], 16)
            words = [data[4 + 2 * i] for i in range(w_cnt)]
            i = 4 + 2 * w_cnt
            p_cnt = int(data[i])
            i += 1
            ptrs = []
            for _ in range(p_cnt):
                sym, toff, tpos, st = data[i:i + 4]
                i += 4
                ptrs.append((sym, (POS_TO_FILE[tpos], toff),
                             int(st[:2], 16), int(st[2:], 16)))
            yield (posfile, offset), ss_type, words, ptrs


def parse_tagged(path, posfile, tagged):
    """Add (posfile, offset, lemma_lower) of frequency-tagged senses.

    In index.<pos>, senses are listed most frequent first and the first
    tagsense_cnt of them occur in the semantic concordances.
    """
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("  "):
                continue
            f = line.split()
            lemma = f[0]
            synset_cnt = int(f[2])
            p_cnt = int(f[3])
            j = 4 + p_cnt
            tagsense_cnt = int(f[j + 1])
            offs = f[j + 2:j + 2 + synset_cnt]
            for off in offs[:tagsense_cnt]:
                tagged.add((posfile, off, lemma.lower()))


def stable_hash(seed, label, head, tail):
    h = hashlib.sha1(f"{seed}\x1f{label}\x1f{head}\x1f{tail}".encode("utf-8"))
    return h.hexdigest()


def wordnet_candidates(wndir, max_combos):
    """Return {label: list of (priority_tuple, head, tail)} from WordNet."""
    synsets = {}
    order = []
    for pf in POS_FILES:
        for key, ss_type, words, ptrs in parse_data_file(
                os.path.join(wndir, "data." + pf), pf):
            synsets[key] = (ss_type, words, ptrs)
            order.append(key)
    tagged = set()
    for pf in POS_FILES:
        parse_tagged(os.path.join(wndir, "index." + pf), pf, tagged)
    tagged_words = {lemma for _pf, _off, lemma in tagged}

    def rarity(key, raw):
        """0: this sense is frequency-tagged; 1: another sense of the word
        is; 2: the word never occurs in the tagged corpus."""
        lemma = ADJ_MARKER.sub("", raw).lower()
        if (key[0], key[1], lemma) in tagged:
            return 0
        return 1 if lemma in tagged_words else 2

    cands = {}

    def add(label, key_h, raw_h, key_t, raw_t, combo_rank):
        h, t = clean_lemma(raw_h), clean_lemma(raw_t)
        if h is None or t is None or h.lower() == t.lower():
            return
        prio = (combo_rank, rarity(key_h, raw_h) + rarity(key_t, raw_t),
                h.count(" ") + t.count(" "))
        cands.setdefault(label, []).append((prio, h, t))

    def lemma_choices(words):
        """First `max_combos` usable lemma indices, in synset order."""
        out = [i for i, w in enumerate(words) if clean_lemma(w) is not None]
        return out[:max_combos]

    for key in order:
        ss_type, words, ptrs = synsets[key]
        table = POINTERS[key[0]]
        # synonymy: first usable lemma -> each other lemma of the synset
        ch = lemma_choices(words)
        if len(ch) > 1:
            for r, j in enumerate(ch[1:max_combos + 1]):
                add("synonym", key, words[ch[0]], key, words[j], r)
        for sym, tkey, sw, tw in ptrs:
            if sym not in table or tkey not in synsets:
                continue
            label, _sym = table[sym]
            if label == "similar_to" and ss_type != "s":
                continue  # keep satellite -> head only (drop the inverse)
            twords = synsets[tkey][1]
            if sw and tw:  # lexical pointer between two specific words
                add(label, key, words[sw - 1], tkey, twords[tw - 1], 0)
                continue
            hs, ts = lemma_choices(words), lemma_choices(twords)
            combos = sorted(((a, b) for a in hs for b in ts),
                            key=lambda ab: (ab[0] + ab[1], ab))
            for r, (a, b) in enumerate(combos[:max_combos]):
                add(label, key, words[a], tkey, twords[b], r)
    return cands


def training_pairs(datadir):
    """Return list of (head, tail, label) from the TRAIN splits only."""
    out = []
    sem = os.path.join(datadir, "semeval2012_relational_similarity",
                       "train.jsonl")
    with open(sem, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            for h, t in rec["positives"]:
                out.append((h, t, "semeval:" + rec["relation_type"]))
    lrc = os.path.join(datadir, "lexical_relation_classification")
    for ds in sorted(os.listdir(lrc)):
        path = os.path.join(lrc, ds, "train.tsv")
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                f = line.rstrip("\r\n").split("\t")
                if len(f) != 3:
                    continue
                h, t, lab = (x.strip() for x in f)
                if lab.lower() in LEXREL_SKIP:
                    continue
                out.append((h, t, f"{ds}:{lab}"))
    return out


def ok_word(w):
    return bool(w) and w == w.strip() and not any(c in w for c in "\t\r\n")


def validate(path):
    """Check the TSV format; return number of pair lines."""
    n = 0
    seen = set()
    with open(path, encoding="utf-8", newline="") as fh:
        for lineno, line in enumerate(fh, 1):
            assert line.endswith("\n") and not line.endswith("\r\n"), \
                f"{path}:{lineno}: bad line ending"
            line = line[:-1]
            if line.startswith("#"):
                continue
            f = line.split("\t")
            assert len(f) in (2, 3), f"{path}:{lineno}: {len(f)} fields"
            assert all(ok_word(x) for x in f), f"{path}:{lineno}: empty/bad field"
            assert (f[0], f[1]) not in seen, f"{path}:{lineno}: duplicate pair"
            seen.add((f[0], f[1]))
            n += 1
    size = os.path.getsize(path)
    assert size < MAX_FILE_BYTES, f"{path}: {size} bytes >= {MAX_FILE_BYTES}"
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wordnet", default="/usr/share/wordnet",
                    help="folder with WordNet 3.0 data.* and index.* files")
    ap.add_argument("--data", default="/work/shared/data",
                    help="project data folder (training splits are read)")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                    help="output folder (default: this script's folder)")
    ap.add_argument("--cap", type=int, default=8000,
                    help="max pairs kept per WordNet relation label")
    ap.add_argument("--label-cap", action="append", default=None,
                    metavar="LABEL=N",
                    help="per-label override of --cap (repeatable); "
                         "default: hypernym=35000")
    ap.add_argument("--max-combos", type=int, default=3,
                    help="max lemma pairs taken per synset pair")
    ap.add_argument("--seed", default="relbert-vocab-v1",
                    help="seed of the deterministic per-relation sampling")
    args = ap.parse_args(argv)
    if args.label_cap is None:
        args.label_cap = ["hypernym=35000"]
    label_caps = {}
    for item in args.label_cap:
        lab, _, n = item.partition("=")
        assert lab in RELATION_ORDER, f"unknown label in --label-cap: {lab}"
        label_caps[lab] = int(n)

    cmd = ("python3 index/vocab/make_vocab.py"
           f" --wordnet {args.wordnet} --data {args.data} --out index/vocab"
           f" --cap {args.cap}"
           + "".join(f" --label-cap {x}" for x in args.label_cap)
           + f" --max-combos {args.max_combos}"
           f" --seed {args.seed}")

    kept = {}          # (head, tail) -> label
    rows = OrderedDict()  # file name -> list of (head, tail, label)

    # 1. training data first: its labels win on duplicates.
    train_rows = []
    for h, t, lab in training_pairs(args.data):
        if not (ok_word(h) and ok_word(t)) or h == t or (h, t) in kept:
            continue
        kept[(h, t)] = lab
        train_rows.append((h, t, lab))

    # 2. WordNet, relation by relation, ranked then capped.
    cands = wordnet_candidates(args.wordnet, args.max_combos)
    unknown = set(cands) - set(RELATION_ORDER)
    assert not unknown, unknown
    by_label = {}
    for label in RELATION_ORDER:
        lst = cands.get(label, [])
        lst = sorted(lst, key=lambda c: (c[0], stable_hash(args.seed, label,
                                                           c[1], c[2]), c[1], c[2]))
        cap = label_caps.get(label, args.cap)
        chosen = []
        for _prio, h, t in lst:
            if len(chosen) >= cap:
                break
            if (h, t) in kept:
                continue
            if label in SYMMETRIC and kept.get((t, h)) == label:
                continue
            kept[(h, t)] = label
            chosen.append((h, t, label))
        by_label[label] = chosen

    for fname, labels in WORDNET_FILES.items():
        rs = []
        for label in labels:
            rs.extend(sorted(by_label[label]))
        rows[fname] = rs
    rows["training_data.tsv"] = train_rows  # source order

    os.makedirs(args.out, exist_ok=True)
    wn_head = ("# source: Princeton WordNet 3.0 (Debian wordnet-base, data.* "
               "files); licence: WordNet 3.0 licence (permissive, "
               "https://wordnet.princeton.edu/license-and-commercial-use); "
               f"made by: {cmd}")
    tr_head = ("# source: TRAIN splits only: semeval2012_relational_similarity/"
               "train.jsonl positives (SemEval-2012 Task 2, CC BY-SA 3.0) and "
               "lexical_relation_classification/*/train.tsv (BLESS, EVALution, "
               "K&H+N, ROOT09 via vered1986/LexNET, Apache-2.0; CogALexV via "
               "sid-unizar/LRC, CC0-1.0), random/false labels dropped; "
               f"made by: {cmd}")
    total = 0
    counts = Counter()
    for fname, rs in rows.items():
        path = os.path.join(args.out, fname)
        head = tr_head if fname == "training_data.tsv" else wn_head
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(head + "\n")
            fh.write("# columns: head<TAB>tail<TAB>label\n")
            for h, t, lab in rs:
                fh.write(f"{h}\t{t}\t{lab}\n")
                counts[(fname, lab)] += 1
        n = validate(path)
        assert n == len(rs)
        total += n
        print(f"{fname}\t{n} pairs\t{os.path.getsize(path)} bytes")

    print(f"total distinct pairs: {total}")
    assert total == len(kept)
    print("\n| file | label | pairs |\n|---|---|---:|")
    for (fname, lab), n in counts.items():
        print(f"| `{fname}` | `{lab}` | {n} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
