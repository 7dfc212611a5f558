#!/usr/bin/env bash
# Time of one `relbert query --exact --json` against k, on a 100,000-pair index of random
# lower-case (ASCII) pairs built with the tiny test model, two binaries alternated.
#   benchmarks/query/large_k.sh BEFORE_BIN AFTER_BIN [ROUNDS] [K,K,...] [LIMIT_S]
# Prints one JSON object per run: {"bin", "k", "round", "seconds", "timed_out", "bytes"}.
set -euo pipefail
before=$1 after=$2 rounds=${3:-3} ks=${4:-1000,10000,20000,100000} limit=${5:-60}
here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/pairs.tsv" <<'PY'
import random, sys
random.seed(7)
w = lambda: "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(4, 9)))
seen = set()
with open(sys.argv[1], "w") as f:
    while len(seen) < 100000:
        p = (w(), w())
        if p not in seen:
            seen.add(p)
            f.write(f"{p[0]}\t{p[1]}\n")
PY
RELBERT_LOG=error "$after" index build --model "$here/tests/fixtures/tiny-bert" \
  --pairs "$work/pairs.tsv" --out "$work/idx" >/dev/null
for r in $(seq 1 "$rounds"); do
  for k in ${ks//,/ }; do
    for name in before after; do
      bin=$before; [ "$name" = after ] && bin=$after
      start=$(date +%s.%N)
      set +e
      RELBERT_LOG=error timeout "$limit" "$bin" query fsbeqdu sofurxtz --index "$work/idx" \
        -k "$k" --exact --json > "$work/out.json"
      rc=$?
      set -e
      end=$(date +%s.%N)
      printf '{"bin": "%s", "k": %s, "round": %s, "seconds": %.3f, "timed_out": %s, "bytes": %s}\n' \
        "$name" "$k" "$r" "$(echo "$end - $start" | bc)" \
        "$([ $rc = 124 ] && echo true || echo false)" "$(stat -c %s "$work/out.json")"
    done
  done
done
