#!/usr/bin/env bash
# `relbert index add` of 10% new pairs against a full rebuild of all of them, and recall@10
# of the grown index against exact search (benchmarks/corpus/index_add.md).
#
#   benchmarks/corpus/index_add.sh [PAIRS.tsv] [WORK_DIR]
#
# Env: RELBERT (binary, default target/release/relbert), BENCH_INDEX (the relbert-index
# bench_index example), MODEL (default models/all-MiniLM-L6-v2), THREADS (default 2),
# REPEAT (rounds of add + rebuild, default 3). The pairs are shuffled with a fixed seed, the
# first 90% become the base index, the other 10% are added. Each round times, back to back,
# one add (onto a fresh copy of the base index) and one full build of all pairs, so load from
# other processes weighs on both alike; medians over the rounds.
set -euo pipefail
cd "$(dirname "$0")/../.."
PAIRS=${1:-index/vocab/wordnet_lexical.tsv}
WORK=${2:-$(mktemp -d /tmp/relbert-index-add.XXXXXX)}
TARGET=${CARGO_TARGET_DIR:-target}
RELBERT=${RELBERT:-$TARGET/release/relbert}
BENCH_INDEX=${BENCH_INDEX:-$TARGET/release/examples/bench_index}
MODEL=${MODEL:-models/all-MiniLM-L6-v2}
THREADS=${THREADS:-2}
REPEAT=${REPEAT:-3}
export RELBERT_LOG=warn RELBERT_PROGRESS_SECS=3600
mkdir -p "$WORK"
grep -v '^#' "$PAIRS" | awk -F'\t' 'NF>=2' \
    | shuf --random-source=<(openssl enc -aes-256-ctr -pass pass:relbert-index-add -nosalt </dev/zero 2>/dev/null) \
    > "$WORK/all.tsv"
N=$(wc -l <"$WORK/all.tsv")
B=$((N * 9 / 10))
head -n "$B" "$WORK/all.tsv" >"$WORK/base.tsv"
tail -n +"$((B + 1))" "$WORK/all.tsv" >"$WORK/new.tsv"
echo "pairs $N: base $B, new $((N - B)); model $MODEL; --threads $THREADS; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"

secs() { date +%s.%N; }
rm -rf "$WORK/base"
t0=$(secs)
"$RELBERT" --threads "$THREADS" index build --model "$MODEL" --pairs "$WORK/base.tsv" --out "$WORK/base"
echo "base build: $(echo "$(secs) - $t0" | bc) s"

ADD=() FULL=()
for r in $(seq 1 "$REPEAT"); do
    rm -rf "$WORK/grown" "$WORK/grown.partial" "$WORK/full" "$WORK/full.partial"
    cp -r "$WORK/base" "$WORK/grown"
    t0=$(secs)
    "$RELBERT" --threads "$THREADS" index add --index "$WORK/grown" --pairs "$WORK/new.tsv" --json \
        >"$WORK/add-$r.json"
    a=$(echo "$(secs) - $t0" | bc)
    t0=$(secs)
    "$RELBERT" --threads "$THREADS" index build --model "$MODEL" --pairs "$WORK/all.tsv" --out "$WORK/full"
    f=$(echo "$(secs) - $t0" | bc)
    ADD+=("$a") FULL+=("$f")
    echo "round $r: add $a s ($(cat "$WORK/add-$r.json")), full build $f s, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ma=$(median "${ADD[@]}")
mf=$(median "${FULL[@]}")
echo "median add $ma s, median full build $mf s, ratio $(echo "scale=4; $ma / $mf" | bc)"
for ef in 32 64; do
    echo "grown ef $ef: $("$BENCH_INDEX" self-recall --index "$WORK/grown" --queries 3000 --ef $ef --from "$B")"
    echo "full  ef $ef: $("$BENCH_INDEX" self-recall --index "$WORK/full" --queries 3000 --ef $ef --from "$B")"
done
