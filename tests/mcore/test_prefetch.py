"""The background batch builder gives exactly the synchronous batches, re-raises the worker's
errors in the caller, and stops cleanly."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from swallow_train.mcore.prefetch import Prefetcher


def build(step: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(step)
    time.sleep(0.002 * (step % 3))  # uneven build times
    return [{"tokens": torch.randint(0, 1000, (2, 16), generator=g),
             "loss_mask": torch.rand(2, 16, generator=g)} for _ in range(2)]


def same(a, b) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b, strict=True))


def test_batches_identical_to_the_synchronous_path() -> None:
    with Prefetcher(build, start=3, stop=20) as batches:
        got = [batches.get(s) for s in range(3, 20)]
    assert all(same(g, build(s)) for g, s in zip(got, range(3, 20), strict=True))


def test_asking_for_another_step_restarts_there() -> None:
    with Prefetcher(build, start=0, stop=50) as batches:
        assert same(batches.get(0), build(0))
        assert same(batches.get(17), build(17))  # e.g. a resume at another step
        assert same(batches.get(18), build(18))
        assert same(batches.get(5), build(5))


def test_worker_exception_surfaces_with_its_message() -> None:
    def failing(step: int):
        if step == 2:
            raise ValueError("prepared/x/tokens.npy:2: pack 7 is truncated")
        return build(step)

    batches = Prefetcher(failing, start=0, stop=10)
    assert same(batches.get(0), build(0)) and same(batches.get(1), build(1))
    with pytest.raises(ValueError, match=r"^prepared/x/tokens.npy:2: pack 7 is truncated$"):
        batches.get(2)
    assert batches._thread is None  # the worker is gone
    batches.close()


def test_builds_at_most_depth_ahead_and_close_stops_a_blocked_worker() -> None:
    calls: list[int] = []

    def counted(step: int):
        calls.append(step)
        return build(step)

    batches = Prefetcher(counted, start=0, stop=1000, depth=2)
    batches.get(0)
    time.sleep(0.3)
    # step 0 handed over; steps 1, 2 queued; step 3 built and waiting for room
    assert calls == [0, 1, 2, 3]
    thread = batches._thread
    batches.close()
    assert not thread.is_alive()
    assert [t for t in threading.enumerate() if t.name == "swallow-prefetch"] == []


def test_close_waits_for_a_slow_build_and_nothing_runs_after() -> None:
    started = threading.Event()

    def slow(step: int):
        started.set()
        time.sleep(0.2)
        return build(step)

    batches = Prefetcher(slow, start=0, stop=5)
    started.wait(5)
    batches.close()
    assert [t for t in threading.enumerate() if t.name == "swallow-prefetch"] == []
    batches.close()  # idempotent
