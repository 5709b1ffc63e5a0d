"""Run a function in N fresh processes on this node, one per GPU (or gloo ranks on CPU), as
torchrun would: RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set in each.

    results = spawn(worker, nprocs=8, timeout=300, size=2**28)   # worker(rank, size=...)

The worker must be a module-level function (multiprocessing spawns). Results come back in rank
order; a rank that raises, dies or outlives `timeout` raises `SpawnError` naming it.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


class SpawnError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _entry(fn: Callable[..., Any], rank: int, world: int, port: int, out: str,
           kwargs: dict[str, Any]) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    try:
        result: dict[str, Any] = {"ok": fn(rank, **kwargs)}
    except BaseException as exc:  # every failure, SystemExit included, goes to the parent
        result = {"error": f"{exc.__class__.__name__}: {exc}",
                  "traceback": traceback.format_exc()}
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    Path(out, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))


def spawn(fn: Callable[..., Any], nprocs: int, timeout: float, **kwargs: Any) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="swallow-doctor-") as out:
        procs = [ctx.Process(target=_entry, args=(fn, r, nprocs, port, out, kwargs), daemon=True)
                 for r in range(nprocs)]
        for proc in procs:
            proc.start()
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.join(max(deadline - time.monotonic(), 0.0))
        late = [r for r, p in enumerate(procs) if p.is_alive()]
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        if late:
            raise SpawnError(f"rank(s) {late} still running after {timeout:.0f} s")
        results = []
        for rank in range(nprocs):
            path = Path(out, f"rank{rank}.pkl")
            if not path.exists():
                raise SpawnError(f"rank {rank} died (exit code {procs[rank].exitcode})")
            results.append(pickle.loads(path.read_bytes()))
    errors = [(r, res) for r, res in enumerate(results) if "error" in res]
    if errors:
        rank, res = errors[0]
        raise SpawnError(f"rank {rank}: {res['error']}\n{res['traceback']}")
    return [res["ok"] for res in results]
