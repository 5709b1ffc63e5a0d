"""Multi-node doctor: is the run root (and the prepared data) one filesystem that every node sees?

Each process of the job writes a token named by its host and rank into
`{dir}/.swallow-doctor/{job id}/`, then waits until it sees every rank's token. A node that never
sees the others' tokens writes to a different filesystem (a node-local disk, or a mount missing
on that node). No process group is needed: the files are the message.

    torchrun --nnodes 4 --nproc-per-node 1 ... -m swallow_train doctor cpt cluster=abci3 ...
    mpirun -npernode 1 swallow-train doctor cpt ...     # or srun --ntasks-per-node 1
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from swallow_train.check_report import Check, failed, passed, skipped

# (rank, world size, local rank) variables of torchrun, Open MPI and Slurm, in that order
_LAUNCHERS = (
    ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
)
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT", "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")
"""What this process's own single-process self-tests must not see (they would join the job)."""
_JOB_IDS = ("PBS_JOBID", "SLURM_JOB_ID", "JOB_ID")
_LAUNCH_IDS = ("TORCHELASTIC_RUN_ID", "SLURM_STEP_ID", "PMIX_NAMESPACE", "MASTER_PORT")
"""Tell apart two doctor launches inside one job (a token left by the first must not count)."""


@dataclass(frozen=True)
class Launch:
    rank: int
    world_size: int
    local_rank: int
    job: str
    """Names this job's token directory (the scheduler's job id, else the rendezvous address)."""


def launch_from_env(env: Mapping[str, str]) -> Launch | None:
    """The launcher's view of this process, or None when not started by one."""
    for rank, world, local in _LAUNCHERS:
        if rank in env and world in env:
            job = next((env[k] for k in _JOB_IDS if env.get(k)), env.get("MASTER_ADDR", "local"))
            job = "-".join([job, *(env[k] for k in _LAUNCH_IDS if env.get(k, "none") != "none")])
            return Launch(rank=int(env[rank]), world_size=int(env[world]),
                          local_rank=int(env.get(local, "0")),
                          job=re.sub(r"[^A-Za-z0-9._-]", "_", job))
    return None


def detach_from_launcher() -> None:
    """Forget torchrun's variables in this process: the self-tests then form their own
    single-process groups instead of waiting for the job's other ranks."""
    for key in LAUNCHER_VARS:
        os.environ.pop(key, None)


def _tokens(directory: Path, prefix: str) -> list[str]:
    try:
        return sorted(p.name.removeprefix(prefix) for p in directory.iterdir()
                      if p.name.startswith(prefix))
    except FileNotFoundError:
        return []


def _wait_for(directory: Path, prefix: str, count: int, deadline: float) -> list[str]:
    while True:
        seen = _tokens(directory, prefix)
        if len(seen) >= count or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def same_filesystem(label: str, key: str, root: str, launch: Launch | None, host: str,
                    nodes: int, timeout: float) -> Check:
    """Every rank's token visible from this node within `timeout` seconds, from as many hosts as
    cluster.nodes. Global rank 0 removes the token directory once every rank has looked."""
    name = f"{label} shared"
    if launch is None or launch.world_size == 1:
        how = ("not started by a launcher" if launch is None else "a job of one process")
        return skipped(name, f"{how}: run doctor with one process per node (torchrun --nnodes N "
                       "--nproc-per-node 1, mpirun -npernode 1, srun --ntasks-per-node 1) to "
                       f"check that every node sees {root}")
    directory = Path(root).expanduser() / ".swallow-doctor" / launch.job
    directory.mkdir(parents=True, exist_ok=True)
    me = f"{host}.{launch.rank}"
    token = directory / f"token.{me}"
    token.write_text(json.dumps({"host": host, "rank": launch.rank, "pid": os.getpid()}))
    deadline = time.monotonic() + timeout
    seen = _wait_for(directory, "token.", launch.world_size, deadline)
    hosts = sorted({s.rsplit(".", 1)[0] for s in seen})
    if len(seen) < launch.world_size:
        return failed(name, f"{directory}: after {timeout:.0f} s this node ({host}) sees the "
                      f"tokens of {len(seen)} of {launch.world_size} ranks (hosts "
                      f"{', '.join(hosts)}): {key} must be on a filesystem every node mounts "
                      "(the group area on ABCI 3.0 / TSUBAME 4.0), not a node-local disk",
                      value=len(hosts), unit="nodes", seen=seen)
    (directory / f"seen.{me}").write_text("")
    everyone = launch.rank == 0 and len(
        _wait_for(directory, "seen.", launch.world_size, deadline)) >= launch.world_size
    if everyone:  # every rank has looked: the tokens can go
        shutil.rmtree(directory, ignore_errors=True)
    if len(hosts) != nodes:
        return failed(name, f"the job runs on {len(hosts)} node(s) ({', '.join(hosts)}) but the "
                      f"recipe says cluster.nodes={nodes}: launch one node per cluster.nodes",
                      value=len(hosts), unit="nodes", seen=seen)
    return passed(name, len(hosts), "nodes", f"{directory.parent}: the tokens of all "
                  f"{launch.world_size} ranks visible from {host}", seen=seen)
