"""Render one stage's job script from its composed recipe and cluster preset (pure text).

    swallow-train launch --dry-run stage=cpt cluster=abci3 nodes=16 group=gxx00000 model=qwen3_8b

The templates are data (`swallow_train/launch/templates/*.sh`, Jinja2): `train.sh` (CPT/SFT)
and `rl.sh` (Ray + slime) import the scheduler's header/hosts/requeue pieces (`pbs.sh`,
`sge.sh`, `slurm.sh`, `local.sh`) and the shared ones (`common.sh`). Everything is validated
here, before anything is written: the recipe composes, the cluster settings are complete, and
the parallel layout fits nodes x GPUs per node.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from swallow_train.checkpoint_files import MARKER
from swallow_train.cluster import ClusterConfig, Launcher, LaunchError, Scheduler
from swallow_train.config import RecipeError
from swallow_train.launch.args import PREPARE, LaunchConfig
from swallow_train.run import check_stage_dir_model

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class StageJob:
    """A validated, rendered job: nothing of it is on disk yet."""

    stage: str
    recipe: Any
    overrides: list[str]
    script: str
    path: Path
    summary: str
    """One line for the console: nodes, GPUs and the validated layout."""

    @property
    def cluster(self) -> ClusterConfig:
        return self.recipe.cluster

    @property
    def stage_dir(self) -> Path:
        return self.path.parent


@cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    return env


def submit_command(cluster: ClusterConfig, script: Path | str) -> list[str]:
    """The command that submits (or, locally, runs) a script, without dependencies."""
    match cluster.scheduler:
        case Scheduler.pbs:
            return ["qsub", str(script)]
        case Scheduler.sge:
            group = ["-g", cluster.group] if cluster.group else []
            return ["qsub", "-terse", *group, str(script)]
        case Scheduler.slurm:
            return ["sbatch", "--parsable", str(script)]
    return ["bash", str(script)]


def _launcher(cluster: ClusterConfig) -> tuple[str, str | None]:
    """(launcher, how torchrun reaches the other nodes)."""
    if cluster.launcher is Launcher.mpirun:
        return "mpirun", None
    if cluster.world_size == 1:
        return "python", None
    if cluster.nodes == 1:
        return "torchrun", None
    return "torchrun", "srun" if cluster.scheduler is Scheduler.slurm else "mpirun"


def _lines(tokens: list[str], width: int = 92) -> list[str]:
    """Shell-quoted tokens packed into lines of at most `width` characters."""
    lines: list[str] = []
    for token in (shlex.quote(t) for t in tokens):
        if lines and len(lines[-1]) + 1 + len(token) <= width:
            lines[-1] += " " + token
        else:
            lines.append(token)
    return lines


def _job_name(stage: str, run_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{stage}-{run_name}")[:63]


def container_prefix(cluster: ClusterConfig) -> str:
    """`apptainer exec --nv [--bind ...] IMAGE ` (with its trailing space), or ""."""
    if not cluster.container:
        return ""
    binds = "".join(f"--bind {shlex.quote(b)} " for b in cluster.container_binds)
    return (f"{cluster.container_runtime.value} exec --nv {binds}"
            f"{shlex.quote(cluster.container)} ")


def _context(stage: str, recipe: Any, overrides: list[str], path: Path, argv: list[str],
             layout: str) -> dict[str, Any]:
    cluster: ClusterConfig = recipe.cluster
    stage_dir = path.parent
    init = recipe.init
    needs = init.from_stage if init.from_stage and not init.hf else None
    launcher, via = _launcher(cluster)
    data_check = stage in ("cpt", "sft") and cluster.nodes > 1
    prepare_launch = ""
    if data_check:
        from swallow_train.data.ready import launch_command

        prepare_launch = launch_command(stage, recipe, overrides)
    return {
        "stage": stage,
        "run_name": recipe.run.name,
        "stage_dir": str(stage_dir),
        "script": str(path),
        "c": cluster,
        "scheduler": cluster.scheduler.value,
        "walltime_s": cluster.walltime_s(),
        "job_name": _job_name(stage, recipe.run.name),
        "needs": needs,
        "needs_done": str(recipe.run.stage_dir(needs) / "DONE") if needs else "",
        "progress_file": str(stage_dir / "checkpoints" / MARKER),
        "launcher": launcher,
        "torchrun_via": via,
        "tasks_per_node": cluster.gpus_per_node if launcher == "mpirun" else 1,
        "container": container_prefix(cluster),
        "data_check": data_check,
        "prepare_launch": prepare_launch,
        "override_lines": _lines(overrides),
        "argv": shlex.join(argv),
        "submit_cmd": shlex.join(submit_command(cluster, path)),
        "layout": layout,
    }


def _validate(stage: str, recipe: Any) -> str:
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
    if stage in PREPARE:
        if problems:
            raise LaunchError(f"stage {stage}: " + "\n".join(problems))
        return ""
    try:
        check_stage_dir_model(recipe.run.stage_dir(stage), recipe.model)
    except RecipeError as exc:
        problems.append(str(exc))
    if stage != "rl":
        try:
            layout = recipe.layout().describe()
        except ValueError as exc:  # LayoutError, or an inconsistent model preset
            problems.append(str(exc))
    if problems:
        raise LaunchError(f"stage {stage}: " + "\n".join(problems))
    return layout


# --- the RL stage: slime's `ray job submit` inside a Ray cluster over the job's nodes (rl.sh),
# or, with backend=local, the local GRPO loop as one process (train.sh)
SUBMIT = "ray job submit"
PWD = "${PWD}/"


def ray_submit_text(recipe: Any) -> str:
    """slime's submit command (validated by the RL module) with our submission id added: the
    job script stops the job by that id and checks that it SUCCEEDED before the export."""
    from swallow_train.rl.slime import render_ray_job

    text = render_ray_job(recipe).strip()
    if not text.startswith(SUBMIT + " ") or "--submission-id" in text:
        raise LaunchError(f"render_ray_job returned {text[:60]!r}...; expected a `{SUBMIT} ...` "
                          "command without --submission-id")
    return text.replace(SUBMIT, f'{SUBMIT} --submission-id "$SUBMISSION_ID"', 1)


def _relative(path: str) -> str:
    """slime's `${PWD}/runs/...` as the job script's (submit-directory relative) path."""
    return path[len(PWD):] if path.startswith(PWD) else path


def rl_context(recipe: Any) -> tuple[dict[str, Any], str, str]:
    """(template values, one-line layout summary, template) of the RL stage."""
    from swallow_train.rl.config import Backend

    cluster = recipe.cluster
    stage_dir = recipe.run.stage_dir("rl")
    if recipe.backend is Backend.local:
        summary = "local GRPO backend, one process"
        return ({"launcher": "python", "torchrun_via": None,
                 "progress_file": str(stage_dir / "checkpoints" / MARKER)}, summary, "train.sh")
    from swallow_train.rl.slime import megatron_path, save_dir, train_script
    from swallow_train.rl.slime_job import render_export

    summary = (f"slime on Ray, {cluster.world_size} GPU(s), colocate="
               f"{str(recipe.slime.colocate).lower()}, actor TP{recipe.parallel.tp} "
               f"PP{recipe.parallel.pp} CP{recipe.parallel.cp} EP{recipe.parallel.ep}")
    values = {
        "ray_submit": ray_submit_text(recipe),
        "export": render_export(recipe).strip(),
        "progress_file": f"{_relative(save_dir(recipe))}/{MARKER}",
        "tasks_per_node": 1,
        "train_script": train_script(recipe),
        "megatron_path": megatron_path(recipe),
    }
    return values, summary, "rl.sh"


def _prepare_jobs(stage: str, recipe: Any, overrides: list[str], argv: list[str]
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
            **_context(stage, recipe, overrides, path, argv, ""),
            "job_name": _job_name(stage if part != "final" else f"{stage}-final",
                                  recipe.run.name),
            "tasks": tasks if part == "task" else 1,
            "part": part,
            "what": what,
            "command": stage,
            "workers": stage != "prepare-rl",
            "cpu_queue": cluster.cpu_queue or cluster.queue,
        }
        script = _environment().get_template("prepare.sh").render(context)
        jobs.append(StageJob(stage=stage, recipe=recipe, overrides=overrides, script=script,
                             path=path, summary=f"{stage}: {what} on {cluster.name}"))
    return jobs


def build(stage: str, launch: LaunchConfig, argv: list[str]) -> list[StageJob]:
    """Compose, validate and render `stage` (a prepare stage may give two jobs: its array
    and the final step); raises RecipeError or LaunchError."""
    from swallow_train.config import compose

    overrides = launch.recipe_overrides(stage)
    recipe = compose(PREPARE.get(stage, stage), overrides)
    cluster: ClusterConfig = recipe.cluster
    layout = _validate(stage, recipe)
    if stage in PREPARE:
        return _prepare_jobs(stage, recipe, overrides, argv)
    from swallow_train.config import recipe_memory_plan

    recipe_memory_plan(recipe)  # LayoutError with the fix when it cannot fit the cluster's GPUs
    path = recipe.run.stage_dir(stage) / f"job.{cluster.scheduler.value}.sh"
    extra: dict[str, Any] = {}
    template = "train.sh"
    if stage == "rl":
        extra, layout, template = rl_context(recipe)
    context = {**_context(stage, recipe, overrides, path, argv, layout), **extra}
    script = _environment().get_template(template).render(context)
    summary = (f"{stage}: {cluster.nodes} node(s) x {cluster.gpus_per_node} GPU(s) on "
               f"{cluster.name} | {layout}")
    return [StageJob(stage=stage, recipe=recipe, overrides=overrides, script=script, path=path,
                     summary=summary)]


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
