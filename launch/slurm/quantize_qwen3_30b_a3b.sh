#!/bin/bash
#SBATCH --job-name=quantize-qwen3_30b_a3b
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --time=24:00:00
#SBATCH --partition=gpu
#SBATCH --exclusive
#SBATCH --output=runs/qwen3_30b_a3b/quantize/logs/%x.%j.log
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@900
#
# quantize of run qwen3_30b_a3b on slurm: AWQ W4A16 of the rl export, gated, 1 node x 8 GPU(s)
# rendered by: swallow-train launch stage=quantize cluster=slurm queue=gpu model=qwen3_30b_a3b run.name=qwen3_30b_a3b
# submit with: sbatch --parsable runs/qwen3_30b_a3b/quantize/job.slurm.sh
# Re-render rather than edit: the job runs `python -m swallow_train quantize` with the same
# overrides, so it composes exactly the recipe that was validated. One process; a job that
# stops early is submitted again as it is (the stage skips what is finished).
set -uo pipefail
cd "${SLURM_SUBMIT_DIR:?not a Slurm job: submit with sbatch}" || exit 1
JOB_ID=${SLURM_JOB_ID:?}
STAGE="quantize"
STAGE_DIR=runs/qwen3_30b_a3b/quantize
SCRIPT=runs/qwen3_30b_a3b/quantize/job.slurm.sh
say() { printf '[swallow-train %(%F %T)T] %s\n' -1 "$*"; }

if [ -f "$STAGE_DIR/DONE" ]; then
  say "$STAGE: $STAGE_DIR/DONE exists, the stage is finished; nothing to do"
  exit 0
fi
if [ ! -f runs/qwen3_30b_a3b/rl/DONE ]; then
  say "error: $STAGE reads the rl stage's export, but runs/qwen3_30b_a3b/rl/DONE does not exist: finish rl first"
  exit 1
fi
mkdir -p "$STAGE_DIR/logs" || exit 1

# --- environment
# shellcheck disable=SC1091
. .venv/bin/activate || exit 1
export CUDA_DEVICE_MAX_CONNECTIONS=1
export PYTHONUNBUFFERED=1

say "$STAGE: AWQ W4A16 of the rl export, gated, job $JOB_ID"
RUN=(
  python -m swallow_train quantize
  cluster=slurm cluster.nodes=1 cluster.queue=gpu model=qwen3_30b_a3b run.name=qwen3_30b_a3b
)
"${RUN[@]}"
RC=$?
if [ -f "$STAGE_DIR/DONE" ]; then
  say "$STAGE: finished ($STAGE_DIR/DONE)"
  exit 0
fi
say "error: $STAGE did not finish (status $RC); see the log above, then submit again: $SCRIPT"
if [ "$RC" -eq 0 ]; then exit 1; fi
exit "$RC"
