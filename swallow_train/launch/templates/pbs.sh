{#- PBS Professional (ABCI 3.0): header, hosts, requeue. Imported by train.sh / rl.sh. -#}
{% macro header() %}
#PBS -N {{ job_name }}
#PBS -S /bin/bash
#PBS -q {{ c.queue }}
#PBS -l select={{ c.nodes }}{% if c.cpus_per_node %}:ncpus={{ c.cpus_per_node }}{% endif %}:mpiprocs={{ c.gpus_per_node }}
#PBS -l walltime={{ c.walltime }}
{% if c.group %}
#PBS -P {{ c.group }}
{% endif %}
#PBS -j oe
#PBS -o {{ stage_dir }}/logs/
#PBS -r y
{% for line in c.directives %}
#PBS {{ line }}
{% endfor %}
{% endmacro %}

{% macro cpu_header(tasks) %}
#PBS -N {{ job_name }}
#PBS -S /bin/bash
#PBS -q {{ cpu_queue }}
#PBS -l select=1{% if c.cpu_cores %}:ncpus={{ c.cpu_cores }}{% endif %}

#PBS -l walltime={{ c.walltime }}
{% if c.group %}
#PBS -P {{ c.group }}
{% endif %}
#PBS -j oe
#PBS -o {{ stage_dir }}/logs/
{% if tasks > 1 %}
#PBS -J 0-{{ tasks - 1 }}
{% endif %}
{% for line in c.directives %}
#PBS {{ line }}
{% endfor %}
{% endmacro %}

{% macro task_index() %}${PBS_ARRAY_INDEX:?not a PBS array task (qsub -J)}{% endmacro %}

{% macro workdir() %}
cd "${PBS_O_WORKDIR:?not a PBS job: submit with qsub}" || exit 1
JOB_ID=${PBS_JOBID:?}
{% endmacro %}

{% macro hosts() %}
# One line per host: $PBS_NODEFILE repeats each host once per MPI process (mpiprocs).
awk '!seen[$1]++ {print $1}' "$PBS_NODEFILE" > "$HOSTS"
{% endmacro %}

{% macro requeue() %}
# A PBS user cannot qrerun: submit the same script as the continuation and move the jobs that
# wait for this one (the next stages of a chain, listed in $STAGE_DIR/dependents) onto it.
if ! NEXT_ID=$(qsub "$SCRIPT"); then
  say "error: qsub of the continuation failed; resubmit by hand: qsub $SCRIPT"
  exit 1
fi
say "continues as job $NEXT_ID"
if [ -f "$STAGE_DIR/dependents" ]; then
  while read -r DEP; do
    [ -n "$DEP" ] || continue
    if ! qalter -W "depend=afterok:$NEXT_ID" "$DEP"; then
      say "error: could not move job $DEP onto $NEXT_ID"
      exit 1
    fi
    say "job $DEP now waits for $NEXT_ID"
  done < "$STAGE_DIR/dependents"
fi
exit 0
{%- endmacro %}
