#!/usr/bin/env bash
# How often WordNet relates the pairs `relbert pairs mine` ranks first (PMI, count) against
# random pairs above the same count floor, on the Debian-docs corpus (make_corpus.sh), with
# the binary built from this checkout. Writes results/quality-DATE.json: a first object with
# the machine, commit, command and date, then quality.py's object.
# Usage: benchmarks/corpus/quality.sh [WORK_DIR]   (needs target/release/relbert, python3)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/tmp/relbert-quality}
bin="$root/target/release/relbert"
data="$root/../shared/data"
mkdir -p "$work"
[ -d "$work/corpus" ] || "$root/benchmarks/corpus/make_corpus.sh" "$work/corpus"
mine() { "$bin" pairs mine --corpus "$work/corpus" --force "$@"; }
# Defaults: window 10, min-count 5, min-pair-count 5.
mine --score pmi --out "$work/pmi.tsv" --max-pairs 100000 --save-vocab "$work/vocab.tsv"
mine --score count --out "$work/count.tsv" --max-pairs 100000
mine --score count --out "$work/all.tsv" --max-pairs 100000000
out="$root/benchmarks/corpus/results/quality-$(date -u +%F).json"
{
    python3 - "$bin" <<'PY'
import json, platform, subprocess, sys, datetime, os
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
commit = subprocess.run(["git", "-C", os.path.dirname(sys.argv[1]) + "/../..", "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip()
print(json.dumps({"machine": f"{cpu}, {os.cpu_count()} cores", "commit": commit,
                  "command": "benchmarks/corpus/quality.sh",
                  "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}))
PY
    python3 "$root/benchmarks/corpus/quality.py" --pmi "$work/pmi.tsv" --count "$work/count.tsv" \
        --all "$work/all.tsv" --vocab "$work/vocab.tsv" --analogy-dir "$data"
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
