"""Typed hooks of the stage runner (in the style of OLMo-core's trainer callbacks). The runner
always runs `MetricsCallback` (metrics.jsonl, W&B with the resolved recipe, curves.png) and
`ProgressCallback` (tqdm); a stage or a test adds its own `Callback`s.

    class Watch(Callback):
        def on_checkpoint(self, step: int, *, final: bool) -> None:
            print("checkpointed", step)

    StageRunner(recipe, stage="cpt", options=opts, callbacks=[Watch()]).run(loop)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from swallow_train.lifecycle.loop import Metrics, Outcome
from swallow_train.metrics.config import LoggingConfig
from swallow_train.metrics.logger import MetricsLogger


class Callback:
    """Hooks the runner calls around the steps; each is a no-op unless overridden."""

    def on_start(self, step: int, total: int) -> None:
        """Before the first step of this invocation: `step` steps done of `total`."""

    def on_step(self, step: int, metrics: Metrics) -> None:
        """After step `step` (1-based) with its metrics."""

    def on_checkpoint(self, step: int, *, final: bool) -> None:
        """After the loop saved the state of step `step`."""

    def on_end(self, step: int, outcome: Outcome | None) -> None:
        """When the steps end: how (None: an exception is on its way out)."""


class MetricsCallback(Callback):
    """Every `log_interval` steps and the last one: a row in `metrics.jsonl`, W&B (offline by
    default; its config is the resolved recipe) and a redraw of `curves.png` at the plot
    interval and at the end. On resume, rows after the resumed step are dropped first."""

    def __init__(self, stage_dir: Path, cfg: LoggingConfig, *, stage: str, run_name: str,
                 config: dict[str, Any], plot_keys: list[str], log_interval: int,
                 enabled: bool) -> None:
        self._open = lambda step: MetricsLogger(
            stage_dir, cfg, stage=stage, run_name=run_name, config=config,
            plot_keys=plot_keys, enabled=enabled, resume_step=step)
        self.log_interval = log_interval
        self.logger: MetricsLogger | None = None
        self.total = 0

    def on_start(self, step: int, total: int) -> None:
        self.logger, self.total = self._open(step), total

    def on_step(self, step: int, metrics: Metrics) -> None:
        if self.logger is not None and (step % self.log_interval == 0 or step == self.total):
            self.logger.log(step, dict(metrics))

    def on_end(self, step: int, outcome: Outcome | None) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None


class ProgressCallback(Callback):
    """A tqdm bar of the stage's steps, with the loop's postfix figures."""

    def __init__(self, stage: str, unit: str, postfix: Callable[[Metrics], dict[str, str]], *,
                 enabled: bool) -> None:
        self.stage, self.unit, self.postfix, self.enabled = stage, unit, postfix, enabled
        self.bar: Any = None

    def on_start(self, step: int, total: int) -> None:
        self.bar = tqdm(total=total, initial=step, desc=self.stage, unit=self.unit,
                        disable=not self.enabled, dynamic_ncols=True)

    def on_step(self, step: int, metrics: Metrics) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if self.enabled:
                self.bar.set_postfix(self.postfix(metrics))

    def on_end(self, step: int, outcome: Outcome | None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
