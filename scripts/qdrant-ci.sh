#!/usr/bin/env bash
# Sourced by .ci/run: starts a 3-node local Qdrant cluster (the server binary in
# ../shared/engines/qdrant/) and makes a Python venv with gensim, then exports the variables
# tests/qdrant_cluster.rs and tests/export_files.rs look for. Each step is time-boxed; a step
# that fails leaves its variables unset, so its tests skip instead of hanging, and .ci/run's
# skip ledger then fails CI. Failures are said on standard output, where the log has them.
# `qdrant_ci_stop` stops the cluster.
QDRANT_ENGINE=${QDRANT_ENGINE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/engines/qdrant}
QDRANT_CI_DIR=$(mktemp -d "${TMPDIR:-/tmp}/relbert-qdrant-ci.XXXXXX")
QDRANT_CI_PORT=${QDRANT_CI_PORT:-18900}
if QDRANT_BIN=$(timeout 120 "$QDRANT_ENGINE/qdrant-bin.sh") &&
    QDRANT_BIN=$QDRANT_BIN QDRANT_WAIT_SECS=60 timeout 180 \
        "$QDRANT_ENGINE/start-local-cluster.sh" 3 "$QDRANT_CI_PORT" "$QDRANT_CI_DIR/cluster" >"$QDRANT_CI_DIR/start.log" 2>&1; then
    export QDRANT_BIN
    export RELBERT_QDRANT_CLUSTER_DIR=$QDRANT_CI_DIR/cluster
    export RELBERT_QDRANT_CLUSTER_PORT=$QDRANT_CI_PORT
    export RELBERT_QDRANT_START=$QDRANT_ENGINE/start-local-cluster.sh
    echo "ci: qdrant 3-node cluster on 127.0.0.1:$QDRANT_CI_PORT (+10, +20)"
else
    echo "ci: QDRANT CLUSTER NOT STARTED; its tests will skip:"
    tail -20 "$QDRANT_CI_DIR/start.log" | sed 's/^/ci:   /' || true
fi
if timeout 300 python3 -m venv "$QDRANT_CI_DIR/venv" &&
    timeout 300 "$QDRANT_CI_DIR/venv/bin/pip" install -q gensim; then
    export RELBERT_GENSIM_PYTHON=$QDRANT_CI_DIR/venv/bin/python
    echo "ci: gensim venv ready"
else
    echo "ci: GENSIM VENV NOT MADE; the gensim check will skip"
fi
qdrant_ci_stop() {
    if [ -d "$QDRANT_CI_DIR/cluster" ]; then
        "$QDRANT_ENGINE/stop-local-cluster.sh" "$QDRANT_CI_DIR/cluster" >/dev/null 2>&1 || true
    fi
    rm -rf "$QDRANT_CI_DIR"
}
