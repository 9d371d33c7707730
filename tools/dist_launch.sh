#!/usr/bin/env bash
# torchrun launcher shared by dist_train.sh and dist_test.sh: tools/dist_launch.sh SCRIPT NPROC [args...]
# runs tools/SCRIPT on NPROC processes with --launcher pytorch. Multi-node: NNODES, NODE_RANK, MASTER_ADDR and
# PORT as in OpenMMLab's scripts; PYTHON picks the interpreter. Without CUDA the processes run on CPUs (gloo).
set -euo pipefail
SCRIPT=$1
NPROC=$2
shift 2
TOOLS="$(cd "$(dirname "$0")" && pwd)"
PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-python}" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --master_port="${PORT:-29500}" --nproc_per_node="$NPROC" \
  "$TOOLS/$SCRIPT" "$@" --launcher pytorch
