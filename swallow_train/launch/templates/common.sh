{#- Pieces every job script shares: guards, environment, rendezvous, the supervised launch. -#}
{% macro preamble() %}
STAGE={{ stage }}
STAGE_DIR={{ stage_dir | q }}
SCRIPT={{ script | q }}
NNODES={{ c.nodes }}
GPUS_PER_NODE={{ c.gpus_per_node }}
MAX_REQUEUES={{ c.max_requeues }}
{% if walltime_s %}
WALLTIME={{ walltime_s }}
SAVE_MARGIN={{ c.save_margin }}
{% endif %}

# (bash's own clock: no child process, so it is safe inside the signal traps below)
say() { printf '[swallow-train %(%F %T)T] %s\n' -1 "$*"; }

if [ -f "$STAGE_DIR/DONE" ]; then
  say "$STAGE: $STAGE_DIR/DONE exists, the stage is finished; nothing to do"
  exit 0
fi
{% if needs %}
if [ ! -f {{ needs_done | q }} ]; then
  say "error: $STAGE starts from the {{ needs }} stage's export, but {{ needs_done }} does not exist: finish {{ needs }} first"
  exit 1
fi
{% endif %}
mkdir -p "$STAGE_DIR/logs" || exit 1
{% if progress_file %}
PROGRESS_FILE={{ progress_file | q }}
if [ -f "$PROGRESS_FILE" ]; then
  say "$STAGE: resuming from iteration $(cat "$PROGRESS_FILE")"
fi
{% endif %}
{% endmacro %}

{% macro environment() %}
# --- environment
{% if c.modules %}
# shellcheck disable=SC1091
if [ -f /etc/profile.d/modules.sh ]; then . /etc/profile.d/modules.sh; fi
module load {{ c.modules | map("q") | join(" ") }} || exit 1
{% endif %}
{% if c.venv %}
# shellcheck disable=SC1091
. {{ (c.venv ~ "/bin/activate") | q }} || exit 1
{% endif %}
{% for key, value in c.env.items() %}
export {{ key }}={{ value | q }}
{% endfor %}
export PYTHONUNBUFFERED=1
{% if c.container %}
# the image's python imports swallow_train from this checkout
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{% endif %}
{% endmacro %}

{% macro checks() %}
{% if c.preflight %}
# --- preflight (cluster.preflight): this node's checks; nothing is launched if one fails
PREFLIGHT=(
  {{ container }}python -m swallow_train doctor {{ stage }}
{% for line in override_lines %}
  {{ line }}
{% endfor %}
)
if ! "${PREFLIGHT[@]}"; then
  say "error: swallow-train doctor {{ stage }} reported a failure (see above); nothing was launched"
  exit 1
fi

{% endif %}
{% if data_check %}
# --- the prepared data must be there and current: a multi-node job does not tokenize (rank 0
# would work for hours while every GPU waits). The CPU jobs that prepare it:
#   {{ prepare_launch }}
DATA_CHECK=(
  {{ container }}python -m swallow_train.data.ready {{ stage }}
{% for line in override_lines %}
  {{ line }}
{% endfor %}
)
if ! "${DATA_CHECK[@]}"; then
  say "error: $STAGE needs its prepared data first (the command is above); nothing was launched"
  exit 1
fi

{% endif %}
{% endmacro %}

{% macro rendezvous(sched) %}
# --- nodes and rendezvous: the master is the first host the scheduler lists
HOSTS=$(mktemp) || exit 1
HOSTFILE=$(mktemp) || exit 1
# shellcheck disable=SC2329  # called by the EXIT trap
cleanup() { rm -f "$HOSTS" "$HOSTFILE"; }
trap cleanup EXIT
{{ sched.hosts() -}}
if [ "$(wc -l < "$HOSTS")" -ne "$NNODES" ]; then
  say "error: the job has $(wc -l < "$HOSTS") node(s) but was validated for $NNODES (nodes=)"
  exit 1
fi
MASTER_ADDR=$(head -n 1 "$HOSTS")
MASTER_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])') || exit 1
export MASTER_ADDR MASTER_PORT
say "$STAGE: $NNODES node(s) x $GPUS_PER_NODE GPU(s), master $MASTER_ADDR:$MASTER_PORT, job $JOB_ID"
{% endmacro %}

{% macro supervise() %}
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
{% if walltime_s %}
( trap 'kill "$SLEEPER" 2>/dev/null; exit 0' TERM
  sleep "$((WALLTIME - SAVE_MARGIN))" & SLEEPER=$!
  wait "$SLEEPER" && kill -s ALRM "$$" ) > /dev/null 2>&1 &
TIMER_PID=$!
{% endif %}
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
{% endmacro %}

{% macro finish(sched) %}
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
    NOW={% if progress_file %}$(cat "$PROGRESS_FILE" 2> /dev/null || echo none){% else %}unknown{% endif %}

    BEFORE=$(tail -n 1 "$STAGE_DIR/requeues" 2> /dev/null | awk '{print $2}')
    if [ "$NOW" != unknown ] && [ "$NOW" = "$BEFORE" ]; then
      say "error: no new checkpoint since the last requeue (iteration $NOW); not requeueing"
      exit 1
    fi
    echo "$JOB_ID $NOW" >> "$STAGE_DIR/requeues"
{{ sched.requeue() | indent(4, true) }}
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
{% endmacro %}
