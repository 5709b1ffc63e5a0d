#!/bin/bash
#SBATCH --job-name=sft-qwen3_32b
#SBATCH --nodes=8
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --time=24:00:00
#SBATCH --partition=gpu
#SBATCH --exclusive
#SBATCH --output=runs/qwen3_32b/sft/logs/%x.%j.log
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@900
#
# sft of run qwen3_32b on slurm: 8 node(s) x 8 GPU(s)
# layout: world 64 = TP4 x PP1 x CP2 x DP8 | EP1 ETP4 | SP on
# rendered by: swallow-train launch stage=sft cluster=slurm nodes=8 queue=gpu model=qwen3_32b run.name=qwen3_32b
# submit with: sbatch --parsable runs/qwen3_32b/sft/job.slurm.sh
# Re-render rather than edit: the job runs `python -m swallow_train sft` with the same
# overrides, so it composes exactly the recipe that was validated.
set -uo pipefail
cd "${SLURM_SUBMIT_DIR:?not a Slurm job: submit with sbatch}" || exit 1
JOB_ID=${SLURM_JOB_ID:?}
STAGE=sft
STAGE_DIR=runs/qwen3_32b/sft
SCRIPT=runs/qwen3_32b/sft/job.slurm.sh
NNODES=8
GPUS_PER_NODE=8
MAX_REQUEUES=20
WALLTIME=86400
SAVE_MARGIN=900

# (bash's own clock: no child process, so it is safe inside the signal traps below)
say() { printf '[swallow-train %(%F %T)T] %s\n' -1 "$*"; }

if [ -f "$STAGE_DIR/DONE" ]; then
  say "$STAGE: $STAGE_DIR/DONE exists, the stage is finished; nothing to do"
  exit 0
fi
if [ ! -f runs/qwen3_32b/cpt/DONE ]; then
  say "error: $STAGE starts from the cpt stage's export, but runs/qwen3_32b/cpt/DONE does not exist: finish cpt first"
  exit 1
fi
mkdir -p "$STAGE_DIR/logs" || exit 1
PROGRESS_FILE=runs/qwen3_32b/sft/checkpoints/latest_checkpointed_iteration.txt
if [ -f "$PROGRESS_FILE" ]; then
  say "$STAGE: resuming from iteration $(cat "$PROGRESS_FILE")"
fi

# --- environment
# shellcheck disable=SC1091
. .venv/bin/activate || exit 1
export CUDA_DEVICE_MAX_CONNECTIONS=1
export PYTHONUNBUFFERED=1

# --- the prepared data must be there and current: a multi-node job does not tokenize (rank 0
# would work for hours while every GPU waits). The CPU jobs that prepare it:
#   swallow-train launch stage=prepare-sft cluster=slurm model=qwen3_32b run.name=qwen3_32b
DATA_CHECK=(
  python -m swallow_train.data.ready sft
  cluster=slurm cluster.nodes=8 cluster.queue=gpu model=qwen3_32b run.name=qwen3_32b
)
if ! "${DATA_CHECK[@]}"; then
  say "error: $STAGE needs its prepared data first (the command is above); nothing was launched"
  exit 1
fi

# --- nodes and rendezvous: the master is the first host the scheduler lists
HOSTS=$(mktemp) || exit 1
HOSTFILE=$(mktemp) || exit 1
# shellcheck disable=SC2329  # called by the EXIT trap
cleanup() { rm -f "$HOSTS" "$HOSTFILE"; }
trap cleanup EXIT
scontrol show hostnames "$SLURM_JOB_NODELIST" > "$HOSTS"
if [ "$(wc -l < "$HOSTS")" -ne "$NNODES" ]; then
  say "error: the job has $(wc -l < "$HOSTS") node(s) but was validated for $NNODES (nodes=)"
  exit 1
fi
MASTER_ADDR=$(head -n 1 "$HOSTS")
MASTER_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])') || exit 1
export MASTER_ADDR MASTER_PORT
say "$STAGE: $NNODES node(s) x $GPUS_PER_NODE GPU(s), master $MASTER_ADDR:$MASTER_PORT, job $JOB_ID"

# --- launch
# torchrun relays the stop signal to its workers and gives them this long to checkpoint.
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=900
export PET_SIGNALS_TO_HANDLE=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1
# scancel --signal sends SIGTERM to the tasks of this job's steps: the torchrun of every node
# (killing srun itself does not reliably reach them). In the background: called from a trap.
stop_launcher() {
  (squeue --steps --noheader --format=%i --jobs "$SLURM_JOB_ID" | grep -E '\.[0-9]+$' \
    | while read -r STEP; do scancel --signal=TERM "$STEP"; done) > /dev/null 2>&1 &
}
LAUNCH=(
  srun --nodes "$NNODES" --ntasks-per-node 1 --kill-on-bad-exit=1
  torchrun
  --nnodes "$NNODES" --nproc-per-node "$GPUS_PER_NODE"
  --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv-id "$JOB_ID"
  -m swallow_train sft
  cluster=slurm cluster.nodes=8 cluster.queue=gpu model=qwen3_32b run.name=qwen3_32b
)

# --- run the launcher in the background and wait, so that the scheduler's warning (and this
# job's own timer, SAVE_MARGIN seconds before the walltime) reach the trainer, which then
# checkpoints and exits; the stage is then requeued and resumes from that checkpoint.
STOP_REASON=
LAUNCHER_PID=
TIMER_PID=
# shellcheck disable=SC2329  # called by the traps below
request_stop() {
  [ -z "$STOP_REASON" ] || return 0
  STOP_REASON=$1
  say "stop requested ($1): checkpoint and exit"
  if [ -n "$LAUNCHER_PID" ]; then stop_launcher; fi
}
trap 'request_stop TERM' TERM
trap 'request_stop INT' INT
trap 'request_stop USR1' USR1
trap 'request_stop USR2' USR2
trap 'request_stop timer' ALRM

"${LAUNCH[@]}" &
LAUNCHER_PID=$!
if [ -n "$STOP_REASON" ]; then stop_launcher; fi
( trap 'kill "$SLEEPER" 2>/dev/null; exit 0' TERM
  sleep "$((WALLTIME - SAVE_MARGIN))" & SLEEPER=$!
  wait "$SLEEPER" && kill -s ALRM "$$" ) > /dev/null 2>&1 &
TIMER_PID=$!
RC=0
while :; do
  wait "$LAUNCHER_PID"
  RC=$?
  if ! kill -0 "$LAUNCHER_PID" 2> /dev/null; then
    wait "$LAUNCHER_PID" 2> /dev/null
    LAST=$?
    if [ "$LAST" -ne 127 ]; then RC=$LAST; fi
    break
  fi
done
# (not waited for: it ends its sleep on TERM, and `wait` on it can hang in bash 5.2)
if [ -n "$TIMER_PID" ]; then kill "$TIMER_PID" 2> /dev/null; fi
say "$STAGE: launcher exited with status $RC"

# --- finished, stopped for the walltime (requeue), or failed
if [ -f "$STAGE_DIR/DONE" ]; then
  say "$STAGE: finished ($STAGE_DIR/DONE)"
  exit 0
fi
case "$STOP_REASON" in
  timer | USR1 | USR2)
    REQUEUES=$(wc -l 2> /dev/null < "$STAGE_DIR/requeues" || echo 0)
    if [ "$REQUEUES" -ge "$MAX_REQUEUES" ]; then
      say "error: $STAGE was requeued $REQUEUES times (cluster.max_requeues); not again"
      exit 1
    fi
    NOW=$(cat "$PROGRESS_FILE" 2> /dev/null || echo none)
    BEFORE=$(tail -n 1 "$STAGE_DIR/requeues" 2> /dev/null | awk '{print $2}')
    if [ "$NOW" != unknown ] && [ "$NOW" = "$BEFORE" ]; then
      say "error: no new checkpoint since the last requeue (iteration $NOW); not requeueing"
      exit 1
    fi
    echo "$JOB_ID $NOW" >> "$STAGE_DIR/requeues"
    # Requeue this same job (same id: --dependency=afterok waits on); it resumes when it restarts.
    if ! scontrol requeue "$SLURM_JOB_ID"; then
      say "error: scontrol requeue failed; resubmit by hand: sbatch $SCRIPT"
      exit 1
    fi
    say "requeued job $SLURM_JOB_ID"
    exit 0
    ;;
  "")
    say "error: $STAGE failed (status $RC) before it finished; see the log above"
    if [ "$RC" -eq 0 ]; then exit 1; fi
    exit "$RC"
    ;;
  *)
    say "$STAGE stopped by SIG$STOP_REASON; run the script again to resume: $SCRIPT"
    exit 1
    ;;
esac
