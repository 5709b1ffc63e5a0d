{% import scheduler ~ ".sh" as sched with context %}
{% import "common.sh" as common with context %}
#!/bin/bash
{{ sched.header() -}}
#
# {{ stage }} of run {{ run_name }} on {{ c.name }}: {{ c.nodes }} node(s) x {{ c.gpus_per_node }} GPU(s)
# layout: {{ layout }}
# rendered by: swallow-train launch {{ argv }}
# submit with: {{ submit_cmd }}
# Re-render rather than edit: the job runs `python -m swallow_train {{ stage }}` with the same
# overrides, so it composes exactly the recipe that was validated.
set -uo pipefail
{{ sched.workdir() -}}
{{ common.preamble() }}
{{ common.environment() }}
{{ common.checks() -}}
{{ common.rendezvous(sched) }}
# --- launch
{% if launcher == "mpirun" %}
awk -v slots="$GPUS_PER_NODE" '{print $1 " slots=" slots}' "$HOSTS" > "$HOSTFILE"
# Open MPI relays SIGUSR1 to every rank; the trainer checkpoints on it and exits.
stop_launcher() { kill -s USR1 "$LAUNCHER_PID" 2> /dev/null; }
LAUNCH=(
  mpirun -np "$((NNODES * GPUS_PER_NODE))" --hostfile "$HOSTFILE"
  --map-by "ppr:$GPUS_PER_NODE:node" --bind-to none
  -x MASTER_ADDR -x MASTER_PORT -x PATH -x LD_LIBRARY_PATH -x PYTHONUNBUFFERED
{% if c.container %}
  -x PYTHONPATH
{% endif %}
{% for key in c.env %}
  -x {{ key }}
{% endfor %}
  {{ container }}python -m swallow_train {{ stage }}
{% elif launcher == "python" %}
# One process: it checkpoints on SIGTERM and exits.
stop_launcher() { kill -s TERM "$LAUNCHER_PID" 2> /dev/null; }
LAUNCH=(
  {{ container }}python -m swallow_train {{ stage }}
{% else %}
# torchrun relays the stop signal to its workers and gives them this long to checkpoint.
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT={{ c.save_margin }}
export PET_SIGNALS_TO_HANDLE=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1
{% if torchrun_via == "srun" %}
# scancel --signal sends SIGTERM to the tasks of this job's steps: the torchrun of every node
# (killing srun itself does not reliably reach them). In the background: called from a trap.
stop_launcher() {
  (squeue --steps --noheader --format=%i --jobs "$SLURM_JOB_ID" | grep -E '\.[0-9]+$' \
    | while read -r STEP; do scancel --signal=TERM "$STEP"; done) > /dev/null 2>&1 &
}
LAUNCH=(
  srun --nodes "$NNODES" --ntasks-per-node 1 --kill-on-bad-exit=1
  {{ container }}torchrun
{% elif torchrun_via == "mpirun" %}
awk '{print $1 " slots=1"}' "$HOSTS" > "$HOSTFILE"
# Open MPI relays SIGUSR1 to the torchrun of every node (PET_SIGNALS_TO_HANDLE above).
stop_launcher() { kill -s USR1 "$LAUNCHER_PID" 2> /dev/null; }
LAUNCH=(
  mpirun -np "$NNODES" --hostfile "$HOSTFILE" --map-by ppr:1:node --bind-to none
  -x MASTER_ADDR -x MASTER_PORT -x PATH -x LD_LIBRARY_PATH -x PYTHONUNBUFFERED
  -x TORCH_ELASTIC_SHUTDOWN_TIMEOUT -x PET_SIGNALS_TO_HANDLE
{% for key in c.env %}
  -x {{ key }}
{% endfor %}
  {{ container }}torchrun
{% else %}
stop_launcher() { kill -s TERM "$LAUNCHER_PID" 2> /dev/null; }
LAUNCH=(
  {{ container }}torchrun
{% endif %}
  --nnodes "$NNODES" --nproc-per-node "$GPUS_PER_NODE"
  --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv-id "$JOB_ID"
  -m swallow_train {{ stage }}
{% endif %}
{% for line in override_lines %}
  {{ line }}
{% endfor %}
)

{{ common.supervise() }}
{{ common.finish(sched) -}}
