{#- This machine: no scheduler. Imported by train.sh / rl.sh. -#}
{% macro header() %}
# Runs on this machine: bash {{ script }}
{% endmacro %}

{% macro cpu_header(tasks) %}
# Runs on this machine: bash {{ script }}
{% endmacro %}

{% macro task_index() %}0{% endmacro %}

{% macro workdir() %}
JOB_ID=local-$$
{% endmacro %}

{% macro hosts() %}
echo 127.0.0.1 > "$HOSTS"
{% endmacro %}

{% macro requeue() %}
say "stopped after a checkpoint; run the script again to resume: bash $SCRIPT"
exit 75
{%- endmacro %}
