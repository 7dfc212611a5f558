#!/usr/bin/env bash
# Corpus mining against GloVe's cooccur, in one run, on the same pre-tokenised text.
# Usage: benchmarks/corpus/run.sh WORK_DIR [ROUNDS]   (needs a release build: cargo build --release)
# RELBERT_BIN=PATH measures another relbert binary (e.g. an older commit's) in the same way.
# Writes WORK_DIR/results.jsonl: one JSON object per measured command.
set -euo pipefail
work=${1:?usage: run.sh WORK_DIR [ROUNDS]}
rounds=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
relbert=${RELBERT_BIN:-$root/target/release/relbert}
glove_src=$root/../shared/peers/glove
mkdir -p "$work/glove"
[ -d "$work/corpus" ] || "$here/make_corpus.sh" "$work/corpus"
[ -f "$work/tokens.txt" ] || python3 "$here/pretokenize.py" "$work/corpus" > "$work/tokens.txt"
for t in vocab_count cooccur; do
    [ -x "$work/glove/$t" ] || gcc -O3 -march=native -funroll-loops -Wno-unused-result \
        -o "$work/glove/$t" "$glove_src/$t.c" "$glove_src/common.c" -lm -pthread
done
out=$work/results.jsonl
: > "$out"
# measure NAME CMD...: wall, CPU and peak RSS of one command (GNU time), as a JSON line.
measure() {
    local name=$1; shift
    /usr/bin/time -f '{"wall_s": %e, "user_s": %U, "sys_s": %S, "max_rss_kb": %M}' -o "$work/time.json" "$@"
    python3 - "$name" "$work/time.json" >> "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[2])); d["name"] = sys.argv[1]; print(json.dumps(d))
PY
}
tokens=$work/tokens.txt
for r in $(seq "$rounds"); do
    measure glove_vocab_count sh -c "'$work/glove/vocab_count' -min-count 5 -verbose 0 < '$tokens' > '$work/glove/vocab.txt'"
    measure glove_cooccur sh -c "cd '$work/glove' && ./cooccur -memory 4.0 -vocab-file vocab.txt -verbose 0 -window-size 10 -symmetric 0 -distance-weighting 0 < '$tokens' > cooc.bin"
    measure glove_cooccur_capped sh -c "cd '$work/glove' && ./cooccur -memory 0.05 -vocab-file vocab.txt -verbose 0 -window-size 10 -symmetric 0 -distance-weighting 0 < '$tokens' > cooc.bin"
    measure relbert_same_tokens "$relbert" --threads 2 pairs mine --corpus "$tokens" --paragraphs line \
        --no-stopwords --min-count 5 --vocab-size 100000000 --window 10 --out "$work/same.tsv" \
        --report "$work/same-report-$r.json" --force
    measure relbert_same_tokens_capped "$relbert" --threads 2 pairs mine --corpus "$tokens" --paragraphs line \
        --no-stopwords --min-count 5 --vocab-size 100000000 --window 10 --memory 48M --out "$work/capped.tsv" \
        --report "$work/capped-report-$r.json" --force
    measure relbert_raw_corpus "$relbert" --threads 2 pairs mine --corpus "$work/corpus" \
        --out "$work/raw.tsv" --report "$work/raw-report-$r.json" --force
done
cmp <(tail -n +2 "$work/same.tsv") <(tail -n +2 "$work/capped.tsv") && echo "capped run: same pairs as uncapped"
echo "results in $out"
