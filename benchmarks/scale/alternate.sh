#!/bin/bash
# Export rate into a local 3-node cluster (3 shards x 2 replicas; 256 x 4 and 512 x 8 batches
# in flight) and into one node (256 x 4), alternating, 3 rounds of 20,000 x 768-d points and
# 200 queries each (benchmarks/scale/README.md). Prints JSON Lines: a machine line, then one
# line per run with scale_export's JSON object under "result". Needs ../shared/engines/qdrant.
#   benchmarks/scale/alternate.sh > benchmarks/scale/results-DATE.jsonl
set -u
cd "$(dirname "$0")/../.."
Q=../shared/engines/qdrant
W=$(mktemp -d /tmp/relbert-scale.XXXXXX)
export QDRANT_BIN=$($Q/qdrant-bin.sh)
cargo build --release --example scale_export >&2 || exit 1
stop() { $Q/stop-local-cluster.sh $W/c3 >/dev/null 2>&1; $Q/stop-local-cluster.sh $W/c1 >/dev/null 2>&1; rm -rf $W; }
trap stop EXIT
QDRANT_WAIT_SECS=60 $Q/start-local-cluster.sh 3 18600 $W/c3 >&2 || exit 1
QDRANT_WAIT_SECS=60 $Q/start-local-cluster.sh 1 18700 $W/c1 >&2 || exit 1
U3=http://127.0.0.1:18601,http://127.0.0.1:18611,http://127.0.0.1:18621
U1=http://127.0.0.1:18701
B=target/release/examples/scale_export
echo "{\"label\":\"machine\",\"cpu\":\"$(lscpu | sed -n 's/^Model name: *//p')\",\"cores\":$(nproc),\"date\":\"$(date -u +%FT%TZ)\",\"commit\":\"$(git rev-parse --short HEAD)\",\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
for r in 1 2 3; do
  for cfg in "3 256 4" "3 512 8" "1 256 4"; do
    set -- $cfg
    if [ $1 = 3 ]; then U=$U3; S=3; R=2; else U=$U1; S=1; R=1; fi
    out=$($B $U sc_${r}_$1_$2 20000 768 $S $R 200 $2 $3) || exit 1
    echo "{\"round\":$r,\"nodes\":$1,\"batch\":$2,\"in_flight\":$3,\"load_after\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"result\":$out}"
  done
done
