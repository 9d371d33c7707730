#!/usr/bin/env bash
# README command 1: install the pinned stack into .venv (idempotent; the first run compiles mmcv, ~15 min on
# 2 cores), then run a demo: train a model from scratch on its generated demo dataset and check that it beats a
# trivial baseline (tools/demo.py; its options pass through, e.g. --max-iters N, --work-dir DIR).
#   bash tools/run_demo.sh [TASK] [--data-root DIR] [--work-dir DIR] [--max-iters N]
# TASK: ade20k (default; SkipAt-T + UperNet vs the majority-class baseline). The tasks are those named by
# `demo = dict(task='...'` in configs/demo/*.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TASK=ade20k
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then TASK="$1"; shift; fi
# Check the task before the (possibly long) install.
TASKS="$(sed -n "s/^demo = dict(task='\([A-Za-z0-9_-]*\)'.*/\1/p" "$ROOT"/configs/demo/*.py | sort -u | tr '\n' ' ')"
if ! [[ " $TASKS" == *" $TASK "* ]]; then
  echo "run_demo.sh: unknown demo task '$TASK'; known tasks: ${TASKS:-none}" >&2
  exit 2
fi
bash "$ROOT/tools/setup_env.sh"
# OpenMP threads that spin while waiting collapse when the CPU is shared (measured 4-5x slower per step with
# 2 threads on a busy 2-core machine); passive waiting costs little on a quiet one.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec "$ROOT/.venv/bin/python" "$ROOT/tools/demo.py" "$TASK" "$@"
