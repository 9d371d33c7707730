#!/usr/bin/env bash
# srun launcher shared by slurm_train.sh and slurm_test.sh:
#   tools/slurm_launch.sh SCRIPT PARTITION JOB_NAME [args...]
# runs tools/SCRIPT as one Slurm task per GPU with --launcher slurm (mmengine reads SLURM_PROCID, SLURM_NTASKS
# and SLURM_NODELIST; MASTER_PORT, default 29500, sets the rendezvous port). Environment, as in OpenMMLab's
# scripts: GPUS (tasks in all, default 8), GPUS_PER_NODE (default: GPUS, at most 8), CPUS_PER_TASK (default 5),
# SRUN_ARGS (extra srun options, split on spaces), PYTHON (the interpreter, default python).
set -euo pipefail
SCRIPT=$1
PARTITION=$2
JOB_NAME=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
TOOLS="$(cd "$(dirname "$0")" && pwd)"
# shellcheck disable=SC2086  # SRUN_ARGS holds several options
PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
exec srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
  "${PYTHON:-python}" -u "$TOOLS/$SCRIPT" "$@" --launcher=slurm
