{% import scheduler ~ ".sh" as sched with context %}
{% import "common.sh" as common with context %}
#!/bin/bash
{{ sched.header() -}}
#
# vLLM's OpenAI-compatible server for {{ model }} on {{ c.name }}: 1 node, tensor parallel {{ tp }}
# rendered by: swallow-train serve {{ argv }}
# submit with: {{ submit_cmd }}
# Clients reach it at http://<the node's host name>:{{ port }}/v1 (printed below, and in the log).
set -uo pipefail
{{ sched.workdir() -}}
STAGE_DIR={{ stage_dir | q }}
say() { printf '[swallow-train %(%F %T)T] %s\n' -1 "$*"; }
mkdir -p "$STAGE_DIR/logs" || exit 1
if [ ! -f {{ (model ~ "/config.json") | q }} ]; then
  say "error: {{ model }}/config.json does not exist: serve a finished stage's export"
  exit 1
fi

{{ common.environment() }}
say "serving {{ name }} from {{ model }} at http://$(hostname):{{ port }}/v1, job $JOB_ID"
SERVE=(
{% for line in command_lines %}
  {{ line }}
{% endfor %}
)
exec {{ container }}"${SERVE[@]}"
