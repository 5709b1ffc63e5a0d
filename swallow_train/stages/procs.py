"""Run a stage as child processes that die with their parent.

The pipeline runs each stage in fresh processes (megatron's global state stays per stage, and
`nproc > 1` gives the ranks of a gloo job). Every child asks the kernel to SIGKILL it when its
parent dies (Linux `PR_SET_PDEATHSIG`), so killing the pipeline - even with SIGKILL - leaves no
stage running that could race a rerun on the same directory. SIGTERM/SIGUSR1 sent to the
pipeline are forwarded to the stage, which checkpoints and exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from functools import partial

from swallow_train.signals import die_with_parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_stage(args: list[str], nproc: int = 1, env: dict[str, str] | None = None) -> int:
    """`python -m swallow_train <args>` in `nproc` ranks; the first non-zero exit code (the
    other ranks, which this function started, are then terminated), else 0."""
    base = {**os.environ, **(env or {})}
    if nproc > 1:
        base.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
                    WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc))
        base.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    procs, guard = [], partial(die_with_parent, os.getpid())
    for rank in range(nproc):
        rank_env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank)) if nproc > 1 else base
        procs.append(subprocess.Popen([sys.executable, "-m", "swallow_train", *args],
                                      env=rank_env, preexec_fn=guard))
    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        return _wait_all(procs)
    except KeyboardInterrupt:
        _stop(procs)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_all(procs: list[subprocess.Popen]) -> int:
    while True:
        codes = [p.poll() for p in procs]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            _stop(procs)
            return failed[0]
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.2)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
