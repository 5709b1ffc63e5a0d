"""Render one stage's job script from its composed recipe and cluster preset (pure text).

    swallow-train launch --dry-run stage=cpt cluster=abci3 nodes=16 group=gxx00000 model=qwen3_8b

Each stage's template comes from the stage registry (`swallow_train/registry.py`; the pieces
they share: `templating.py`). Everything is validated here, before anything is written: the
recipe composes, the cluster settings are complete, and the parallel layout fits nodes x GPUs
per node.
"""

from __future__ import annotations

from typing import Any

from swallow_train.checkpoint_files import MARKER
from swallow_train.cluster import ClusterConfig, LaunchError
from swallow_train.config import RecipeError
from swallow_train.launch.args import LaunchConfig
from swallow_train.launch.prepare_jobs import prepare_jobs
from swallow_train.launch.templating import (
    StageJob,
    container_prefix,
    environment,
    job_context,
    job_name,
    submit_command,
)
from swallow_train.overrides import merge
from swallow_train.registry import STAGES, Kind, chain
from swallow_train.run import check_stage_dir_model
from swallow_train.stages.rl import RLRecipe

__all__ = ["StageJob", "build", "build_all", "container_prefix", "submit_command"]


def _validate(stage: str, recipe: object) -> str:
    """Cluster settings and (CPT/SFT) the parallel layout; every problem in one LaunchError."""
    problems: list[str] = []
    layout = ""
    if any(c.isspace() for c in str(recipe.run.stage_dir(stage))):
        problems.append(f"run.root/run.name {recipe.run.stage_dir(stage)} must not contain "
                        "spaces (scheduler directives such as the log path cannot quote them)")
    try:
        recipe.cluster.check()
    except LaunchError as exc:
        problems.append(str(exc))
    if STAGES[stage].kind is Kind.prepare:
        if problems:
            raise LaunchError(f"stage {stage}: " + "\n".join(problems))
        return ""
    try:
        check_stage_dir_model(recipe.run.stage_dir(stage), recipe.model)
    except RecipeError as exc:
        problems.append(str(exc))
    if STAGES[stage].kind is Kind.train:
        try:
            layout = recipe.layout().describe()
        except ValueError as exc:  # LayoutError, or an inconsistent model preset
            problems.append(str(exc))
    if problems:
        raise LaunchError(f"stage {stage}: " + "\n".join(problems))
    return layout


# --- the RL stage: slime's `ray job submit` inside a Ray cluster over the job's nodes (rl.sh),
# or, with backend=local, the local GRPO loop as one process (train.sh)
def rl_context(recipe: RLRecipe) -> tuple[dict[str, Any], str, str]:
    """(template values, one-line layout summary, template) of the RL stage."""
    from swallow_train.rl.config import Backend

    cluster = recipe.cluster
    stage_dir = recipe.run.stage_dir("rl")
    if recipe.backend is Backend.local:
        summary = "local GRPO backend, one process"
        return ({"launcher": "python", "torchrun_via": None,
                 "progress_file": str(stage_dir / "checkpoints" / MARKER)}, summary, "train.sh")
    # the typed slime job (validated by the RL module), only formatted here; the job script
    # stops it by its submission id and checks that it SUCCEEDED before the export
    job = recipe.slime_job()
    summary = (f"slime on Ray, {cluster.world_size} GPU(s), colocate="
               f"{str(recipe.slime.colocate).lower()}, actor TP{recipe.parallel.tp} "
               f"PP{recipe.parallel.pp} CP{recipe.parallel.cp} EP{recipe.parallel.ep}")
    values = {
        "ray_submit": job.submit_command(submission_id="SUBMISSION_ID").strip(),
        "export": job.export_command().strip(),
        "progress_file": f"{job.save_dir.path}/{MARKER}",
        "tasks_per_node": 1,
        "train_script": job.train_script.path,
        "megatron_path": job.megatron_path.path,
    }
    return values, summary, "rl.sh"


def build(stage: str, launch: LaunchConfig, argv: list[str]) -> list[StageJob]:
    """Compose, validate and render `stage` (a prepare stage may give two jobs: its array
    and the final step; eval one job per stage it scores); raises RecipeError or LaunchError."""
    from swallow_train.config import compose

    spec = STAGES[stage]
    overrides = launch.recipe_overrides(stage)
    if spec.kind is Kind.eval:
        return [single_job(stage, merge(overrides, [f"target={target}"]), argv)
                for target in eval_targets(launch)]
    if spec.kind is Kind.quantize:
        return [single_job(stage, overrides, argv)]
    recipe = compose(spec.recipe_name, overrides)
    cluster: ClusterConfig = recipe.cluster
    layout = _validate(stage, recipe)
    if spec.kind is Kind.prepare:
        return prepare_jobs(stage, recipe, overrides, argv)
    from swallow_train.config import recipe_memory_plan

    recipe_memory_plan(recipe)  # LayoutError with the fix when it cannot fit the cluster's GPUs
    path = recipe.run.stage_dir(stage) / f"job.{cluster.scheduler.value}.sh"
    extra: dict[str, Any] = {}
    template = spec.template or ""
    if spec.kind is Kind.rl:
        extra, layout, template = rl_context(recipe)
    context = {**job_context(stage, recipe, overrides, path, argv, layout), **extra}
    script = environment().get_template(template).render(context)
    summary = (f"{stage}: {cluster.nodes} node(s) x {cluster.gpus_per_node} GPU(s) on "
               f"{cluster.name} | {layout}")
    return [StageJob(stage=stage, recipe=recipe, overrides=overrides, script=script, path=path,
                     summary=summary)]


# --- the 1-node jobs (template single.sh): quantize after RL, and eval after each stage
def eval_targets(launch: LaunchConfig) -> list[str]:
    """The stages the eval jobs score: `eval.target=X` alone, else the model stages this
    launch runs, else (`stage=eval` alone) every model stage."""
    given = [o.value for o in launch.items if o.stage == "eval" and o.key == "target"]
    launched = [s for s in launch.stages if s in chain()]
    return [str(given[0])] if given else launched or list(chain())


def single_job(stage: str, overrides: list[str], argv: list[str]) -> StageJob:
    from swallow_train.config import compose

    recipe = compose(STAGES[stage].recipe_name, overrides)
    cluster: ClusterConfig = recipe.cluster
    target = getattr(recipe, "target", None)
    if target is not None:
        from swallow_train.evaluation.runner import recipe_dir

        stage_dir = recipe_dir(recipe).path
        what = f"{recipe.eval_suite.name} suite on the {target} export ({recipe.backend.value})"
    else:
        stage_dir = recipe.run.stage_dir(stage)
        what = f"AWQ W4A16 of the {recipe.init.from_stage} export, gated"
    problems = [] if " " not in str(stage_dir) else [f"{stage_dir} must not contain spaces"]
    try:
        cluster.check()
        check_stage_dir_model(stage_dir, recipe.model)
    except (LaunchError, RecipeError) as exc:
        problems.append(str(exc))
    if problems:
        raise LaunchError(f"stage {stage}: " + "\n".join(problems))
    path = stage_dir / f"job.{cluster.scheduler.value}.sh"
    name = f"{stage}-{target}" if target else stage
    context = {**job_context(stage, recipe, overrides, path, argv, ""), "what": what,
               "job_name": job_name(name, recipe.run.name), "tasks_per_node": 1}
    script = environment().get_template(STAGES[stage].template or "").render(context)
    return StageJob(stage=stage, recipe=recipe, overrides=overrides, script=script, path=path,
                    summary=f"{name}: 1 node x {cluster.gpus_per_node} GPU(s) on "
                            f"{cluster.name} | {what}", after=target or STAGES[stage].after)


def build_all(launch: LaunchConfig, argv: list[str]) -> list[StageJob]:
    """Every stage of the launch, all validated before the caller writes any of them."""
    from swallow_train.config import RecipeError

    jobs = []
    for stage in launch.stages:
        try:
            jobs += build(stage, launch, argv)
        except RecipeError as exc:
            if len(launch.stages) == 1:
                raise
            raise RecipeError(f"{exc}\n(stage {stage} lacks that key: give an override to the "
                              "stages that have it with their name as a prefix, e.g. "
                              "cpt.<key>=<value> sft.<key>=<value>)") from None
    names = {job.recipe.run.name for job in jobs}
    roots = {job.recipe.run.root for job in jobs}
    if len(names) > 1 or len(roots) > 1:
        raise LaunchError(
            "the stages of one launch must share run.name and run.root (each starts from the "
            f"previous one's export); got run.name {sorted(names)}, run.root {sorted(roots)}"
        )
    return jobs
