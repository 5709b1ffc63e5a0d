"""Run a function in N processes with the gloo backend (CPU), the way torchrun would.

    from tests.distributed import run_distributed
    results = run_distributed(my_worker, world_size=2, arg=...)   # my_worker(rank, arg=...)

The worker must be a module-level function of an importable module (multiprocessing spawns).
Each rank's return value comes back in rank order; an exception in any rank fails the caller
with that rank's traceback.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, fn: Callable[..., Any], world_size: int, port: int, out: str,
           kwargs: dict[str, Any]) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    result: dict[str, Any]
    try:
        result = {"ok": fn(rank, **kwargs)}
    except BaseException:  # report every failure, including SystemExit, to the parent
        result = {"error": traceback.format_exc()}
    finally:
        try:
            from swallow_train.mcore.distributed import shutdown

            shutdown()
        except Exception:
            pass
    Path(out, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))


def run_distributed(fn: Callable[..., Any], world_size: int = 2, **kwargs: Any) -> list[Any]:
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_entry, args=(fn, world_size, _free_port(), out, kwargs), nprocs=world_size,
                 join=True)
        results = [pickle.loads(Path(out, f"rank{r}.pkl").read_bytes()) for r in range(world_size)]
    errors = [f"rank {r}:\n{res['error']}" for r, res in enumerate(results) if "error" in res]
    if errors:
        raise AssertionError("distributed worker failed:\n" + "\n".join(errors))
    return [res["ok"] for res in results]


LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                "MASTER_PORT")


def cli_env(extra: dict | None = None) -> dict[str, str]:
    """The environment of a `swallow-train` child: this one without launcher variables (the
    child is not a rank of this process's group), one thread, W&B off, quiet warnings."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="disabled", PYTHONWARNINGS="ignore",
               **(extra or {}))
    return env


def run_cli(args: list[str], nproc: int = 1, timeout: float = 600, env: dict | None = None,
            check: bool = True):
    """`swallow-train <args>` in a fresh process (under torchrun with gloo when nproc > 1)."""
    import subprocess
    import sys

    full_env = cli_env(env)
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-port", str(_free_port()), "-m", "swallow_train", *args]
    else:
        cmd = [sys.executable, "-m", "swallow_train", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}"
                             f"\n{proc.stderr[-6000:]}")
    return proc
