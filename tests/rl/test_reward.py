"""slime's reward contract (awaited, duck-typed Sample) and the pooled verifier's deadlines."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pytest

from swallow_train.rl import reward as rm
from swallow_train.rl.verify import PooledVerifier
from tests.rl.scorers import mixed

T = "<think>\nok\n</think>\n\n"


class FakeStatus(Enum):  # the values of slime's Sample.Status
    COMPLETED = "completed"
    TRUNCATED = "truncated"
    ABORTED = "aborted"


@dataclass
class FakeSample:
    response: str
    label: Any
    status: FakeStatus = FakeStatus.COMPLETED
    metadata: dict[str, Any] = field(default_factory=dict)
    reward: float | None = None


@pytest.fixture(scope="module")
def pool() -> Any:
    verifier = rm.configure(rm.RewardConfig(workers=2, timeout_s=20.0))
    verifier.warm_up()
    yield verifier
    rm.shutdown()


def test_dotted_paths_import_without_slime() -> None:
    code = (
        "import importlib, sys\n"
        "for path in ('swallow_train.rl.reward.reward', 'swallow_train.rl.reward.group_reward'):\n"
        "    mod, _, fn = path.rpartition('.')\n"
        "    f = getattr(importlib.import_module(mod), fn)\n"
        "    import inspect; assert inspect.iscoroutinefunction(f), path\n"
        "assert not any(m == 'slime' or m.startswith('slime.') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert rm.REWARD_PATH == "swallow_train.rl.reward.reward"
    module, _, name = rm.GROUP_REWARD_PATH.rpartition(".")
    assert getattr(importlib.import_module(module), name) is rm.group_reward


def test_reward_single_samples(pool: PooledVerifier) -> None:
    async def run() -> list[Any]:
        return [
            await rm.reward(None, FakeSample(T + "\\boxed{\\frac{1}{2}}", "0.5")),
            await rm.reward(None, FakeSample(T + "\\boxed{3}", "4")),
            await rm.reward(None, FakeSample(T + "\\boxed{4}", "4", FakeStatus.TRUNCATED)),
            await rm.reward(None, FakeSample(T + "\\boxed{4}", "4", FakeStatus.ABORTED)),
            await rm.reward(None, FakeSample(T + "\\boxed{4}", None)),
            await rm.reward(None, FakeSample("<think>\\boxed{4}", "4")),
            await rm.reward(None, FakeSample(T + "答えは４個です", "4")),
        ]

    assert asyncio.run(run()) == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_group_reward_keeps_order_and_accepts_one_sample(pool: PooledVerifier) -> None:
    group = [FakeSample(T + f"\\boxed{{{i}}}", "3") for i in range(6)]
    group[3].status = FakeStatus.TRUNCATED

    async def run() -> tuple[Any, Any, Any]:
        return (await rm.group_reward(None, group),
                await rm.group_reward(None, FakeSample(T + "\\boxed{3}", "3")),
                await rm.reward(None, [*group[:3], FakeSample(T + "\\boxed{3}", "3")]))

    grouped, single, listed = asyncio.run(run())
    assert grouped == [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # the one right answer was truncated
    assert single == 1.0
    assert listed == [0.0, 0.0, 0.0, 1.0]


def test_soft_timeout_spares_the_pool() -> None:
    # soft budget 4 s, hard deadline 5 s: a second of slack for a loaded CI machine
    with PooledVerifier(workers=1, timeout_s=5.0, scorer=mixed) as verifier:
        verifier.warm_up()
        scores = asyncio.run(verifier.score_many([("SPIN", "1"), (T + "\\boxed{1}", "1")]))
        assert scores == [0.0, 1.0]
        assert verifier.recycled == 0


def _stopped(pid: int, within_s: float = 15.0) -> bool:
    """Whether the OS reports `pid` gone or a zombie within `within_s` (killed, not running).

    Asks /proc rather than `Process.is_alive()`: the pool's manager thread reaps its workers
    too, and a poll that loses that race reads ECHILD as "still running"."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_hung_check_scores_zero_without_blocking_the_loop() -> None:
    verifier = PooledVerifier(workers=2, timeout_s=2.0, scorer=mixed)
    verifier.warm_up()
    workers = list(verifier._pool._processes.values())  # type: ignore[union-attr]
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.05)

    async def run() -> list[float]:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        items = [("HANG", "1")] + [(T + f"\\boxed{{{i}}}", "2") for i in range(5)]
        scores = await verifier.score_many(items)
        stop.set()
        await tick
        return scores

    scores = asyncio.run(run())
    assert scores == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]  # the checks beside the hung one survive
    assert verifier.recycled == 1
    assert all(_stopped(p.pid) for p in workers)  # the stuck worker was killed
    assert ticks >= 10  # the loop kept running through the 2 s deadline
    assert asyncio.run(verifier.score(T + "\\boxed{2}", "2")) == 1.0  # on a fresh pool
    new_workers = list(verifier._pool._processes.values())  # type: ignore[union-attr]
    verifier.close()
    assert new_workers and all(_stopped(p.pid) for p in new_workers)
