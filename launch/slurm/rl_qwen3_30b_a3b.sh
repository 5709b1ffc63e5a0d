#!/bin/bash
#SBATCH --job-name=rl-qwen3_30b_a3b
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --time=24:00:00
#SBATCH --partition=gpu
#SBATCH --exclusive
#SBATCH --output=runs/qwen3_30b_a3b/rl/logs/%x.%j.log
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@900
#
# rl of run qwen3_30b_a3b on slurm: 4 node(s) x 8 GPU(s)
# layout: slime on Ray, 32 GPU(s), colocate=true, actor TP1 PP1 CP2 EP8
# rendered by: swallow-train launch stage=rl cluster=slurm nodes=4 queue=gpu model=qwen3_30b_a3b run.name=qwen3_30b_a3b
# submit with: sbatch --parsable runs/qwen3_30b_a3b/rl/job.slurm.sh
# Re-render rather than edit: the `ray job submit` command below is slime's, rendered and
# validated from the recipe by swallow_train.rl.slime.render_ray_job.
set -uo pipefail
cd "${SLURM_SUBMIT_DIR:?not a Slurm job: submit with sbatch}" || exit 1
JOB_ID=${SLURM_JOB_ID:?}
STAGE=rl
STAGE_DIR=runs/qwen3_30b_a3b/rl
SCRIPT=runs/qwen3_30b_a3b/rl/job.slurm.sh
NNODES=4
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
if [ ! -f runs/qwen3_30b_a3b/sft/DONE ]; then
  say "error: $STAGE starts from the sft stage's export, but runs/qwen3_30b_a3b/sft/DONE does not exist: finish sft first"
  exit 1
fi
mkdir -p "$STAGE_DIR/logs" || exit 1
PROGRESS_FILE=runs/qwen3_30b_a3b/rl/slime/latest_checkpointed_iteration.txt
if [ -f "$PROGRESS_FILE" ]; then
  say "$STAGE: resuming from iteration $(cat "$PROGRESS_FILE")"
fi

# --- environment
# shellcheck disable=SC1091
. .venv/bin/activate || exit 1
export CUDA_DEVICE_MAX_CONNECTIONS=1
export PYTHONUNBUFFERED=1

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

# --- slime and the Megatron-LM it runs with (cluster.slime_train_script, cluster.megatron_path;
# the rendered flags were checked against slime 624b824 with Megatron-LM 1dcf0da)
if ! test -f third_party/slime/train.py; then
  say "error: slime's train.py is not at third_party/slime/train.py: set cluster.slime_train_script=<path of slime's train.py> (or clone slime there)"
  exit 1
fi
if ! test -d third_party/Megatron-LM/megatron; then
  say "error: no Megatron-LM checkout at third_party/Megatron-LM: set cluster.megatron_path=<Megatron-LM checkout> (or clone it there)"
  exit 1
fi

# --- the same recipe, composed and validated again now that the SFT export exists; this
# writes $STAGE_DIR/config.yaml, which the HF export at the end reads
RECIPE=(
  cluster=slurm cluster.nodes=4 cluster.queue=gpu model=qwen3_30b_a3b run.name=qwen3_30b_a3b
)
python -m swallow_train rl "${RECIPE[@]}" > "$STAGE_DIR/logs/slime_job.$JOB_ID.txt" || exit 1

# --- Ray: the head on this (the first) node, one worker on each of the others
RAY_PORT=6379
RAY_DASHBOARD=http://127.0.0.1:8265
HEAD_HOST=$MASTER_ADDR
MASTER_ADDR=$(python3 -c 'import socket, sys; print(socket.gethostbyname(sys.argv[1]))' "$HEAD_HOST") || exit 1
export MASTER_ADDR
SUBMISSION_ID=$(printf 'swallow-%s-%s-%s' qwen3_30b_a3b "$STAGE" "$JOB_ID" | tr -c 'A-Za-z0-9_.\n-' '_')
ON_WORKERS=(srun --overlap --nodes "$((NNODES - 1))" --ntasks-per-node 1 --exclude "$HEAD_HOST")
HEAD_PID=
WORKERS_PID=
# shellcheck disable=SC2329  # called by the EXIT trap
ray_down() {
  if [ -n "$HEAD_PID" ]; then
    say "stopping Ray on the nodes this job started it on"
    "${ON_WORKERS[@]}" ray stop > /dev/null 2>&1
    if [ -n "$WORKERS_PID" ]; then wait "$WORKERS_PID" 2> /dev/null; fi
    ray stop > /dev/null 2>&1
    wait "$HEAD_PID" 2> /dev/null
  fi
  rm -f "$HOSTS" "$HOSTFILE"
}
trap ray_down EXIT

ray start --head --node-ip-address "$MASTER_ADDR" --port "$RAY_PORT" \
  --num-gpus "$GPUS_PER_NODE" --disable-usage-stats \
  --dashboard-host 0.0.0.0 --dashboard-port 8265 --block &
HEAD_PID=$!
"${ON_WORKERS[@]}" ray start --address "$MASTER_ADDR:$RAY_PORT" \
  --num-gpus "$GPUS_PER_NODE" --disable-usage-stats --block &
WORKERS_PID=$!
if ! python -m swallow_train.launch.ray_wait --address "$MASTER_ADDR:$RAY_PORT" \
    --nodes "$NNODES" --gpus "$((NNODES * GPUS_PER_NODE))" --timeout 600; then
  say "error: the Ray cluster did not come up on $NNODES node(s)"
  exit 1
fi

# --- the slime job (it saves every checkpoint.save_interval rollouts and resumes from --load);
# a stop request stops it, and the requeued job continues from slime's last save
# shellcheck disable=SC2329  # run in the background by the supervisor below
submit_rl() {
  ray job submit --submission-id "$SUBMISSION_ID" --address=http://127.0.0.1:8265 \
    --runtime-env-json="{\"env_vars\": {\"PYTHONPATH\": \"${PWD}/third_party/Megatron-LM:${PWD}\", \"CUDA_DEVICE_MAX_CONNECTIONS\": \"1\", \"NCCL_NVLS_ENABLE\": \"0\", \"MASTER_ADDR\": \"${MASTER_ADDR:-127.0.0.1}\", \"no_proxy\": \"${MASTER_ADDR:-127.0.0.1},127.0.0.1,localhost\", \"SWALLOW_REWARD_WORKERS\": \"4\", \"SWALLOW_REWARD_TIMEOUT_S\": \"10\"}}" \
    -- python3 "${PWD}/third_party/slime/train.py" \
    --actor-num-nodes 4 \
    --actor-num-gpus-per-node 8 \
    --colocate \
    --rollout-num-gpus-per-engine 8 \
    --swiglu \
    --num-layers 48 \
    --hidden-size 2048 \
    --ffn-hidden-size 6144 \
    --num-attention-heads 32 \
    --group-query-attention \
    --num-query-groups 4 \
    --kv-channels 128 \
    --use-rotary-position-embeddings \
    --rotary-base 1000000 \
    --disable-bias-linear \
    --normalization RMSNorm \
    --norm-epsilon 1e-06 \
    --qk-layernorm \
    --vocab-size 151936 \
    --untie-embeddings-and-output-weights \
    --num-experts 128 \
    --moe-router-topk 8 \
    --moe-ffn-hidden-size 768 \
    --moe-layer-freq 1 \
    --moe-router-score-function softmax \
    --moe-router-dtype fp32 \
    --moe-aux-loss-coeff 0.001 \
    --moe-token-drop-policy probs \
    --moe-permute-fusion \
    --hf-checkpoint "${PWD}/runs/qwen3_30b_a3b/sft/hf" \
    --ref-load "${PWD}/runs/qwen3_30b_a3b/sft/hf" \
    --load "${PWD}/runs/qwen3_30b_a3b/rl/slime" \
    --save "${PWD}/runs/qwen3_30b_a3b/rl/slime" \
    --save-interval 20 \
    --prompt-data "${PWD}/prepared/rl/dolci_think_rl_7b_math/train.jsonl" \
    --input-key prompt \
    --label-key label \
    --metadata-key metadata \
    --apply-chat-template \
    --apply-chat-template-kwargs '{"enable_thinking": true}' \
    --rollout-shuffle \
    --rollout-seed 42 \
    --custom-rm-path swallow_train.rl.reward.reward \
    --num-rollout 800 \
    --rollout-batch-size 64 \
    --n-samples-per-prompt 8 \
    --rollout-max-response-len 24576 \
    --rollout-max-prompt-len 2048 \
    --rollout-temperature 1 \
    --rollout-top-p 1 \
    --global-batch-size 256 \
    --num-steps-per-rollout 2 \
    --balance-data \
    --dynamic-sampling-filter-path slime.rollout.filter_hub.dynamic_sampling_filters.check_reward_nonzero_std \
    --over-sampling-batch-size 96 \
    --eval-interval 20 \
    --eval-prompt-data dolci_think_rl_7b_math_heldout "${PWD}/prepared/rl/dolci_think_rl_7b_math/eval.jsonl" \
    --n-samples-per-eval-prompt 4 \
    --eval-max-response-len 24576 \
    --eval-temperature 1 \
    --tensor-model-parallel-size 1 \
    --pipeline-model-parallel-size 1 \
    --context-parallel-size 2 \
    --expert-model-parallel-size 8 \
    --moe-token-dispatcher-type alltoall \
    --moe-grouped-gemm \
    --recompute-granularity full \
    --recompute-method uniform \
    --recompute-num-layers 1 \
    --use-dynamic-batch-size \
    --max-tokens-per-gpu 13312 \
    --advantage-estimator grpo \
    --disable-grpo-std-normalization \
    --eps-clip 0.2 \
    --eps-clip-high 0.28 \
    --calculate-per-token-loss \
    --optimizer adam \
    --lr 1e-06 \
    --lr-decay-style constant \
    --weight-decay 0.1 \
    --adam-beta1 0.9 \
    --adam-beta2 0.98 \
    --adam-eps 1e-08 \
    --clip-grad 1 \
    --optimizer-cpu-offload \
    --overlap-cpu-optimizer-d2h-h2d \
    --use-precision-aware-optimizer \
    --use-wandb \
    --wandb-mode offline \
    --wandb-project swallow-train \
    --wandb-group qwen3_30b_a3b \
    --sglang-mem-fraction-static 0.7 \
    --attention-dropout 0.0 \
    --hidden-dropout 0.0 \
    --accumulate-allreduce-grads-in-fp32 \
    --attention-softmax-in-fp32 \
    --attention-backend flash
}
# (in the background: the trap that calls it must not wait on a child of its own)
stop_launcher() {
  ray job stop --address "$RAY_DASHBOARD" --no-wait "$SUBMISSION_ID" > /dev/null 2>&1 &
}
LAUNCH=(submit_rl)

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

# --- succeeded: slime's last checkpoint -> $STAGE_DIR/hf, then DONE
if [ -z "$STOP_REASON" ] && [ "$RC" -eq 0 ] \
    && ray job status --address "$RAY_DASHBOARD" "$SUBMISSION_ID" 2> /dev/null | grep -q SUCCEEDED; then
  python -m swallow_train export --checkpoint "${PWD}/runs/qwen3_30b_a3b/rl/slime" --config "${PWD}/runs/qwen3_30b_a3b/rl/config.yaml" --out "${PWD}/runs/qwen3_30b_a3b/rl/hf" --tokenizer "${PWD}/runs/qwen3_30b_a3b/sft/hf" --dtype bf16 \
    && : > "${PWD}/runs/qwen3_30b_a3b/rl/DONE"
fi
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
