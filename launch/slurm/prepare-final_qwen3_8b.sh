#!/bin/bash
#SBATCH --job-name=prepare-final-qwen3_8b
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --time=24:00:00
#SBATCH --partition=gpu
#SBATCH --exclusive
#SBATCH --output=runs/qwen3_8b/prepare/logs/%x.%j.log
#
# prepare of run qwen3_8b on slurm: after the 16 tasks: check every shard, write stats.json
# rendered by: swallow-train launch stage=prepare cluster=slurm queue=gpu model=qwen3_8b run.name=qwen3_8b
# submit with: sbatch --parsable runs/qwen3_8b/prepare/final.slurm.sh
# Re-render rather than edit: the job runs `python -m swallow_train prepare` with the
# overrides of the stage it prepares for, so it writes exactly the data that stage checks.
set -uo pipefail
cd "${SLURM_SUBMIT_DIR:?not a Slurm job: submit with sbatch}" || exit 1
JOB_ID=${SLURM_JOB_ID:?}
STAGE=prepare
STAGE_DIR=runs/qwen3_8b/prepare
say() { printf '[swallow-train %(%F %T)T] %s\n' -1 "$*"; }
mkdir -p "$STAGE_DIR/logs" || exit 1

# --- environment
# shellcheck disable=SC1091
. .venv/bin/activate || exit 1
export CUDA_DEVICE_MAX_CONNECTIONS=1
export PYTHONUNBUFFERED=1

# --- every core of this node tokenizes
CORES=$(nproc)
RECIPE=(
  cluster=slurm cluster.queue=gpu model=qwen3_8b run.name=qwen3_8b
)
say "$STAGE: checking every shard and writing stats.json, $CORES cores, job $JOB_ID"
if ! python -m swallow_train prepare "${RECIPE[@]}" "data.num_workers=$CORES"; then
  say "error: $STAGE failed (see above); submit the script again: finished work is kept"
  exit 1
fi
say "$STAGE: done"
