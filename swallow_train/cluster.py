"""Cluster presets (`recipes/cluster/*.yaml`): scheduler, GPUs per node, queue, group, set-up.
Part of the core schema (swallow_train/layers.py): every stage recipe holds a `cluster`.

Node count, GPUs per node and hence the world size come from here and nowhere else:
`ClusterConfig.world_size` is what the parallel layout is validated against, and what the job
scripts of `swallow-train launch` request from the scheduler.

    swallow-train cpt --dry-run model=qwen3_8b cluster=abci3 cluster.nodes=16
    swallow-train launch stage=cpt model=qwen3_8b cluster=abci3 nodes=16 group=gxx00000
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from swallow_train.errors import SwallowError


class LaunchError(SwallowError, ValueError):
    """A job that cannot be rendered or submitted; the message names the key to change."""


class Scheduler(Enum):
    local = "local"
    """This machine: the script runs with bash, no scheduler."""
    pbs = "pbs"
    """PBS Professional (ABCI 3.0: qsub, #PBS)."""
    sge = "sge"
    """Grid Engine (TSUBAME 4.0: qsub, #$)."""
    slurm = "slurm"


class Launcher(Enum):
    torchrun = "torchrun"
    """One torchrun per node (srun on Slurm, mpirun with one slot per node on PBS/SGE)."""
    mpirun = "mpirun"
    """Open MPI with a host file, one rank per GPU (as the Swallow ABCI jobs ran)."""


class ContainerRuntime(Enum):
    apptainer = "apptainer"
    singularity = "singularity"


_WALLTIME = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)$")


def walltime_seconds(value: str, key: str = "cluster.walltime") -> int:
    """`HH:MM:SS` (hours may exceed 24) -> seconds; LaunchError naming `key` otherwise."""
    match = _WALLTIME.match(value.strip())
    if not match:
        raise LaunchError(f"{key}={value!r} is not HH:MM:SS (e.g. 24:00:00)")
    hours, minutes, seconds = (int(g) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


@dataclass(kw_only=True)
class ClusterConfig:
    name: str
    scheduler: Scheduler
    gpus_per_node: int
    """GPUs per node (processes per node on CPU)."""
    nodes: int = 1
    """Set with `nodes=N` on the launch command line."""
    launcher: Launcher = Launcher.torchrun
    queue: str | None = None
    """PBS queue / SGE resource type (`-l node_f=N`) / Slurm partition (`queue=` to launch)."""
    queues: list[str] = field(default_factory=list)
    """The queues this cluster offers (checked before a script is written); empty: any."""
    group: str | None = None
    """Accounting group: PBS -P, SGE `qsub -g`, Slurm --account (`group=` to launch)."""
    group_required: bool = False
    walltime: str | None = "24:00:00"
    """HH:MM:SS the job asks for (`walltime=` to launch); None: no limit (local only)."""
    cpus_per_node: int | None = None
    modules: list[str] = field(default_factory=list)
    """`module load` lines of the environment set-up."""
    env: dict[str, str] = field(default_factory=dict)
    """Exported in the job and passed to every rank (mpirun -x)."""
    container: str | None = None
    """Singularity/Apptainer image to run inside; None: the host environment."""
    container_runtime: ContainerRuntime = ContainerRuntime.apptainer
    venv: str | None = None
    """Virtual environment to activate (relative to the submit directory); None: none."""
    save_margin: int = 900
    """Seconds before the walltime at which the job asks the trainer to checkpoint and stop
    (the job's own timer, and Slurm's --signal); the stage is then requeued and resumes."""
    max_requeues: int = 20
    """Requeues of one stage after which the job gives up (guards against no progress)."""
    directives: list[str] = field(default_factory=list)
    """Extra scheduler options, one per line, e.g. `--qos=high` (Slurm) or `-l place=scatter`
    (PBS); rendered after the standard ones with the scheduler's prefix."""
    container_binds: list[str] = field(default_factory=list)
    """`--bind` mounts of the container (`/groups/gxx00000`, `/scratch:/scratch`); the
    submit directory is bound by Apptainer itself."""
    preflight: bool = False
    """GPU job scripts first run `swallow-train doctor <stage>` with the same overrides and
    stop if any check fails."""
    slime_train_script: str | None = None
    """slime's train.py (on every node, or inside `container`); relative: to the submit
    directory. Checked by the RL job before `ray start`."""
    megatron_path: str | None = None
    """The Megatron-LM checkout slime runs with (slime pins one in its Dockerfile)."""
    cpu_queue: str | None = None
    """Queue / resource type / partition of the CPU-only `prepare` jobs; None: `queue`."""
    cpu_cores: int | None = None
    """CPU cores of one `prepare` task's node (PBS ncpus, Slurm --cpus-per-task); None: not
    requested (the task uses every core it finds)."""
    prepare_tasks: int = 1
    """Array tasks (one node each) of `launch stage=prepare`; a final job then checks every
    shard and writes stats.json."""

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    def walltime_s(self) -> int | None:
        return None if self.walltime is None else walltime_seconds(self.walltime)

    def check(self) -> None:
        """Raise LaunchError listing every setting a job script cannot be rendered with."""
        errors: list[str] = []
        if self.nodes < 1:
            errors.append(f"nodes={self.nodes} must be >= 1")
        if self.gpus_per_node < 1:
            errors.append(f"cluster.gpus_per_node={self.gpus_per_node} must be >= 1")
        if self.scheduler is Scheduler.local and self.nodes != 1:
            errors.append(f"cluster {self.name} runs on this machine: nodes={self.nodes} must be 1")
        if self.queues and self.queue not in self.queues:
            errors.append(
                f"unknown queue {self.queue!r} for cluster {self.name}: queue= must be one of "
                f"{', '.join(self.queues)}"
            )
        if self.queue is None and self.scheduler in (Scheduler.pbs, Scheduler.sge):
            errors.append(f"cluster {self.name} needs a queue: add queue=<queue>")
        if self.group_required and not self.group:
            errors.append(
                f"cluster {self.name} needs an accounting group: add group=<your group> "
                f"({_GROUP_FLAG[self.scheduler]})"
            )
        if self.save_margin < 0:
            errors.append(f"cluster.save_margin={self.save_margin} must be >= 0 seconds")
        if self.prepare_tasks < 1:
            errors.append(f"cluster.prepare_tasks={self.prepare_tasks} must be >= 1")
        if self.max_requeues < 0:
            errors.append(f"cluster.max_requeues={self.max_requeues} must be >= 0")
        if self.walltime is None:
            if self.scheduler is not Scheduler.local:
                errors.append(f"cluster {self.name} needs a walltime: add walltime=HH:MM:SS")
        else:
            try:
                seconds = walltime_seconds(self.walltime, "walltime")
            except LaunchError as exc:
                errors.append(str(exc))
            else:
                if seconds <= self.save_margin:
                    errors.append(
                        f"walltime={self.walltime} ({seconds} s) must be longer than "
                        f"cluster.save_margin={self.save_margin} s, the time kept for the "
                        "final checkpoint"
                    )
        for key, value in self.env.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                errors.append(f"cluster.env key {key!r} is not an environment variable name")
            if "\n" in value:
                errors.append(f"cluster.env.{key} must be one line")
        if errors:
            raise LaunchError(f"cluster {self.name}:\n" + "\n".join(f"  - {e}" for e in errors))


_GROUP_FLAG = {
    Scheduler.local: "unused locally",
    Scheduler.pbs: "PBS -P",
    Scheduler.sge: "qsub -g",
    Scheduler.slurm: "sbatch --account",
}
