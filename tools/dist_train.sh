#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG NPROC [train.py options...]
# (environment: see dist_launch.sh; without CUDA the processes train on CPUs over gloo).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG NPROC [train.py options...]" >&2
  exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
exec "$(dirname "$0")/dist_launch.sh" train.py "$NPROC" "$CONFIG" "$@"
