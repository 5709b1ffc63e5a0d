#!/bin/bash
#$ -N prepare-rl-qwen3_8b
#$ -S /bin/bash
#$ -cwd
#$ -l cpu_160=1
#$ -l h_rt=24:00:00
#$ -j y
#$ -o runs/qwen3_8b/prepare-rl/logs/$JOB_NAME.o$JOB_ID
# The group goes on the command line (qsub -g tga-xxxxx), not into the script.
#
# prepare-rl of run qwen3_8b on tsubame4: one CPU node
# rendered by: swallow-train launch stage=prepare-rl cluster=tsubame4 group=tga-xxxxx model=qwen3_8b run.name=qwen3_8b
# submit with: qsub -terse -g tga-xxxxx runs/qwen3_8b/prepare-rl/job.sge.sh
# Re-render rather than edit: the job runs `python -m swallow_train prepare-rl` with the
# overrides of the stage it prepares for, so it writes exactly the data that stage checks.
set -uo pipefail
JOB_ID=${JOB_ID:?not a Grid Engine job: submit with qsub}
STAGE=prepare-rl
STAGE_DIR=runs/qwen3_8b/prepare-rl
say() { printf '[swallow-train %(%F %T)T] %s\n' -1 "$*"; }
mkdir -p "$STAGE_DIR/logs" || exit 1

# --- environment
# shellcheck disable=SC1091
if [ -f /etc/profile.d/modules.sh ]; then . /etc/profile.d/modules.sh; fi
module load cuda/12.8.0 cudnn/9.8.0 nccl/2.26.2 openmpi/5.0.7-gcc || exit 1
# shellcheck disable=SC1091
. .venv/bin/activate || exit 1
export CUDA_DEVICE_MAX_CONNECTIONS=1
export PYTHONUNBUFFERED=1

# --- every core of this node tokenizes
CORES=$(nproc)
RECIPE=(
  cluster=tsubame4 cluster.group=tga-xxxxx model=qwen3_8b run.name=qwen3_8b
)
say "$STAGE: preparing, $CORES cores, job $JOB_ID"
if ! python -m swallow_train prepare-rl "${RECIPE[@]}"; then
  say "error: $STAGE failed (see above); submit the script again: finished work is kept"
  exit 1
fi
say "$STAGE: done"
