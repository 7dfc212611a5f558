#!/usr/bin/env bash
# The serve benchmark's pairs, in DIR (run.sh and scripts/gpu-serve-check.sh share them, so
# their figures are of the same queries):
#   pairs.tsv    4,000 pairs (every 37th line of index/vocab), kept when present: the index's;
#   stored.tsv   those pairs shuffled (queries answered from the index);
#   encoded.tsv  2,000 pairs that are not stored: a head with another pair's tail.
#   benchmarks/serve/pairs.sh DIR        (from the repository's root)
set -euo pipefail
dir=$1
[ -f "$dir/pairs.tsv" ] ||
    cat index/vocab/*.tsv | grep -v '^#' | awk -F'\t' 'NR % 37 == 0 && NF >= 2 && n++ < 4000' > "$dir/pairs.tsv"
cut -f1,2 "$dir/pairs.tsv" | shuf --random-source=<(yes) > "$dir/stored.tsv"
paste <(cut -f1 "$dir/pairs.tsv") <(cut -f2 "$dir/pairs.tsv" | tail -n +8) \
    | awk -F'\t' 'NF == 2 && $2 != ""' | sort -u \
    | comm -23 - <(cut -f1,2 "$dir/pairs.tsv" | sort -u) | shuf -n 2000 --random-source=<(yes) > "$dir/encoded.tsv"
