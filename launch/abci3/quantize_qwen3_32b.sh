#!/bin/bash
#PBS -N quantize-qwen3_32b
#PBS -S /bin/bash
#PBS -q rt_HF
#PBS -l select=1:ncpus=192:mpiprocs=8
#PBS -l walltime=24:00:00
#PBS -P gxx00000
#PBS -j oe
#PBS -o runs/qwen3_32b/quantize/logs/
#PBS -r y
#
# quantize of run qwen3_32b on abci3: AWQ W4A16 of the rl export, gated, 1 node x 8 GPU(s)
# rendered by: swallow-train launch stage=quantize cluster=abci3 group=gxx00000 model=qwen3_32b run.name=qwen3_32b
# submit with: qsub runs/qwen3_32b/quantize/job.pbs.sh
# Re-render rather than edit: the job runs `python -m swallow_train quantize` with the same
# overrides, so it composes exactly the recipe that was validated. One process; a job that
# stops early is submitted again as it is (the stage skips what is finished).
set -uo pipefail
cd "${PBS_O_WORKDIR:?not a PBS job: submit with qsub}" || exit 1
JOB_ID=${PBS_JOBID:?}
STAGE="quantize"
STAGE_DIR=runs/qwen3_32b/quantize
SCRIPT=runs/qwen3_32b/quantize/job.pbs.sh
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
module load cuda/12.9/12.9.1 cudnn/9.10/9.10.2 nccl/2.27/2.27.5-1 hpcx/2.20 || exit 1
# shellcheck disable=SC1091
. .venv/bin/activate || exit 1
export CUDA_DEVICE_MAX_CONNECTIONS=1
export PYTHONUNBUFFERED=1

say "$STAGE: AWQ W4A16 of the rl export, gated, job $JOB_ID"
RUN=(
  python -m swallow_train quantize
  cluster=abci3 cluster.nodes=1 cluster.group=gxx00000 model=qwen3_32b run.name=qwen3_32b
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
