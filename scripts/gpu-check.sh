#!/usr/bin/env bash
# One unattended GPU check of a `--features cuda` relbert (issue 24), < 6 minutes on one H200
# with PyTorch installed and no network:
#   1. build facts (GPU, driver, the binary's CUDA libraries, torch);
#   2. parity: relbert at f32/f16/bf16 against Hugging Face transformers at f32 on 2,000 pairs
#      (worst cosine; bars 0.99999 at f32, 0.999 reduced);
#   3. throughput (pairs/s, tokenisation included) of relbert and PyTorch at f32/f16/bf16 ×
#      batch 32/128/512 on MiniLM-shaped and BERT-base-shaped models;
#   3b. the pruned last layer of mask pooling (`candle_prune`: full stack against
#      `Encoder::forward_rows`, pairs/s and the largest difference), both shapes, batch 512;
#   4. a 1,000,000-pair index build (MiniLM shape, bf16, f16 storage): encode / graph / wall /
#      peak RSS, with the graph built while the GPU encodes (`--graph-while-encoding`, on by
#      default on a GPU; the log line counts the rows inserted during encoding). With
#      BUILD_COMPARE=1 the same build again with `--graph-while-encoding off` (~100 s more).
# Results: OUT (default gpu-check-out/): facts.txt, parity.jsonl, throughput.jsonl, build.txt,
# summary.md. Each step is time-boxed and a failing step does not stop the others.
#
# Before (on any machine, with network): scripts/build-cuda.sh --release --bin relbert
# --example embed_throughput --example candle_prune; bring target/release/relbert and
# target/release/examples/{embed_throughput,candle_prune} (or set RELBERT_BIN /
# RELBERT_BENCH_BIN / RELBERT_PRUNE_BIN) and, for
# realistic token counts, models/all-MiniLM-L6-v2/tokenizer.json. The models are random-weight
# BERTs of the two shapes made here by PyTorch (throughput does not depend on the weights;
# parity compares both engines on the same weights).
#
#   scripts/gpu-check.sh [OUT]      env: PYTHON, THROUGHPUT_PAIRS (20000), BUILD_PAIRS (1000000),
#   SHAPES ("minilm base") and DTYPES ("f32 f16 bf16") of step 3, ROUNDS (1) of step 3: a second
#   round repeats every shape x dtype after the first (interleaved, so a drifting clock or a warm
#   GPU favours neither engine) and the summary gives the median ratio over the rounds;
#   ONLY_BUILD=1 runs steps 1 and 4 alone (a build change measured in under 4 minutes);
#   BUILD_VARIANTS="NAME:OPT,OPT ..." and BUILD_ROUNDS (2) alternate 1M builds with different
#   `index build` options after a warm-up build (step 4b).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-check-out}}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=${PYTHON:-python3}
bin=${RELBERT_BIN:-${CARGO_TARGET_DIR:-target}/release/relbert}
bench=${RELBERT_BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release/examples/embed_throughput}
prune=${RELBERT_PRUNE_BIN:-${CARGO_TARGET_DIR:-target}/release/examples/candle_prune}
peer=scripts/gpu_peer.py
tp_pairs=${THROUGHPUT_PAIRS:-20000}
build_pairs=${BUILD_PAIRS:-1000000}
start=$SECONDS
say() { echo "gpu-check [$((SECONDS - start)) s] $*" >&2; }

. scripts/gpu-env.sh

# 1. Facts.
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
    echo "nproc $(nproc)"
    echo "relbert: $("$bin" --version 2>&1)"
    ldd "$bin" 2>&1 | grep -E 'cuda|cublas|curand|nvrtc|not found'
    "$py" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' 2>&1
} > "$out/facts.txt"
say "facts: $(head -2 "$out/facts.txt" | tail -1)"

tokenizer=models/all-MiniLM-L6-v2/tokenizer.json
[ -f "$tokenizer" ] || tokenizer=tests/fixtures/tiny-bert/tokenizer.json
for shape in minilm base; do
    timeout 120 "$py" "$peer" model --shape $shape --tokenizer "$tokenizer" --out "$work/$shape" >/dev/null ||
        say "FAILED: making the $shape model"
done
timeout 60 "$py" "$peer" pairs --n 2000 --out "$work/parity.tsv" --seed 1
timeout 60 "$py" "$peer" pairs --n "$tp_pairs" --out "$work/throughput.tsv" --seed 2
timeout 120 "$py" "$peer" pairs --n "$build_pairs" --out "$work/build.tsv" --seed 3 &
pairs_job=$!
say "models and pairs ready"

# 2. Parity against transformers at f32 (MiniLM shape).
: > "$out/parity.jsonl"
: > "$out/throughput.jsonl"
: > "$out/prune.jsonl"
if [ "${ONLY_BUILD:-0}" = 1 ]; then
    say "ONLY_BUILD=1: no parity, throughput or pruned-layer step"
else
if timeout 120 "$py" "$peer" encode --model "$work/minilm" --pairs "$work/parity.tsv" --batch-size 128 \
    --dtype f32 --save "$work/hf.npy" > /dev/null; then
    for dtype in f32 f16 bf16; do
        if timeout 60 "$bin" embed --model "$work/minilm" --pairs "$work/parity.tsv" --device cuda:0 \
            --dtype $dtype --raw --format npy --out "$work/ours_$dtype.npy" --force 2>> "$out/parity.log"; then
            r=$(timeout 60 "$py" "$peer" compare "$work/hf.npy" "$work/ours_$dtype.npy")
            echo "{\"shape\": \"minilm\", \"dtype\": \"$dtype\", \"against\": \"transformers f32\", \"result\": $r}" >> "$out/parity.jsonl"
        else
            echo "{\"shape\": \"minilm\", \"dtype\": \"$dtype\", \"error\": \"relbert embed failed (parity.log)\"}" >> "$out/parity.jsonl"
        fi
    done
else
    say "FAILED: the transformers side of parity"
fi
say "parity: $(tr '\n' ' ' < "$out/parity.jsonl")"

# 3. Throughput, both engines, same pairs, one process per shape × dtype × engine.
for round in $(seq 1 "${ROUNDS:-1}"); do
for shape in ${SHAPES:-minilm base}; do
    for dtype in ${DTYPES:-f32 f16 bf16}; do
        timeout 150 "$py" "$peer" encode --model "$work/$shape" --pairs "$work/throughput.tsv" \
            --batch-size 32,128,512 --dtype $dtype |
            sed "s/^{/{\"round\": $round, \"shape\": \"$shape\", /" >> "$out/throughput.jsonl" ||
            say "FAILED: pytorch $shape $dtype"
        RELBERT_DEVICE=cuda:0 RELBERT_DTYPE=$dtype timeout 120 "$bench" "$work/$shape" "$work/throughput.tsv" 1 32 128 512 \
            > "$work/ours.json" 2>> "$out/throughput.log" &&
            "$py" -c 'import json,sys; d=json.load(open(sys.argv[1]))
for r in d["results"]: print(json.dumps({"round": int(sys.argv[3]), "shape": sys.argv[2], "engine": "relbert", "dtype": d["dtype"], "batch_size": r["batch_size"], "n_pairs": r["n_pairs"], "pairs_per_s": r["pairs_per_s"]}))' \
                "$work/ours.json" $shape $round >> "$out/throughput.jsonl" || say "FAILED: relbert $shape $dtype"
        say "throughput round $round $shape $dtype done"
    done
done
done

# 3b. The pruned last layer (mask pooling reads one row per prompt) against the full stack.
if [ -x "$prune" ]; then
    for shape in minilm base; do
        RELBERT_DEVICE=cuda:0 timeout 60 "$prune" "$work/$shape" "$work/parity.tsv" 3 512 \
            2>> "$out/throughput.log" | sed "s/^{/{\"shape\": \"$shape\", /" >> "$out/prune.jsonl" ||
            say "FAILED: candle_prune $shape"
    done
else
    say "skipped the pruned-layer step: no $prune"
fi
fi # ONLY_BUILD

# 4. The 1M-pair index build (peak RSS where GNU time is installed; the wall is relbert's own).
wait $pairs_job
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -v)
build_start=$SECONDS
if [ -n "${BUILD_VARIANTS:-}" ]; then
    echo "step 4 replaced by BUILD_VARIANTS (step 4b)" > "$out/build.txt"
else
    "${timer[@]}" timeout 300 "$bin" index build --model "$work/minilm" --pairs "$work/build.tsv" \
        --device cuda:0 --dtype bf16 --f16 --out "$work/idx" > "$out/build.txt" 2>&1 ||
        say "FAILED: the 1M build (build.txt)"
    echo "script wall clock: $((SECONDS - build_start)) s" >> "$out/build.txt"
    say "build: $(grep -E 'encoding .*graph' "$out/build.txt" | tail -1)"
fi
if [ "${BUILD_COMPARE:-0}" = 1 ]; then
    rm -rf "$work/idx"
    "${timer[@]}" timeout 300 "$bin" index build --model "$work/minilm" --pairs "$work/build.tsv" \
        --device cuda:0 --dtype bf16 --f16 --graph-while-encoding off --out "$work/idx" \
        > "$out/build-off.txt" 2>&1 || say "FAILED: the 1M build without staging (build-off.txt)"
    say "build, graph after encoding: $(grep -E 'encoding .*graph' "$out/build-off.txt" | tail -1)"
fi
# 4b. Build variants, alternated round by round after a warm-up build (so neither pays for a
# cold GPU or page cache): BUILD_VARIANTS="NAME:ARGS ..." (ARGS comma-separated `index build`
# options), BUILD_ROUNDS (2). Each run writes build-NAME-ROUND.txt.
if [ -n "${BUILD_VARIANTS:-}" ]; then
    head -n 50000 "$work/build.tsv" > "$work/warm.tsv"
    rm -rf "$work/idx"
    timeout 120 "$bin" index build --model "$work/minilm" --pairs "$work/warm.tsv" --device cuda:0 \
        --dtype bf16 --f16 --out "$work/idx" > "$out/build-warmup.txt" 2>&1 || say "FAILED: the warm-up build"
    for round in $(seq 1 "${BUILD_ROUNDS:-2}"); do
        for variant in $BUILD_VARIANTS; do
            name=${variant%%:*}
            extra=()
            case $variant in *:?*) IFS=, read -r -a extra <<< "${variant#*:}" ;; esac
            rm -rf "$work/idx"
            "${timer[@]}" timeout 300 "$bin" index build --model "$work/minilm" --pairs "$work/build.tsv" \
                --device cuda:0 --dtype bf16 --f16 "${extra[@]}" --out "$work/idx" \
                > "$out/build-$name-$round.txt" 2>&1 || say "FAILED: build $name round $round"
            say "build $name round $round: $(grep -E 'encoding .*graph' "$out/build-$name-$round.txt" | tail -1); $(grep -E 'Elapsed' "$out/build-$name-$round.txt")"
        done
    done
fi

# Summary.
"$py" - "$out" <<'PY'
import json, os, re, statistics, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(out, "throughput.jsonl")) if l.strip()]
md = ["# GPU check", "", "```", open(os.path.join(out, "facts.txt")).read().strip(), "```", "",
      "## Parity (2,000 pairs, MiniLM shape, against transformers f32)", "",
      "| dtype | worst cosine | bar |", "|---|---|---|"]
for l in open(os.path.join(out, "parity.jsonl")):
    p = json.loads(l)
    w = p.get("result", {}).get("worst_cosine")
    bar = 0.99999 if p["dtype"] == "f32" else 0.999
    md.append(f"| {p['dtype']} | {w} | {bar} {'PASS' if w is not None and w >= bar else 'FAIL'} |")
rounds = sorted({r.get("round", 1) for r in rows}) or [1]
md += ["", "## Throughput (pairs/s" + (f"; medians of {len(rounds)} rounds, each ratio the median of the rounds' ratios" if len(rounds) > 1 else "") + ")", "",
       "| shape | dtype | batch | PyTorch | relbert | ratio | × PyTorch f16 |", "|---|---|---|---|---|---|---|"]
get = {(r.get("round", 1), r["shape"], r.get("engine", "pytorch"), r["dtype"], r["batch_size"]): r["pairs_per_s"] for r in rows}
def med(xs):
    xs = [x for x in xs if x]
    return statistics.median(xs) if xs else None
for shape in ("minilm", "base"):
    for dtype in ("f32", "f16", "bf16"):
        for bs in (32, 128, 512):
            ps = [get.get((n, shape, "pytorch", dtype, bs)) for n in rounds]
            os_ = [get.get((n, shape, "relbert", dtype, bs)) for n in rounds]
            hs = [get.get((n, shape, "pytorch", "f16", bs)) for n in rounds]
            p, o = med(ps), med(os_)
            if p is None and o is None:
                continue
            ratio = med([b / a for a, b in zip(ps, os_) if a and b])
            rh = med([b / a for a, b in zip(hs, os_) if a and b])
            md.append(f"| {shape} | {dtype} | {bs} | {p} | {o} | {f'{ratio:.2f}×' if ratio else '-'} | {f'{rh:.2f}×' if rh else '-'} |")
md += ["", "## Pruned last layer (mask pooling, batch 512, 2,000 pairs; pairs/s of the forward passes)", "",
       "| shape | full stack | pruned | ratio (median of rounds) | largest relative difference |", "|---|---|---|---|---|"]
p = os.path.join(out, "prune.jsonl")
for l in (open(p) if os.path.exists(p) else []):
    if l.strip():
        r = json.loads(l)
        md.append(f"| {r['shape']} | {r['median_full']:.0f} | {r['median_pruned']:.0f} | {r['median_ratio']:.3f}× | {r['max_rel_diff']:.1e} |")
b = open(os.path.join(out, "build.txt")).read()
enc = re.findall(r"index .*", b)
rss = re.findall(r"Maximum resident set size \(kbytes\): (\d+)", b)
wall = re.findall(r"Elapsed \(wall clock\) time.*: (\S+)", b) or re.findall(r"script wall clock: (.*)", b)
md += ["", "## 1M-pair build (MiniLM shape, bf16, f16 storage)", "",
       f"- {enc[-1] if enc else 'no report (see build.txt)'}",
       f"- wall {wall[-1] if wall else '?'}, peak RSS {int(rss[-1]) // 1024 if rss else '?'} MiB"]
off = os.path.join(out, "build-off.txt")
if os.path.exists(off):
    b = open(off).read()
    enc = re.findall(r"index .*", b)
    wall = re.findall(r"Elapsed \(wall clock\) time.*: (\S+)", b)
    md += [f"- without --graph-while-encoding: {enc[-1] if enc else 'no report (see build-off.txt)'}; "
           f"wall {wall[-1] if wall else '?'}"]
import glob
runs = sorted(glob.glob(os.path.join(out, "build-*-*.txt")))
if runs:
    md += ["", "## Build variants (alternated, after a warm-up build)", "", "| run | report | wall |", "|---|---|---|"]
    for f in runs:
        b = open(f).read()
        enc = re.findall(r"INFO index .*", b)
        wall = re.findall(r"Elapsed \(wall clock\) time.*: (\S+)", b)
        md.append(f"| {os.path.basename(f)[6:-4]} | {enc[-1] if enc else '?'} | {wall[-1] if wall else '?'} |")
open(os.path.join(out, "summary.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
say "done"
