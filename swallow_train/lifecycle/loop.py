"""What a stage hands the runner (`StageLoop`: its state and its step) and how the runner drives
it (`LoopOptions`). `say` is the one status-line printer of the package (global rank 0 only).

    class MyLoop:                       # satisfies StageLoop: no base class needed
        unit, plot_keys = "step", ("loss",)
        def setup(self) -> int: ...     # build, resume: the steps already done
        def step(self, index: int) -> dict[str, float]: ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from swallow_train import collectives
from swallow_train.metrics.config import LoggingConfig
from swallow_train.models.config import ModelConfig
from swallow_train.run import RunConfig

Metrics = Mapping[str, float]
"""One step's metrics: name -> value (logged to metrics.jsonl and W&B)."""


def say(msg: str) -> None:
    """A status line of the job, printed once (global rank 0): `[swallow-train] msg`."""
    if collectives.rank() == 0:
        print(f"[swallow-train] {msg}", flush=True)


class StageRecipe(Protocol):
    """What the runner reads of a stage's recipe (every stage recipe has these sections); the
    whole recipe is what `config.yaml` and W&B receive."""

    run: RunConfig
    model: ModelConfig
    logging: LoggingConfig


class StageLoop(Protocol):
    """A stage's state and step. The runner calls `preflight`, then (under the directory lock)
    `setup` once and `total_steps`, `step` for each step from the resumed one, `poll` after
    every step, `save` when a checkpoint is due, `close` once the steps end (also after an
    error), and `export` once after a complete run. Steps count from 1: `step(i)` trains step
    i + 1, and `save(n)` holds the state after n steps."""

    unit: str
    """What one step is called in messages and on the progress bar ("step", "rollout")."""
    plot_keys: Sequence[str]
    """Metrics drawn in `curves.png`."""

    def preflight(self) -> None:
        """Cheap checks and set-up before the lock: the start checkpoint, process groups
        (collective when distributed)."""

    def setup(self) -> int:
        """Build the state and resume it from the stage's last checkpoint; the number of
        steps already done (0 for a fresh start)."""

    def total_steps(self) -> int:
        """Steps of the whole stage (asked after `setup`)."""

    def step(self, index: int) -> dict[str, float]:
        """Train step `index + 1` (0-based `index`); its metrics."""

    def save(self, step: int, *, final: bool, blocking: bool) -> None:
        """Checkpoint the state after `step` steps. `final`: the stage's last step;
        `blocking`: the process exits next, so the checkpoint must be complete on return."""

    def poll(self) -> None:
        """Publish background work that has finished (e.g. an asynchronous checkpoint)."""

    def export(self, hf_dir: Path) -> Path | None:
        """Write the Hugging Face export to `hf_dir`; the directory written (None: `hf_dir`)."""

    def postfix(self, metrics: Metrics) -> dict[str, str]:
        """The progress bar's short figures of one step's metrics."""

    def close(self) -> None:
        """Release background workers (prefetchers, verifier pools); the state stays, for
        the export."""


@dataclass(frozen=True, kw_only=True)
class LoopOptions:
    """How the runner drives a loop; each stage maps its recipe sections onto these."""

    save_interval: int
    """Checkpoint every N steps; 0: only at the end (and on a signal or at `exit_after`)."""
    save_on_signal: bool = True
    """On SIGTERM/SIGUSR1: checkpoint, then exit with 128 + the signal (the job requeues)."""
    exit_after: int | None = None
    """Checkpoint and exit 0, not done, once this many steps are done (at least one step per
    invocation); the same command resumes. None: run to the end."""
    export_hf: bool = True
    """Write `hf/` at the end, before `DONE`."""
    log_interval: int = 1
    """Log metrics every N steps (and the last step)."""


class Outcome(Enum):
    """How a run's steps ended."""

    finished = "finished"
    """Every step done: export, then `DONE`."""
    signal = "signal"
    """A stop signal: checkpointed, exit 128 + signal, no `DONE`."""
    exit_after = "exit_after"
    """`exit_after` steps done: checkpointed, exit 0, no `DONE`."""
