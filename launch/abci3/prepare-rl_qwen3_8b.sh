#!/bin/bash
#PBS -N prepare-rl-qwen3_8b
#PBS -S /bin/bash
#PBS -q rt_HC
#PBS -l select=1
#PBS -l walltime=24:00:00
#PBS -P gxx00000
#PBS -j oe
#PBS -o runs/qwen3_8b/prepare-rl/logs/
#
# prepare-rl of run qwen3_8b on abci3: one CPU node
# rendered by: swallow-train launch stage=prepare-rl cluster=abci3 group=gxx00000 model=qwen3_8b run.name=qwen3_8b
# submit with: qsub runs/qwen3_8b/prepare-rl/job.pbs.sh
# Re-render rather than edit: the job runs `python -m swallow_train prepare-rl` with the
# overrides of the stage it prepares for, so it writes exactly the data that stage checks.
set -uo pipefail
cd "${PBS_O_WORKDIR:?not a PBS job: submit with qsub}" || exit 1
JOB_ID=${PBS_JOBID:?}
STAGE=prepare-rl
STAGE_DIR=runs/qwen3_8b/prepare-rl
say() { printf '[swallow-train %(%F %T)T] %s\n' -1 "$*"; }
mkdir -p "$STAGE_DIR/logs" || exit 1

# --- environment
# shellcheck disable=SC1091
if [ -f /etc/profile.d/modules.sh ]; then . /etc/profile.d/modules.sh; fi
module load cuda/12.9/12.9.1 cudnn/9.10/9.10.2 nccl/2.27/2.27.5-1 hpcx/2.20 || exit 1
# shellcheck disable=SC1091
. .venv/bin/activate || exit 1
export CUDA_DEVICE_MAX_CONNECTIONS=1
export PYTHONUNBUFFERED=1

# --- every core of this node tokenizes
CORES=$(nproc)
RECIPE=(
  cluster=abci3 cluster.group=gxx00000 model=qwen3_8b run.name=qwen3_8b
)
say "$STAGE: preparing, $CORES cores, job $JOB_ID"
if ! python -m swallow_train prepare-rl "${RECIPE[@]}"; then
  say "error: $STAGE failed (see above); submit the script again: finished work is kept"
  exit 1
fi
say "$STAGE: done"
