#!/bin/bash
#$ -N quantize-qwen3_32b
#$ -S /bin/bash
#$ -cwd
#$ -l node_f=1
#$ -l h_rt=24:00:00
#$ -j y
#$ -o runs/qwen3_32b/quantize/logs/$JOB_NAME.o$JOB_ID
#$ -r y
#$ -notify
# The group goes on the command line (qsub -g tga-xxxxx), not into the script.
#
# quantize of run qwen3_32b on tsubame4: AWQ W4A16 of the rl export, gated, 1 node x 4 GPU(s)
# rendered by: swallow-train launch stage=quantize cluster=tsubame4 group=tga-xxxxx model=qwen3_32b run.name=qwen3_32b
# submit with: qsub -terse -g tga-xxxxx runs/qwen3_32b/quantize/job.sge.sh
# Re-render rather than edit: the job runs `python -m swallow_train quantize` with the same
# overrides, so it composes exactly the recipe that was validated. One process; a job that
# stops early is submitted again as it is (the stage skips what is finished).
set -uo pipefail
JOB_ID=${JOB_ID:?not a Grid Engine job: submit with qsub}
STAGE="quantize"
STAGE_DIR=runs/qwen3_32b/quantize
SCRIPT=runs/qwen3_32b/quantize/job.sge.sh
say() { printf '[swallow-train %(%F %T)T] %s\n' -1 "$*"; }

if [ -f "$STAGE_DIR/DONE" ]; then
  say "$STAGE: $STAGE_DIR/DONE exists, the stage is finished; nothing to do"
  exit 0
fi
if [ ! -f runs/qwen3_32b/rl/DONE ]; then
  say "error: $STAGE reads the rl stage's export, but runs/qwen3_32b/rl/DONE does not exist: finish rl first"
  exit 1
fi
mkdir -p "$STAGE_DIR/logs" || exit 1

# --- environment
# shellcheck disable=SC1091
if [ -f /etc/profile.d/modules.sh ]; then . /etc/profile.d/modules.sh; fi
module load cuda/12.8.0 cudnn/9.8.0 nccl/2.26.2 openmpi/5.0.7-gcc || exit 1
# shellcheck disable=SC1091
. .venv/bin/activate || exit 1
export CUDA_DEVICE_MAX_CONNECTIONS=1
export PYTHONUNBUFFERED=1

say "$STAGE: AWQ W4A16 of the rl export, gated, job $JOB_ID"
RUN=(
  python -m swallow_train quantize
  cluster=tsubame4 cluster.nodes=1 cluster.group=tga-xxxxx model=qwen3_32b run.name=qwen3_32b
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
