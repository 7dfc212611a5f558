#!/usr/bin/env bash
# Declared screen rule: stop after epoch 2 unless its score >= 0.5080.
log=/work/train-runs/temp01/train.log
while ! grep -q "^epoch 2:" $log; do sleep 10; done
score=$(grep "^epoch 2:" $log | sed 's/.*validation score \([0-9.]*\).*/\1/')
if python3 -c "import sys; sys.exit(0 if float('$score') >= 0.5080 else 1)"; then
  echo "epoch 2 score $score passes; continuing" >> /work/train-runs/temp01/watch.log
else
  pkill -INT -f "temp01/model"
  echo "epoch 2 score $score fails; stopped $(date -u)" >> /work/train-runs/temp01/watch.log
fi
