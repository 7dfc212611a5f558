#!/usr/bin/env python3
"""Build extra training relations for `relbert train --extra-train`, in the SemEval format.

SemEval-2012 gives RelBERT 79 relations with 8 training positives each, and none of them is
morphological or lexicographic in the way BATS and Google are. This script adds about twenty
broad relation types from two sources already in this repository or beside it:

* the WordNet pair lists of the default index vocabulary (`index/vocab/wordnet_*.tsv`, made by
  `index/vocab/make_vocab.py` from Debian's `wordnet-base`);
* the TRAIN splits of the lexical relation classification sets
  (`<data>/lexical_relation_classification/*/train.tsv`; never `val.tsv` or `test.tsv`).

Labels that name the same relation in different sources are merged into one relation type
(BLESS `hyper`, K&H+N `hypo`, ROOT09 `HYPER`, CogALexV `HYPER`, EVALution `IsA` and WordNet
`hypernym` are all "x is a kind of y"), because the trainer uses every other relation's
positives as a relation's negatives: two ids for one relation would teach the model to pull
identical relations apart. Directions are normalised (`part_of` is part → whole, `has_part`
whole → part), and asymmetric relations get the reversed pairs of some of their positives as
their own negatives (the hard negatives SemEval's rated pairs play).

Decontamination: a pair is dropped when it or its reverse occurs (case-insensitively) in any
analogy question of any split under `<data>` (stem or choice of sat, sat_full, bats, google,
validation and test), or in a lexical relation classification `val.tsv` / `test.tsv`. Only
single words (letters and hyphens) are kept, as in the analogy sets.

Version 2 (`--tokenizer`): five inflection relations (18a plural, 18c past, 18d -ing,
18e comparative, 18f superlative) generated from WordNet's lemma and exception lists
(`--wordnet`, default /usr/share/wordnet) by regular spelling rules, kept where both words are
whole words of the tokenizer's vocabulary. Without `--tokenizer` the output is version 1,
unchanged.

Output: one JSON line per relation, `{"relation_type": "11a", "positives": [...],
"negatives": [...]}`, ids `11a` onwards so that the parent rule (id without its last letter)
groups them by family. Deterministic for a given `--seed`. Standard library only.

    python3 scripts/make_extra_relations.py --data ../shared/data --vocab index/vocab \
        --out data/extra_relations.jsonl
"""

import argparse
import glob
import hashlib
import json
import os
import re
import sys

# relation id -> (name, symmetric, [(source, label, reverse)])
# source "wn": index/vocab/wordnet_*.tsv; otherwise a lexical classification dataset.
# `reverse` flips the source pair into the relation's direction.
RELATIONS = [
    ("11a", "hypernym (x is a kind of y)", False, [
        ("wn", "hypernym", False), ("BLESS", "hyper", False), ("K&H+N", "hypo", False),
        ("ROOT09", "HYPER", False), ("CogALexV", "HYPER", False), ("EVALution", "IsA", False)]),
    ("11b", "instance of (x is an instance of y)", False, [("wn", "instance_of", False)]),
    ("11c", "co-hyponyms (x and y are kinds of the same thing)", True, [
        ("BLESS", "coord", False), ("ROOT09", "COORD", False), ("K&H+N", "sibl", False)]),
    ("12a", "part of (x is a part of y)", False, [
        ("wn", "part_of", False), ("EVALution", "PartOf", False),
        ("CogALexV", "PART_OF", False)]),
    ("12b", "has part (x has y as a part)", False, [
        ("BLESS", "mero", False), ("K&H+N", "mero", False), ("EVALution", "HasA", False)]),
    ("12c", "member of (x is a member of y)", False, [("wn", "member_of", False)]),
    ("12d", "substance of (x is a substance of y)", False, [("wn", "substance_of", False)]),
    ("12e", "made of (x is made of y)", False, [("EVALution", "MadeOf", False)]),
    ("13a", "antonym", True, [
        ("wn", "antonym", False), ("EVALution", "Antonym", False), ("CogALexV", "ANT", False)]),
    ("13b", "synonym", True, [
        ("wn", "synonym", False), ("wn", "similar_to", False),
        ("EVALution", "Synonym", False), ("CogALexV", "SYN", False)]),
    ("14a", "property (x typically has the property y)", False, [
        ("BLESS", "attri", False), ("EVALution", "HasProperty", False)]),
    ("14b", "attribute (y is the attribute that the adjective x is a value of)", False, [
        ("wn", "attribute", False)]),
    ("14c", "event (x is typically involved in the action y)", False, [
        ("BLESS", "event", False)]),
    ("15a", "derivation (y is derived from x)", False, [("wn", "derivation", False)]),
    ("15b", "pertainym (the adjective x pertains to the noun y)", False, [
        ("wn", "pertains_to", False)]),
    ("15c", "adverb of (x is the adverb of the adjective y)", False, [
        ("wn", "adverb_of", False)]),
    ("15d", "participle of (x is a participle of the verb y)", False, [
        ("wn", "participle_of", False)]),
    ("16a", "topic domain (x belongs to the domain y)", False, [("wn", "domain_topic", False)]),
    ("16b", "region (x is used in the region y)", False, [("wn", "domain_region", False)]),
    ("17a", "entailment (doing x entails doing y)", False, [("wn", "entails", False)]),
    ("17b", "cause (x causes y)", False, [("wn", "causes", False)]),
    # Version 2: inflection (source "gen": generated below from WordNet's lemma and exception
    # lists, kept only where both words are whole words of the tokenizer's vocabulary, which
    # stands in for "a word people write"). Left out on purpose: third person (`-s` on verbs
    # has the same shape as the plural, and two ids for one pattern would be pulled apart) and
    # capitals (WordNet's capital/country pairs that survive the held-out filter are mostly
    # other spellings of held-out Google pairs, such as Warszawa/Poland for Warsaw/Poland).
    ("18a", "plural (y is the plural of the noun x)", False, [("gen", "plural", False)]),
    ("18c", "past (y is the past tense or participle of the verb x)", False, [
        ("gen", "past", False)]),
    ("18d", "present participle (y is the -ing form of the verb x)", False, [
        ("gen", "ing", False)]),
    ("18e", "comparative (y is the comparative of the adjective x)", False, [
        ("gen", "comparative", False)]),
    ("18f", "superlative (y is the superlative of the adjective x)", False, [
        ("gen", "superlative", False)]),
]

WORD = re.compile(r"^[A-Za-z][A-Za-z-]*[A-Za-z]$")


def die(msg):
    sys.exit(f"make_extra_relations: {msg}")


def read_tsv(path):
    """Yields (line_no, head, tail, label) from a head<TAB>tail<TAB>label file."""
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                die(f"{path}:{no}: expected 3 tab-separated fields, got {len(parts)}")
            yield no, parts[0], parts[1], parts[2]


def held_out_pairs(data):
    """Every pair (both orders, lower case) of every analogy question and of the lexical
    classification val/test splits."""
    held = set()

    def add(h, t):
        h, t = h.lower(), t.lower()
        held.add((h, t))
        held.add((t, h))

    files = sorted(glob.glob(os.path.join(data, "*", "*.jsonl")))
    analogy = [f for f in files if "semeval2012" not in f]
    if not analogy:
        die(f"no analogy files under {data}")
    for path in analogy:
        with open(path, encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    q = json.loads(line)
                    add(*q["stem"])
                    for c in q["choice"]:
                        add(*c)
                except (ValueError, KeyError, TypeError) as e:
                    die(f"{path}:{no}: not an analogy question ({e})")
    lex = os.path.join(data, "lexical_relation_classification")
    for split in ("val", "test"):
        for path in sorted(glob.glob(os.path.join(lex, "*", f"{split}.tsv"))):
            for _, h, t, _ in read_tsv(path):
                add(h, t)
    return held, analogy


def lemmas(wordnet, pos):
    """Single-word, lower-case lemmas of WordNet's index.<pos>."""
    out = []
    with open(os.path.join(wordnet, f"index.{pos}"), encoding="utf-8") as f:
        for line in f:
            if line.startswith(" "):
                continue
            w = line.split(" ", 1)[0]
            if w.isalpha() and w.islower():
                out.append(w)
    return out


def exceptions(wordnet, pos):
    """(inflected, base) pairs of WordNet's <pos>.exc (single words only)."""
    out = []
    with open(os.path.join(wordnet, f"{pos}.exc"), encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].isalpha() and parts[1].isalpha():
                out.append((parts[0], parts[1]))
    return out


VOWELS = set("aeiou")


def cvc(w):
    """Ends consonant-vowel-consonant (not w, x, y): the final consonant doubles before a
    vowel suffix in short words (stop → stopped, big → bigger)."""
    return (len(w) >= 3 and w[-1] not in VOWELS and w[-1] not in "wxy"
            and w[-2] in VOWELS and w[-3] not in VOWELS)


def s_form(w):
    if w.endswith(("s", "x", "z", "ch", "sh")):
        return [w + "es"]
    if w.endswith("y") and len(w) > 1 and w[-2] not in VOWELS:
        return [w[:-1] + "ies"]
    return [w + "s"]


def suffix_forms(w, suf):
    """Candidate spellings of w + a vowel-initial suffix (ed, er, est, ing)."""
    if suf == "ing":
        if w.endswith("ie"):
            return [w[:-2] + "ying"]
        if w.endswith("e") and not w.endswith(("ee", "ye", "oe")):
            return [w[:-1] + "ing"]
    elif w.endswith("e"):
        return [w + suf[1:]]
    elif w.endswith("y") and len(w) > 1 and w[-2] not in VOWELS:
        return [w[:-1] + "i" + suf]
    forms = [w + suf]
    if cvc(w):
        forms.insert(0, w + w[-1] + suf)
    return forms


def generated(wordnet, vocab):
    """Inflection pairs, by label (see RELATIONS, source "gen")."""
    gen = {k: [] for k in ("plural", "past", "ing", "comparative", "superlative")}

    def add(label, base, form):
        if base in vocab and form in vocab and base != form:
            gen[label].append((base, form))

    def first(label, base, forms):
        for f in forms:
            if f in vocab:
                add(label, base, f)
                return

    nouns = lemmas(wordnet, "noun")
    adjectives = lemmas(wordnet, "adj")
    for w in nouns:
        first("plural", w, s_form(w))
    for infl, base in exceptions(wordnet, "noun"):
        add("plural", base, infl)
    for w in lemmas(wordnet, "verb"):
        first("past", w, suffix_forms(w, "ed"))
        first("ing", w, suffix_forms(w, "ing"))
    for infl, base in exceptions(wordnet, "verb"):
        add("ing" if infl.endswith("ing") else "past", base, infl)
    # A regular -er/-est form that is itself a noun or adjective lemma is usually another
    # word (number, customer, forest, modest), so those are skipped.
    taken = set(nouns) | set(adjectives)
    for w in adjectives:
        if len(w) < 3:
            continue
        first("comparative", w, [f for f in suffix_forms(w, "er") if f not in taken])
        first("superlative", w, [f for f in suffix_forms(w, "est") if f not in taken])
    for infl, base in exceptions(wordnet, "adj"):
        if infl.endswith("er"):
            add("comparative", base, infl)
        elif infl.endswith("est"):
            add("superlative", base, infl)
    return gen


def read_vocab(tokenizer):
    """Whole-word entries of a Hugging Face tokenizer.json vocabulary (no ## pieces)."""
    with open(tokenizer, encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    return {w for w in vocab if w.isalpha()}


def rank(seed, rel, h, t):
    return hashlib.sha256(f"{seed}\t{rel}\t{h}\t{t}".encode()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the shared data directory")
    ap.add_argument("--vocab", default="index/vocab", help="WordNet pair lists (make_vocab.py)")
    ap.add_argument("--out", required=True, help="output JSONL file")
    ap.add_argument("--positives", type=int, default=40, help="positives per relation")
    ap.add_argument("--negatives", type=int, default=8,
                    help="reversed pairs as negatives of an asymmetric relation")
    ap.add_argument("--seed", default="relbert-extra-v1")
    ap.add_argument("--tokenizer",
                    help="tokenizer.json whose whole-word vocabulary filters the generated "
                         "inflection pairs; without it, only version 1's relations are made")
    ap.add_argument("--wordnet", default="/usr/share/wordnet",
                    help="WordNet dict directory (index.*, *.exc), Debian's wordnet-base")
    args = ap.parse_args()

    held, analogy_files = held_out_pairs(args.data)
    wn = {}
    wn_files = sorted(glob.glob(os.path.join(args.vocab, "wordnet_*.tsv")))
    if not wn_files:
        die(f"no wordnet_*.tsv under {args.vocab}")
    for path in wn_files:
        for _, h, t, label in read_tsv(path):
            wn.setdefault(label, []).append((h, t))
    lex = {}
    lex_dir = os.path.join(args.data, "lexical_relation_classification")
    for path in sorted(glob.glob(os.path.join(lex_dir, "*", "train.tsv"))):
        name = os.path.basename(os.path.dirname(path))
        for _, h, t, label in read_tsv(path):
            lex.setdefault((name, label), []).append((h, t))

    gen = generated(args.wordnet, read_vocab(args.tokenizer)) if args.tokenizer else {}

    out_lines = []
    used = set()
    report = []
    for rel, name, symmetric, sources in RELATIONS:
        if not args.tokenizer and any(src == "gen" for src, _, _ in sources):
            continue  # version 2's generated relations need the vocabulary filter
        cands = {}
        for src, label, reverse in sources:
            if src == "gen":
                pairs = gen.get(label)
            else:
                pairs = wn.get(label) if src == "wn" else lex.get((src, label))
            if pairs is None:
                die(f"relation {rel}: no pairs labelled {label!r} in source {src}")
            for h, t in pairs:
                if reverse:
                    h, t = t, h
                if rel == "15a" and len(t) < len(h):
                    # WordNet's derivation links run both ways: put the shorter word
                    # (usually the base) first.
                    h, t = t, h
                if not (WORD.match(h) and WORD.match(t)) or h.lower() == t.lower():
                    continue
                key = (h.lower(), t.lower())
                if key in held or key in used or (t.lower(), h.lower()) in used:
                    continue
                cands.setdefault(key, (h, t))
        ranked = sorted(cands.items(), key=lambda kv: rank(args.seed, rel, *kv[0]))
        pos = [list(p) for _, p in ranked[: args.positives]]
        if len(pos) < 10:
            die(f"relation {rel} ({name}): only {len(pos)} usable pairs")
        for p in pos:
            used.add((p[0].lower(), p[1].lower()))
        neg = [] if symmetric else [[t, h] for h, t in pos[: args.negatives]]
        out_lines.append(json.dumps(
            {"relation_type": rel, "positives": pos, "negatives": neg}, ensure_ascii=False))
        report.append((rel, name, len(cands), len(pos), len(neg)))

    tmp = args.out + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(out_lines) + "\n")
    os.replace(tmp, args.out)
    print(f"held-out pairs (both orders) from {len(analogy_files)} analogy files and the "
          f"lexical val/test splits: {len(held)}", file=sys.stderr)
    print("| id | relation | usable pairs | positives | negatives |", file=sys.stderr)
    print("|---|---|---:|---:|---:|", file=sys.stderr)
    for r in report:
        print("| {} | {} | {} | {} | {} |".format(*r), file=sys.stderr)


if __name__ == "__main__":
    main()
