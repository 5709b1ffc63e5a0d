{% import scheduler ~ ".sh" as sched with context %}
{% import "common.sh" as common with context %}
#!/bin/bash
{{ sched.header() -}}
#
# {{ stage }} of run {{ run_name }} on {{ c.name }}: {{ c.nodes }} node(s) x {{ c.gpus_per_node }} GPU(s)
# layout: {{ layout }}
# rendered by: swallow-train launch {{ argv }}
# submit with: {{ submit_cmd }}
# Re-render rather than edit: the `ray job submit` command below is slime's, rendered and
# validated from the recipe by swallow_train.rl.slime.render_ray_job.
set -uo pipefail
{{ sched.workdir() -}}
{{ common.preamble() }}
{{ common.environment() }}
{{ common.checks() -}}
{{ common.rendezvous(sched) }}
# --- slime and the Megatron-LM it runs with (cluster.slime_train_script, cluster.megatron_path;
# the rendered flags were checked against slime 624b824 with Megatron-LM 1dcf0da)
if ! {{ container }}test -f {{ train_script | q }}; then
  say "error: slime's train.py is not at {{ train_script }}{{ ' inside ' ~ c.container if c.container else '' }}: set cluster.slime_train_script=<path of slime's train.py> (or clone slime there)"
  exit 1
fi
if ! {{ container }}test -d {{ (megatron_path ~ "/megatron") | q }}; then
  say "error: no Megatron-LM checkout at {{ megatron_path }}{{ ' inside ' ~ c.container if c.container else '' }}: set cluster.megatron_path=<Megatron-LM checkout> (or clone it there)"
  exit 1
fi

# --- the same recipe, composed and validated again now that the SFT export exists; this
# writes $STAGE_DIR/config.yaml, which the HF export at the end reads
RECIPE=(
{% for line in override_lines %}
  {{ line }}
{% endfor %}
)
{{ container }}python -m swallow_train rl "${RECIPE[@]}" > "$STAGE_DIR/logs/slime_job.$JOB_ID.txt" || exit 1

# --- Ray: the head on this (the first) node, one worker on each of the others
RAY_PORT=6379
RAY_DASHBOARD=http://127.0.0.1:8265
HEAD_HOST=$MASTER_ADDR
MASTER_ADDR=$(python3 -c 'import socket, sys; print(socket.gethostbyname(sys.argv[1]))' "$HEAD_HOST") || exit 1
export MASTER_ADDR
SUBMISSION_ID=$(printf 'swallow-%s-%s-%s' {{ run_name | q }} "$STAGE" "$JOB_ID" | tr -c 'A-Za-z0-9_.\n-' '_')
{% if c.nodes > 1 %}
{% if scheduler == "slurm" %}
ON_WORKERS=(srun --overlap --nodes "$((NNODES - 1))" --ntasks-per-node 1 --exclude "$HEAD_HOST")
{% else %}
tail -n +2 "$HOSTS" | awk '{print $1 " slots=1"}' > "$HOSTFILE"
ON_WORKERS=(
  mpirun -np "$((NNODES - 1))" --hostfile "$HOSTFILE" --map-by ppr:1:node --bind-to none
  -x MASTER_ADDR -x PATH -x LD_LIBRARY_PATH -x PYTHONUNBUFFERED
{% if c.container %}
  -x PYTHONPATH
{% endif %}
{% for key in c.env %}
  -x {{ key }}
{% endfor %}
)
{% endif %}
{% endif %}
HEAD_PID=
{% if c.nodes > 1 %}
WORKERS_PID=
{% endif %}
# shellcheck disable=SC2329  # called by the EXIT trap
ray_down() {
  if [ -n "$HEAD_PID" ]; then
    say "stopping Ray on the nodes this job started it on"
{% if c.nodes > 1 %}
    "${ON_WORKERS[@]}" {{ container }}ray stop > /dev/null 2>&1
    if [ -n "$WORKERS_PID" ]; then wait "$WORKERS_PID" 2> /dev/null; fi
{% endif %}
    {{ container }}ray stop > /dev/null 2>&1
    wait "$HEAD_PID" 2> /dev/null
  fi
  rm -f "$HOSTS" "$HOSTFILE"
}
trap ray_down EXIT

{{ container }}ray start --head --node-ip-address "$MASTER_ADDR" --port "$RAY_PORT" \
  --num-gpus "$GPUS_PER_NODE" --disable-usage-stats \
  --dashboard-host 0.0.0.0 --dashboard-port 8265 --block &
HEAD_PID=$!
{% if c.nodes > 1 %}
"${ON_WORKERS[@]}" {{ container }}ray start --address "$MASTER_ADDR:$RAY_PORT" \
  --num-gpus "$GPUS_PER_NODE" --disable-usage-stats --block &
WORKERS_PID=$!
{% endif %}
if ! {{ container }}python -m swallow_train.launch.ray_wait --address "$MASTER_ADDR:$RAY_PORT" \
    --nodes "$NNODES" --gpus "$((NNODES * GPUS_PER_NODE))" --timeout 600; then
  say "error: the Ray cluster did not come up on $NNODES node(s)"
  exit 1
fi

# --- the slime job (it saves every checkpoint.save_interval rollouts and resumes from --load);
# a stop request stops it, and the requeued job continues from slime's last save
# shellcheck disable=SC2329  # run in the background by the supervisor below
submit_rl() {
{{ ray_submit | indent(2, true) }}
}
# (in the background: the trap that calls it must not wait on a child of its own)
stop_launcher() {
  {{ container }}ray job stop --address "$RAY_DASHBOARD" --no-wait "$SUBMISSION_ID" > /dev/null 2>&1 &
}
LAUNCH=(submit_rl)

{{ common.supervise() }}
# --- succeeded: slime's last checkpoint -> $STAGE_DIR/hf, then DONE
if [ -z "$STOP_REASON" ] && [ "$RC" -eq 0 ] \
    && {{ container }}ray job status --address "$RAY_DASHBOARD" "$SUBMISSION_ID" 2> /dev/null | grep -q SUCCEEDED; then
{{ export | indent(2, true) }}
fi
{{ common.finish(sched) -}}
