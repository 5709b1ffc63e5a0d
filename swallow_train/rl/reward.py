"""The verifiable math reward, in the form slime loads by dotted path (slime is never imported).

    --custom-rm-path swallow_train.rl.reward.reward                   # one sample per call
    --custom-rm-path swallow_train.rl.reward.group_reward --group-rm  # one prompt group per call

A sample is duck-typed: `.response` (decoded text), `.label` (the reference answer),
`.status.value` ("truncated" when the response hit the length limit) and `.metadata`. A
truncated sample, one without a label and one without a final answer score 0.0; otherwise the
answer after `</think>` is checked with math-verify in a process pool (`PooledVerifier`), so the
rollout's event loop never blocks. The pool is one per process, sized by `SWALLOW_REWARD_WORKERS`
and `SWALLOW_REWARD_TIMEOUT_S` (the slime renderer sets both from `reward.*`), or by
`configure(RewardConfig)` in the local backend.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from enum import Enum
from typing import Any

from swallow_train.rl.verify import PooledVerifier

WORKERS_ENV = "SWALLOW_REWARD_WORKERS"
TIMEOUT_ENV = "SWALLOW_REWARD_TIMEOUT_S"
REWARD_PATH = "swallow_train.rl.reward.reward"
GROUP_REWARD_PATH = "swallow_train.rl.reward.group_reward"


@dataclass(kw_only=True)
class RewardConfig:
    """How rewards are computed (the same function on clusters and in the local backend)."""

    workers: int = 4
    """Verifier processes per rollout process (slime: on the rollout manager's node)."""
    timeout_s: float = 10.0
    """Hard deadline of one check; a check that misses it scores 0."""
    group_rm: bool = False
    """slime `--group-rm`: score a prompt's whole group in one call (not usable with eval)."""

    def env(self) -> dict[str, str]:
        """Environment variables that size the pool in slime's rollout process."""
        return {WORKERS_ENV: str(self.workers), TIMEOUT_ENV: f"{self.timeout_s:g}"}

    @property
    def function_path(self) -> str:
        return GROUP_REWARD_PATH if self.group_rm else REWARD_PATH


class Status(Enum):
    """The values of slime's `Sample.Status` that the reward reads."""

    completed = "completed"
    truncated = "truncated"
    aborted = "aborted"


@dataclass(kw_only=True)
class RolloutSample:
    """The fields of slime's `Sample` the reward reads; the local backend's sample."""

    response: str
    label: Any
    status: Status = Status.completed
    metadata: dict[str, Any] | None = None


_verifier: PooledVerifier | None = None


def configure(cfg: RewardConfig) -> PooledVerifier:
    """(Re)create this process's verifier pool with `cfg`'s size and deadline."""
    global _verifier
    shutdown()
    _verifier = PooledVerifier(workers=cfg.workers, timeout_s=cfg.timeout_s)
    return _verifier


def verifier() -> PooledVerifier:
    """This process's verifier pool, created on first use from the environment."""
    global _verifier
    if _verifier is None:
        defaults = RewardConfig()
        workers = int(os.environ.get(WORKERS_ENV, defaults.workers))
        timeout_s = float(os.environ.get(TIMEOUT_ENV, defaults.timeout_s))
        _verifier = PooledVerifier(workers=workers, timeout_s=timeout_s)
    return _verifier


def shutdown() -> None:
    """Stop this process's verifier pool (also run at exit)."""
    global _verifier
    if _verifier is not None:
        _verifier.close()
        _verifier = None


atexit.register(shutdown)


def _needs_check(sample: Any) -> bool:
    status = getattr(sample, "status", None)
    if status is not None and getattr(status, "value", status) in ("truncated", "aborted"):
        return False
    return sample.label is not None and bool(sample.response)


async def group_reward(args: Any, samples: Any, **kwargs: Any) -> list[float] | float:
    """Rewards of one prompt group (slime `--group-rm`), checked concurrently in the pool.
    Given a single sample (slime's eval path calls the same function per sample), its reward."""
    if not isinstance(samples, list | tuple):
        return (await group_reward(args, [samples], **kwargs))[0]  # type: ignore[index]
    rewards = [0.0] * len(samples)
    todo = [i for i, s in enumerate(samples) if _needs_check(s)]
    if todo:
        scores = await verifier().score_many(
            [(samples[i].response, samples[i].label) for i in todo]
        )
        for i, score in zip(todo, scores, strict=True):
            rewards[i] = score
    return rewards


async def reward(args: Any, sample: Any, **kwargs: Any) -> float | list[float]:
    """The reward of one sample (slime `--custom-rm-path`): 1.0 for a correct final answer.
    slime passes a list when a custom generate function returns several samples; then a list
    of rewards comes back."""
    if isinstance(sample, list | tuple):
        return await group_reward(args, list(sample), **kwargs)
    if not _needs_check(sample):
        return 0.0
    return await verifier().score(sample.response, sample.label)
