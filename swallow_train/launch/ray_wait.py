"""Wait until the job's Ray cluster has every node and GPU (the RL job script runs this after
`ray start`, before `ray job submit`).

    python -m swallow_train.launch.ray_wait --address 10.0.0.1:6379 --nodes 4 --gpus 32

Exit status 0 once `--nodes` nodes are alive with `--gpus` GPUs between them, 1 on timeout.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any


def capacity(nodes: list[dict[str, Any]]) -> tuple[int, float]:
    """(alive nodes, their GPUs) from `ray.nodes()`."""
    alive = [n for n in nodes if n.get("Alive")]
    return len(alive), sum(float(n.get("Resources", {}).get("GPU", 0)) for n in alive)


def wait(nodes: int, gpus: int, timeout: float, *, address: str = "auto", ray: Any = None,
         poll: float = 5.0, clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep,
         say: Callable[[str], None] = print) -> bool:
    """Connect to the Ray head at `address` (retrying while it starts), then poll until the
    cluster has `nodes` nodes and `gpus` GPUs; False at the timeout."""
    if ray is None:
        import ray  # only on the cluster, in the RL environment
    deadline = clock() + timeout
    while True:
        try:
            ray.init(address=address, logging_level="ERROR")
            break
        except ConnectionError as exc:
            if clock() >= deadline:
                say(f"ray: no head at {address} after {timeout:g} s: {exc}")
                return False
            sleep(poll)
    try:
        while True:
            have_nodes, have_gpus = capacity(ray.nodes())
            if have_nodes >= nodes and have_gpus >= gpus:
                say(f"ray: {have_nodes} node(s), {have_gpus:g} GPU(s) ready")
                return True
            if clock() >= deadline:
                say(f"ray: only {have_nodes}/{nodes} node(s), {have_gpus:g}/{gpus} GPU(s) "
                    f"after {timeout:g} s")
                return False
            sleep(poll)
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swallow_train.launch.ray_wait")
    parser.add_argument("--address", default="auto", help="host:port of the Ray head")
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--gpus", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    return 0 if wait(args.nodes, args.gpus, args.timeout, address=args.address) else 1


if __name__ == "__main__":
    sys.exit(main())
