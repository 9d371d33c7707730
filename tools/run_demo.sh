#!/usr/bin/env bash
# README command 1: install the pinned stack into .venv (idempotent; the first run compiles mmcv, ~15 min on
# 2 cores), then train SkipAt-T + UperNet from scratch on the bundled demo dataset and check that it beats the
# majority-class baseline (tools/demo.py; its options pass through, e.g. --max-iters N, --work-dir DIR).
#   bash tools/run_demo.sh [--data-root data/demo_ade] [--work-dir work_dirs/demo] [--max-iters N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
# OpenMP threads that spin while waiting collapse when the CPU is shared (measured 4-5x slower per step with
# 2 threads on a busy 2-core machine); passive waiting costs little on a quiet one.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec "$ROOT/.venv/bin/python" "$ROOT/tools/demo.py" "$@"
