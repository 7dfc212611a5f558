#!/usr/bin/env bash
# `relbert index remove` against building the index again from its pairs.
#
# Builds an index of the first N distinct pairs of index/vocab/wordnet_hypernym.tsv with the
# base model (f32, m 16), then, ROUNDS times on a fresh copy of it, removes K of its pairs
# (a fixed pseudo-random choice) and, for comparison, rebuilds the copy in place without
# removing anything (the same copy and graph work); prints one JSON line per timing and the
# machine. Usage: benchmarks/index/remove.sh WORK [N] [K] [ROUNDS]; RELBERT_BIN picks the
# binary (default target/release/relbert).
set -euo pipefail
work=${1:?usage: remove.sh WORK [N] [K] [ROUNDS]}
n=${2:-30000}
k=${3:-300}
rounds=${4:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${RELBERT_BIN:-$root/target/release/relbert}
model=$root/models/all-MiniLM-L6-v2
mkdir -p "$work"
cd "$work"
# One pass of awk (a `head` after it would end the pipe early, which pipefail reports).
awk -F'\t' -v n="$n" '!/^#/ && !s[tolower($1)"\t"tolower($2)]++ { print; if (++c == n) exit }' \
  "$root/index/vocab/wordnet_hypernym.tsv" > pairs.tsv
# Every (n/k)-th pair: the same choice on every machine.
awk -v step=$((n / k)) 'NR % step == 0' pairs.tsv | head -"$k" > gone.tsv
echo "{\"label\":\"machine\",\"cpu\":\"$(lscpu | sed -n 's/^Model name: *//p' | head -1)\",\"cores\":$(nproc),\"date\":\"$(date -u +%FT%TZ)\",\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
secs() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }
rm -rf idx
t=$(secs "$bin" index build --model "$model" --pairs pairs.tsv --out idx)
echo "{\"label\":\"build\",\"pairs\":$(wc -l < pairs.tsv),\"seconds\":$t}"
for r in $(seq "$rounds"); do
  rm -rf copy copy.partial && cp -r idx copy
  t=$(secs "$bin" index remove --index copy --pairs gone.tsv)
  echo "{\"label\":\"remove\",\"round\":$r,\"removed\":$(wc -l < gone.tsv),\"seconds\":$t}"
  rm -rf copy copy.partial && cp -r idx copy
  t=$(secs "$bin" index rebuild --index copy --out copy --force)
  echo "{\"label\":\"rebuild in place\",\"round\":$r,\"seconds\":$t}"
done
rm -rf copy
