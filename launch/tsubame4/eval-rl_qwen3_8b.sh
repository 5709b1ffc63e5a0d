#!/bin/bash
#$ -N eval-rl-qwen3_8b
#$ -S /bin/bash
#$ -cwd
#$ -l node_f=1
#$ -l h_rt=24:00:00
#$ -j y
#$ -o runs/qwen3_8b/rl/eval/swallow_posttrained/logs/$JOB_NAME.o$JOB_ID
#$ -r y
#$ -notify
# The group goes on the command line (qsub -g tga-xxxxx), not into the script.
#
# eval of run qwen3_8b on tsubame4: swallow_posttrained suite on the rl export (auto), 1 node x 4 GPU(s)
# rendered by: swallow-train launch stage=eval cluster=tsubame4 group=tga-xxxxx model=qwen3_8b run.name=qwen3_8b eval.target=rl eval.eval_suite=swallow_posttrained
# submit with: qsub -terse -g tga-xxxxx runs/qwen3_8b/rl/eval/swallow_posttrained/job.sge.sh
# Re-render rather than edit: the job runs `python -m swallow_train eval` with the same
# overrides, so it composes exactly the recipe that was validated. One process; a job that
# stops early is submitted again as it is (the stage skips what is finished).
set -uo pipefail
JOB_ID=${JOB_ID:?not a Grid Engine job: submit with qsub}
STAGE="eval"
STAGE_DIR=runs/qwen3_8b/rl/eval/swallow_posttrained
SCRIPT=runs/qwen3_8b/rl/eval/swallow_posttrained/job.sge.sh
say() { printf '[swallow-train %(%F %T)T] %s\n' -1 "$*"; }

if [ -f "$STAGE_DIR/DONE" ]; then
  say "$STAGE: $STAGE_DIR/DONE exists, the stage is finished; nothing to do"
  exit 0
fi
if [ ! -f runs/qwen3_8b/rl/DONE ]; then
  say "error: $STAGE reads the rl stage's export, but runs/qwen3_8b/rl/DONE does not exist: finish rl first"
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

say "$STAGE: swallow_posttrained suite on the rl export (auto), job $JOB_ID"
RUN=(
  python -m swallow_train eval
  cluster=tsubame4 cluster.nodes=1 cluster.group=tga-xxxxx model=qwen3_8b run.name=qwen3_8b
  eval_suite=swallow_posttrained target=rl
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
