#!/usr/bin/env bash
# Single-thread search q/s, ours vs hnswlib, in alternating rounds over the same vectors, so
# that the load of a shared machine falls on both alike; reports medians and their ratio.
#
#   benchmarks/ann_alternate.sh VECTORS.npy OUR_INDEX_DIR HNSWLIB_GRAPH_FILE OUT_PREFIX
#
# OUR_INDEX_DIR: an index built from VECTORS.npy by `bench_index ann` (all rows but the last
# 1,000, which are the queries). HNSWLIB_GRAPH_FILE is built on the first call (same M 16,
# ef_construction 200 as ann_peer.py) and reused. Environment: ROUNDS (default 9), EF (default
# 32,128), PYTHON (a python with numpy and hnswlib, default /work/peer-venv/bin/python).
# Writes OUT_PREFIX.json and OUT_PREFIX.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -eq 4 ] || { echo "usage: $0 VECTORS.npy OUR_INDEX_DIR HNSWLIB_GRAPH OUT_PREFIX" >&2; exit 2; }
VECTORS=$1 INDEX=$2 GRAPH=$3 OUT=$4
ROUNDS=${ROUNDS:-9} EF=${EF:-32,128} PY=${PYTHON:-/work/peer-venv/bin/python}
cargo build --release --quiet -p relbert-index --example bench_index
BIN=target/release/examples/bench_index
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" benchmarks/ann_search_peer.py --vectors "$VECTORS" --graph "$GRAPH" --ef "$EF" --passes 1 > "$tmp/warm.json"
# Our recall@10 per ef, against the exact top 10 of the .npy's f32 rows (also warms the cache).
"$BIN" search --index "$INDEX" --vectors "$VECTORS" --ef "$EF" --repeat 1 --recall 1 > "$tmp/recall.json"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
ours() { "$BIN" search --index "$INDEX" --vectors "$VECTORS" --ef "$EF" --repeat 1 >> "$tmp/ours.jsonl"; }
peer() { "$PY" benchmarks/ann_search_peer.py --vectors "$VECTORS" --graph "$GRAPH" --ef "$EF" --passes 1 >> "$tmp/peer.jsonl"; }
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then ours; peer; else peer; ours; fi
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$tmp" "$OUT" "$VECTORS" "$INDEX" "$ROUNDS" "$load_start" "$load_end" "$*" <<'EOF'
import json, statistics, sys, datetime, platform
tmp, out, vectors, index, rounds, l0, l1, args = sys.argv[1:]
ours_recall = {r["ef"]: r["recall_at_10"] for r in json.load(open(f"{tmp}/recall.json"))["search"]}
ours = [json.loads(l) for l in open(f"{tmp}/ours.jsonl")]
peer = [json.loads(l) for l in open(f"{tmp}/peer.jsonl")]
model = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        model = line.split(":", 1)[1].strip(); break
rows = []
for i, s in enumerate(ours[0]["search"]):
    ef = s["ef"]
    o = [r["search"][i]["median_qps"] for r in ours]
    p = [r["search"][i]["qps"][0] for r in peer]
    rec = sorted({r["search"][i]["recall"] for r in peer})
    ratio = [a / b for a, b in zip(o, p)]
    rows.append({"ef": ef, "ours_recall": ours_recall.get(ef), "ours_qps": o, "hnswlib_qps": p, "hnswlib_recall": rec,
                 "ours_median": statistics.median(o), "hnswlib_median": statistics.median(p),
                 "ratio_of_medians": statistics.median(o) / statistics.median(p),
                 "per_round_ratio_median": statistics.median(ratio),
                 "per_round_ratio_min": min(ratio), "per_round_ratio_max": max(ratio)})
doc = {"date": datetime.date.today().isoformat(), "machine": model, "vectors": vectors,
       "index": index, "rounds": int(rounds), "load_average_start": l0, "load_average_end": l1,
       "command": f"benchmarks/ann_alternate.sh {args}", "results": rows}
json.dump(doc, open(f"{out}.json", "w"), indent=1)
with open(f"{out}.md", "w") as f:
    f.write(f"# Search q/s, ours vs hnswlib, alternating rounds\n\nCommand: `{doc['command']}` "
            f"(ROUNDS={rounds})\n\nDate: {doc['date']}. Machine: {model}; load average {l0} at start, {l1} at end.\n\n"
            "Each round: one pass of 1,000 queries, one at a time, one thread, with our index "
            "(`bench_index search --repeat 1`) and with hnswlib (`ann_search_peer.py`, graph built "
            "once with the same settings), in alternating order.\n\n"
            "| ef | ours recall@10 | ours median q/s | hnswlib recall@10 | hnswlib median q/s | ratio of medians | per-round ratio median (min–max) |\n"
            "|---|---|---:|---|---:|---:|---|\n")
    for r in rows:
        f.write(f"| {r['ef']} | {r['ours_recall']} | {r['ours_median']:.0f} | "
                f"{', '.join(str(x) for x in r['hnswlib_recall'])} | {r['hnswlib_median']:.0f} | "
                f"**{r['ratio_of_medians']:.2f}** | {r['per_round_ratio_median']:.2f} "
                f"({r['per_round_ratio_min']:.2f}–{r['per_round_ratio_max']:.2f}) |\n")
print(open(f"{out}.md").read())
EOF
