{#- Grid Engine (TSUBAME 4.0): header, hosts, requeue. Imported by train.sh / rl.sh. -#}
{% macro header() %}
#$ -N {{ job_name }}
#$ -S /bin/bash
#$ -cwd
#$ -l {{ c.queue }}={{ c.nodes }}
#$ -l h_rt={{ c.walltime }}
#$ -j y
#$ -o {{ stage_dir }}/logs/$JOB_NAME.o$JOB_ID
#$ -r y
#$ -notify
{% for line in c.directives %}
#$ {{ line }}
{% endfor %}
{% if c.group %}
# The group goes on the command line (qsub -g {{ c.group }}), not into the script.
{% endif %}
{% endmacro %}

{% macro cpu_header(tasks) %}
#$ -N {{ job_name }}
#$ -S /bin/bash
#$ -cwd
#$ -l {{ cpu_queue }}=1
#$ -l h_rt={{ c.walltime }}
#$ -j y
#$ -o {{ stage_dir }}/logs/$JOB_NAME.o$JOB_ID{% if tasks > 1 %}.$TASK_ID{% endif %}

{% if tasks > 1 %}
#$ -t 1-{{ tasks }}
{% endif %}
{% for line in c.directives %}
#$ {{ line }}
{% endfor %}
{% if c.group %}
# The group goes on the command line (qsub -g {{ c.group }}), not into the script.
{% endif %}
{% endmacro %}

{% macro task_index() %}$((${SGE_TASK_ID:?not a Grid Engine array task (qsub -t)} - 1)){% endmacro %}

{% macro workdir() %}
JOB_ID=${JOB_ID:?not a Grid Engine job: submit with qsub}
{% endmacro %}

{% macro hosts() %}
# $PE_HOSTFILE: "host slots queue processors", one line per host.
awk '!seen[$1]++ {print $1}' "$PE_HOSTFILE" > "$HOSTS"
{% endmacro %}

{% macro requeue() %}
# Exit status 99 makes Grid Engine reschedule this same job (same id: -hold_jid waits on).
say "requeueing job $JOB_ID (exit 99)"
exit 99
{%- endmacro %}
