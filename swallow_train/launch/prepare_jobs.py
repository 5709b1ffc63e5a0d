"""The CPU jobs of the data-preparation stages (`launch stage=prepare`, `prepare-sft`,
`prepare-rl`): the CPT corpora as an array of `cluster.prepare_tasks` tasks plus a final job
after them, the SFT packs and the RL prompts as a single job (template `prepare.sh`).

    swallow-train launch --dry-run stage=prepare cluster=abci3 group=gxx00000 model=qwen3_8b
"""

from __future__ import annotations

from swallow_train.cluster import ClusterConfig
from swallow_train.launch.templating import StageJob, environment, job_context, job_name


def prepare_jobs(stage: str, recipe: object, overrides: list[str], argv: list[str]
                  ) -> list[StageJob]:
    """The CPU jobs of a prepare stage: CPT corpora over `cluster.prepare_tasks` array tasks
    and a final job after them, or (SFT packs, RL prompts, one task) a single job."""
    cluster: ClusterConfig = recipe.cluster
    stage_dir = recipe.run.stage_dir(stage)
    sched = cluster.scheduler.value
    tasks = cluster.prepare_tasks if stage == "prepare" and sched != "local" else 1
    parts = [("task", "job"), ("final", "final")] if tasks > 1 else [("single", "job")]
    jobs = []
    for part, name in parts:
        path = stage_dir / f"{name}.{sched}.sh"
        what = {"task": f"array of {tasks} tasks, one CPU node each",
                "final": f"after the {tasks} tasks: check every shard, write stats.json",
                "single": "one CPU node"}[part]
        context = {
            **job_context(stage, recipe, overrides, path, argv, ""),
            "job_name": job_name(stage if part != "final" else f"{stage}-final",
                                  recipe.run.name),
            "tasks": tasks if part == "task" else 1,
            "part": part,
            "what": what,
            "command": stage,
            "workers": stage != "prepare-rl",
            "cpu_queue": cluster.cpu_queue or cluster.queue,
        }
        script = environment().get_template("prepare.sh").render(context)
        jobs.append(StageJob(stage=stage, recipe=recipe, overrides=overrides, script=script,
                             path=path, summary=f"{stage}: {what} on {cluster.name}"))
    return jobs
