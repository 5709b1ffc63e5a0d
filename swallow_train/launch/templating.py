"""What every job script is made of: the Jinja2 environment of `templates/`, the submit
command, the launcher, and the template values every stage's job shares (`job_context`).

    swallow-train launch --dry-run stage=cpt cluster=abci3 nodes=16 group=gxx00000 model=qwen3_8b

The templates are data (`swallow_train/launch/templates/*.sh`): `train.sh` (CPT/SFT), `rl.sh`
(Ray + slime) and `prepare.sh` import the scheduler's header/hosts/requeue pieces (`pbs.sh`,
`sge.sh`, `slurm.sh`, `local.sh`) and the shared ones (`common.sh`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from swallow_train.checkpoint_files import MARKER
from swallow_train.cluster import ClusterConfig, Launcher, Scheduler
from swallow_train.registry import STAGES, Kind

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class StageJob:
    """A validated, rendered job: nothing of it is on disk yet."""

    stage: str
    recipe: object
    overrides: list[str]
    script: str
    path: Path
    summary: str
    """One line for the console: nodes, GPUs and the validated layout."""
    after: str | None = None
    """The stage whose job this one waits for (eval: the stage it scores); None: the job
    before it in the launch."""

    @property
    def cluster(self) -> ClusterConfig:
        return self.recipe.cluster

    @property
    def stage_dir(self) -> Path:
        return self.path.parent


@cache
def environment() -> Any:
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


def launcher_of(cluster: ClusterConfig) -> tuple[str, str | None]:
    """(launcher, how torchrun reaches the other nodes)."""
    if cluster.launcher is Launcher.mpirun:
        return "mpirun", None
    if cluster.world_size == 1:
        return "python", None
    if cluster.nodes == 1:
        return "torchrun", None
    return "torchrun", "srun" if cluster.scheduler is Scheduler.slurm else "mpirun"


def shell_lines(tokens: list[str], width: int = 92) -> list[str]:
    """Shell-quoted tokens packed into lines of at most `width` characters."""
    lines: list[str] = []
    for token in (shlex.quote(t) for t in tokens):
        if lines and len(lines[-1]) + 1 + len(token) <= width:
            lines[-1] += " " + token
        else:
            lines.append(token)
    return lines


def job_name(stage: str, run_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{stage}-{run_name}")[:63]


def container_prefix(cluster: ClusterConfig) -> str:
    """`apptainer exec --nv [--bind ...] IMAGE ` (with its trailing space), or ""."""
    if not cluster.container:
        return ""
    binds = "".join(f"--bind {shlex.quote(b)} " for b in cluster.container_binds)
    return (f"{cluster.container_runtime.value} exec --nv {binds}"
            f"{shlex.quote(cluster.container)} ")


def job_context(stage: str, recipe: object, overrides: list[str], path: Path, argv: list[str],
             layout: str) -> dict[str, Any]:
    cluster: ClusterConfig = recipe.cluster
    stage_dir = path.parent
    init = recipe.init
    needs = init.from_stage if init.from_stage and not init.hf else None
    launcher, via = launcher_of(cluster)
    data_check = STAGES[stage].kind is Kind.train and cluster.nodes > 1
    prepare_launch = ""
    if data_check:
        from swallow_train.data.ready import StageData, launch_command

        prepare_launch = launch_command(StageData.of(recipe), overrides)
    return {
        "stage": stage,
        "run_name": recipe.run.name,
        "stage_dir": str(stage_dir),
        "script": str(path),
        "c": cluster,
        "scheduler": cluster.scheduler.value,
        "walltime_s": cluster.walltime_s(),
        "job_name": job_name(stage, recipe.run.name),
        "needs": needs,
        "needs_done": str(recipe.run.stage_dir(needs) / "DONE") if needs else "",
        "progress_file": str(stage_dir / "checkpoints" / MARKER),
        "launcher": launcher,
        "torchrun_via": via,
        "tasks_per_node": cluster.gpus_per_node if launcher == "mpirun" else 1,
        "container": container_prefix(cluster),
        "data_check": data_check,
        "prepare_launch": prepare_launch,
        "override_lines": shell_lines(overrides),
        "argv": shlex.join(argv),
        "submit_cmd": shlex.join(submit_command(cluster, path)),
        "layout": layout,
    }
