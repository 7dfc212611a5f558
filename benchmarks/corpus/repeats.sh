#!/usr/bin/env bash
# What counting repeated long paragraphs once costs and changes (benchmarks/corpus/repeats.md):
# `relbert pairs mine` on CORPUS with the default (repeats counted once) and with
# `--keep-repeated-paragraphs`, alternating, REPEAT rounds; one JSON line per run (wall and
# CPU seconds from GNU time, and the report's repeat and pair counts).
#
#   benchmarks/corpus/repeats.sh CORPUS [WORK_DIR]
#
# Env: RELBERT (binary, default target/release/relbert), REPEAT (default 3).
set -euo pipefail
CORPUS=$(realpath "$1")
WORK=$(realpath -m "${2:-$(mktemp -d /tmp/relbert-repeats.XXXXXX)}")
cd "$(dirname "$0")/../.."
RELBERT=${RELBERT:-${CARGO_TARGET_DIR:-target}/release/relbert}
REPEAT=${REPEAT:-3}
export RELBERT_LOG=error RELBERT_PROGRESS_SECS=3600
mkdir -p "$WORK"
echo "# corpus $CORPUS ($(du -sb "$CORPUS" | cut -f1) bytes), $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), $(git rev-parse --short HEAD)" >&2
for round in $(seq "$REPEAT"); do
    for mode in once keep; do
        extra=()
        [ "$mode" = keep ] && extra=(--keep-repeated-paragraphs)
        /usr/bin/time -f '%e %U %S' -o "$WORK/time" "$RELBERT" pairs mine --corpus "$CORPUS" \
            --out "$WORK/$mode.tsv" --report "$WORK/$mode.json" --force "${extra[@]}" \
            2>"$WORK/$mode.stderr" || { cat "$WORK/$mode.stderr" >&2; exit 1; }
        read -r wall user sys <"$WORK/time"
        python3 - "$WORK/$mode.json" "$mode" "$round" "$wall" "$user" "$sys" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
mode, rnd, wall, user, sys_ = sys.argv[2], int(sys.argv[3]), *map(float, sys.argv[4:7])
print(json.dumps({"mode": mode, "round": rnd, "wall_s": wall, "cpu_s": round(user + sys_, 2),
                  "tokens": r["tokens"], "repeated_paragraphs": r["repeated_paragraphs"],
                  "repeated_paragraph_bytes": r["repeated_paragraph_bytes"],
                  "distinct_pairs": r["distinct_pairs"], "pairs_above_floor": r["pairs_above_floor"]}))
PY
    done
done
