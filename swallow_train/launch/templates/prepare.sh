{% import scheduler ~ ".sh" as sched with context %}
{% import "common.sh" as common with context %}
#!/bin/bash
{{ sched.cpu_header(tasks) -}}
#
# {{ stage }} of run {{ run_name }} on {{ c.name }}: {{ what }}
# rendered by: swallow-train launch {{ argv }}
# submit with: {{ submit_cmd }}
# Re-render rather than edit: the job runs `python -m swallow_train {{ command }}` with the
# overrides of the stage it prepares for, so it writes exactly the data that stage checks.
set -uo pipefail
{{ sched.workdir() -}}
STAGE={{ stage }}
STAGE_DIR={{ stage_dir | q }}
say() { printf '[swallow-train %(%F %T)T] %s\n' -1 "$*"; }
mkdir -p "$STAGE_DIR/logs" || exit 1

{{ common.environment() }}
# --- every core of this node tokenizes
CORES=$(nproc)
RECIPE=(
{% for line in override_lines %}
  {{ line }}
{% endfor %}
)
{% if part == "task" %}
TASK={{ sched.task_index() }}
say "$STAGE: task $TASK of {{ tasks }} (shards k of corpus i with (i + k) % {{ tasks }} == $TASK), $CORES cores, job $JOB_ID"
if ! {{ container }}python -m swallow_train {{ command }} "${RECIPE[@]}" data.num_tasks={{ tasks }} \
    "data.task_index=$TASK" "data.num_workers=$CORES"; then
  say "error: $STAGE task $TASK failed (see above); submit the script again: finished shards are kept"
  exit 1
fi
{% else %}
say "$STAGE: {{ 'checking every shard and writing stats.json' if part == 'final' else 'preparing' }}, $CORES cores, job $JOB_ID"
if ! {{ container }}python -m swallow_train {{ command }} "${RECIPE[@]}"{% if workers %} "data.num_workers=$CORES"{% endif %}; then
  say "error: $STAGE failed (see above); submit the script again: finished work is kept"
  exit 1
fi
{% endif %}
say "$STAGE: done"
