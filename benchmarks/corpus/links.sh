#!/usr/bin/env bash
# What reading URLs, e-mail addresses and file paths as single non-term tokens changes
# (benchmarks/corpus/links.md): `relbert pairs mine` on CORPUS with the binary before the
# change (BEFORE) and after (AFTER), alternating, REPEAT rounds; then one JSON line comparing
# the two runs' reports, vocabularies and top 1,000 pairs.
#
#   benchmarks/corpus/links.sh CORPUS BEFORE AFTER [WORK_DIR]
#
# Env: REPEAT (default 2).
set -euo pipefail
CORPUS=$(realpath "$1")
BEFORE=$(realpath "$2")
AFTER=$(realpath "$3")
WORK=$(realpath -m "${4:-$(mktemp -d /tmp/relbert-links.XXXXXX)}")
REPEAT=${REPEAT:-2}
export RELBERT_LOG=error RELBERT_PROGRESS_SECS=3600
mkdir -p "$WORK"
echo "# corpus $CORPUS ($(du -sb "$CORPUS" | cut -f1) bytes), $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)" >&2
for round in $(seq "$REPEAT"); do
    for mode in before after; do
        bin=$BEFORE
        [ "$mode" = after ] && bin=$AFTER
        /usr/bin/time -f '%e' -o "$WORK/time" "$bin" pairs mine --corpus "$CORPUS" \
            --out "$WORK/$mode.tsv" --report "$WORK/$mode.json" --save-vocab "$WORK/$mode.vocab" \
            --force 2>"$WORK/$mode.stderr" || { cat "$WORK/$mode.stderr" >&2; exit 1; }
        echo "{\"mode\": \"$mode\", \"round\": $round, \"wall_s\": $(cat "$WORK/time")}"
    done
done
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
def rows(f):
    return [l.rstrip("\n").split("\t") for l in open(f, encoding="utf-8") if not l.startswith("#")]
def vocab(f):
    return {l.split("\t")[0] for l in open(f, encoding="utf-8") if not l.startswith("#")}
b, a = rows(f"{w}/before.tsv"), rows(f"{w}/after.tsv")
bv, av = vocab(f"{w}/before.vocab"), vocab(f"{w}/after.vocab")
rb, ra = json.load(open(f"{w}/before.json")), json.load(open(f"{w}/after.json"))
gone = [r for r in b[:1000] if r[0] not in av or r[1] not in av]
print(json.dumps({
    "tokens": [rb["tokens"], ra["tokens"]],
    "distinct_words": [rb["distinct_words"], ra["distinct_words"]],
    "vocab": [len(bv), len(av)],
    "terms_no_longer_terms": len(bv - av),
    "distinct_pairs": [rb["distinct_pairs"], ra["distinct_pairs"]],
    "top1000_before_with_a_term_gone": len(gone),
    "top1000_shared": len({tuple(r[:2]) for r in b[:1000]} & {tuple(r[:2]) for r in a[:1000]}),
    "examples_gone": [f"{r[0]}:{r[1]}" for r in gone[:12]],
}, ensure_ascii=False))
PY
