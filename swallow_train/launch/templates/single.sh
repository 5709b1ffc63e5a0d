{% import scheduler ~ ".sh" as sched with context %}
{% import "common.sh" as common with context %}
#!/bin/bash
{{ sched.header() -}}
#
# {{ stage }} of run {{ run_name }} on {{ c.name }}: {{ what }}, 1 node x {{ c.gpus_per_node }} GPU(s)
# rendered by: swallow-train launch {{ argv }}
# submit with: {{ submit_cmd }}
# Re-render rather than edit: the job runs `python -m swallow_train {{ stage }}` with the same
# overrides, so it composes exactly the recipe that was validated. One process; a job that
# stops early is submitted again as it is (the stage skips what is finished).
set -uo pipefail
{{ sched.workdir() -}}
STAGE="{{ stage }}"
STAGE_DIR={{ stage_dir | q }}
SCRIPT={{ script | q }}
say() { printf '[swallow-train %(%F %T)T] %s\n' -1 "$*"; }

if [ -f "$STAGE_DIR/DONE" ]; then
  say "$STAGE: $STAGE_DIR/DONE exists, the stage is finished; nothing to do"
  exit 0
fi
{% if needs %}
if [ ! -f {{ needs_done | q }} ]; then
  say "error: $STAGE reads the {{ needs }} stage's export, but {{ needs_done }} does not exist: finish {{ needs }} first"
  exit 1
fi
{% endif %}
mkdir -p "$STAGE_DIR/logs" || exit 1

{{ common.environment() }}
say "$STAGE: {{ what }}, job $JOB_ID"
RUN=(
  {{ container }}python -m swallow_train {{ stage }}
{% for line in override_lines %}
  {{ line }}
{% endfor %}
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
