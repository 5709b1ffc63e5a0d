{#- Slurm: header, hosts, requeue. Imported by train.sh / rl.sh. -#}
{% macro header() %}
#SBATCH --job-name={{ job_name }}
#SBATCH --nodes={{ c.nodes }}
#SBATCH --ntasks-per-node={{ tasks_per_node }}
#SBATCH --gpus-per-node={{ c.gpus_per_node }}
{% if c.cpus_per_node %}
#SBATCH --cpus-per-task={{ c.cpus_per_node // tasks_per_node }}
{% endif %}
#SBATCH --time={{ c.walltime }}
{% if c.queue %}
#SBATCH --partition={{ c.queue }}
{% endif %}
{% if c.group %}
#SBATCH --account={{ c.group }}
{% endif %}
#SBATCH --exclusive
#SBATCH --output={{ stage_dir }}/logs/%x.%j.log
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@{{ c.save_margin }}
{% for line in c.directives %}
#SBATCH {{ line }}
{% endfor %}
{% endmacro %}

{% macro cpu_header(tasks) %}
#SBATCH --job-name={{ job_name }}
#SBATCH --nodes=1
#SBATCH --ntasks=1
{% if c.cpu_cores %}
#SBATCH --cpus-per-task={{ c.cpu_cores }}
{% endif %}
#SBATCH --time={{ c.walltime }}
{% if cpu_queue %}
#SBATCH --partition={{ cpu_queue }}
{% endif %}
{% if c.group %}
#SBATCH --account={{ c.group }}
{% endif %}
#SBATCH --exclusive
{% if tasks > 1 %}
#SBATCH --array=0-{{ tasks - 1 }}
#SBATCH --output={{ stage_dir }}/logs/%x.%A_%a.log
{% else %}
#SBATCH --output={{ stage_dir }}/logs/%x.%j.log
{% endif %}
{% for line in c.directives %}
#SBATCH {{ line }}
{% endfor %}
{% endmacro %}

{% macro task_index() %}${SLURM_ARRAY_TASK_ID:?not a Slurm array task (sbatch --array)}{% endmacro %}

{% macro workdir() %}
cd "${SLURM_SUBMIT_DIR:?not a Slurm job: submit with sbatch}" || exit 1
JOB_ID=${SLURM_JOB_ID:?}
{% endmacro %}

{% macro hosts() %}
scontrol show hostnames "$SLURM_JOB_NODELIST" > "$HOSTS"
{% endmacro %}

{% macro requeue() %}
# Requeue this same job (same id: --dependency=afterok waits on); it resumes when it restarts.
if ! scontrol requeue "$SLURM_JOB_ID"; then
  say "error: scontrol requeue failed; resubmit by hand: sbatch $SCRIPT"
  exit 1
fi
say "requeued job $SLURM_JOB_ID"
exit 0
{%- endmacro %}
