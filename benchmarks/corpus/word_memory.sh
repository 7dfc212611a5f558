#!/usr/bin/env bash
# Peak resident memory of `relbert pairs mine --memory 64M` on corpora of (almost) all
# distinct words (random 7-letter words, 12 a line), two binaries alternated: what the
# first pass's word counts cost when they are bounded by --memory (spilled) or not.
#   benchmarks/corpus/word_memory.sh BEFORE_BIN AFTER_BIN [ROUNDS] [MB,MB,...]
# Prints one JSON object per run: {"bin", "corpus_mb", "round", "peak_kb", "seconds", "rc"}.
set -euo pipefail
before=$1 after=$2 rounds=${3:-2} sizes=${4:-10,40}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for mb in ${sizes//,/ }; do
  python3 - "$((mb * 1000000))" "$work/u$mb.txt" <<'PY'
import random, sys
random.seed(11)
target, n = int(sys.argv[1]), 0
letters = "abcdefghijklmnopqrstuvwxyz"
with open(sys.argv[2], "w") as f:
    while n < target:
        s = " ".join("".join(random.choice(letters) for _ in range(7)) for _ in range(12)) + ".\n"
        f.write(s)
        n += len(s)
PY
done
for r in $(seq 1 "$rounds"); do
  for mb in ${sizes//,/ }; do
    for name in before after; do
      bin=$before; [ "$name" = after ] && bin=$after
      set +e
      RELBERT_LOG=error /usr/bin/time -f "%M %e" -o "$work/time" "$bin" pairs mine \
        --corpus "$work/u$mb.txt" --out "$work/out-$name.tsv" --force --memory 64M \
        --min-count 1 --min-pair-count 1 > /dev/null 2>&1
      rc=$?
      set -e
      read -r kb secs < <(tail -1 "$work/time")
      printf '{"bin": "%s", "corpus_mb": %s, "round": %s, "peak_kb": %s, "seconds": %s, "rc": %s}\n' \
        "$name" "$mb" "$r" "$kb" "$secs" "$rc"
    done
    cmp -s "$work/out-before.tsv" "$work/out-after.tsv" \
      && echo "{\"corpus_mb\": $mb, \"round\": $r, \"outputs\": \"identical\"}" \
      || echo "{\"corpus_mb\": $mb, \"round\": $r, \"outputs\": \"differ\"}"
  done
done
