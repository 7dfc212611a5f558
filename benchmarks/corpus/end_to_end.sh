#!/usr/bin/env bash
# Corpus -> pairs -> index -> first query, on 2 CPU threads with the default model.
# Usage: benchmarks/corpus/end_to_end.sh CORPUS_DIR WORK_DIR [MAX_PAIRS]
set -euo pipefail
corpus=${1:?usage: end_to_end.sh CORPUS_DIR WORK_DIR [MAX_PAIRS]}
work=${2:?usage}
n=${3:-10000}
relbert=$(cd "$(dirname "$0")/../.." && pwd)/target/release/relbert
mkdir -p "$work"
rm -rf "$work/e2e-index"
start=$(date +%s.%N)
"$relbert" --threads 2 pairs mine --corpus "$corpus" --max-pairs "$n" --out - \
    | "$relbert" --threads 2 index build --pairs - --out "$work/e2e-index"
built=$(date +%s.%N)
"$relbert" --threads 2 query --index "$work/e2e-index" --json -k 5 aspirin headache > "$work/e2e-query.json"
done_=$(date +%s.%N)
python3 - "$start" "$built" "$done_" "$n" <<'PY'
import json, sys
s, b, d, n = map(float, sys.argv[1:])
print(json.dumps({"max_pairs": int(n), "mine_and_build_s": round(b - s, 1), "first_query_s": round(d - b, 2), "total_s": round(d - s, 1)}))
PY
