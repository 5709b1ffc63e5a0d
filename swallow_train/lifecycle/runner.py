"""`StageRunner`: runs one stage's `StageLoop` under the stage-directory contract (the package
docstring lists the order). Only global rank 0 writes the directory's files; every rank runs
the steps, the checkpoints (collective saves) and the export.

    .venv/bin/python -m pytest tests/test_lifecycle.py -q
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from swallow_train import collectives
from swallow_train.config import to_yaml
from swallow_train.lifecycle.hooks import Callback, MetricsCallback, ProgressCallback
from swallow_train.lifecycle.loop import LoopOptions, Outcome, StageLoop, StageRecipe, say
from swallow_train.signals import StopRequest
from swallow_train.stage_dir import StageDir


@dataclass(frozen=True)
class _End:
    outcome: Outcome
    step: int
    signum: int = 0


@dataclass(kw_only=True)
class StageRunner:
    """The lifecycle of one stage of one run (see the package docstring)."""

    recipe: StageRecipe
    stage: str
    options: LoopOptions
    callbacks: Sequence[Callback] = ()
    """Hooks run after the built-in metrics and progress-bar callbacks."""
    stage_dir: StageDir = field(init=False)

    def __post_init__(self) -> None:
        self.stage_dir = StageDir.of(self.recipe.run, self.stage)

    def resolved_config(self) -> dict[str, Any]:
        """The resolved recipe as plain data: what `config.yaml` holds and W&B receives."""
        return yaml.safe_load(to_yaml(self.recipe))

    def run(self, loop: StageLoop) -> int:
        """Start or resume the stage and run it to `DONE`. 0 when finished, skipped (already
        finished with this recipe) or stopped by `exit_after`; 128 + signal when stopped by
        a signal. A run finished with another recipe is refused (RecipeError)."""
        if self._finished():
            return 0
        loop.preflight()
        with self.stage_dir.lock():
            if self._finished():  # finished while this job waited to start
                return 0
            try:
                step = loop.setup()
                self.stage_dir.write_config(self.recipe)
                end = self._steps(loop, step)
            finally:
                loop.close()
            return self._finish(loop, end)

    def _finished(self) -> bool:
        if not self.stage_dir.finished(self.recipe, self.recipe.model):
            return False
        say(f"{self.stage}: {self.stage_dir.done_path} exists, finished with this recipe; "
            "skipping")
        return True

    def _hooks(self, loop: StageLoop) -> list[Callback]:
        logging, rank0 = self.recipe.logging, collectives.rank() == 0
        metrics = MetricsCallback(
            self.stage_dir.path, logging, stage=self.stage, run_name=self.recipe.run.name,
            config=self.resolved_config(), plot_keys=list(loop.plot_keys),
            log_interval=self.options.log_interval, enabled=rank0)
        bar = ProgressCallback(self.stage, loop.unit, loop.postfix,
                               enabled=rank0 and logging.progress_bar)
        return [metrics, bar, *self.callbacks]

    def _steps(self, loop: StageLoop, step: int) -> _End:
        total = loop.total_steps()
        stop = StopRequest().install() if self.options.save_on_signal else None
        hooks = self._hooks(loop)
        end: _End | None = None
        try:
            for hook in hooks:
                hook.on_start(step, total)
            while end is None and step < total:
                metrics = loop.step(step)
                step += 1
                for hook in hooks:
                    hook.on_step(step, metrics)
                end = self._after_step(loop, hooks, step, total, stop)
            end = end or _End(Outcome.finished, step)
            return end
        finally:
            for hook in hooks:
                hook.on_end(step, None if end is None else end.outcome)
            if stop is not None:
                stop.restore()

    def _after_step(self, loop: StageLoop, hooks: list[Callback], step: int, total: int,
                    stop: StopRequest | None) -> _End | None:
        """Poll the signals (collective) and the loop's background work, checkpoint when due;
        how the run ends, if it ends here."""
        opts = self.options
        signum = stop.requested() if stop is not None else None
        loop.poll()
        halt = opts.exit_after is not None and opts.exit_after <= step < total
        due = step == total or bool(opts.save_interval and step % opts.save_interval == 0)
        if signum or halt or due:
            loop.save(step, final=step == total, blocking=bool(signum) or halt)
            for hook in hooks:
                hook.on_checkpoint(step, final=step == total)
        if signum:
            say(f"{self.stage}: signal {signum}: checkpointed {loop.unit} {step}; run the same "
                "command again to resume")
            return _End(Outcome.signal, step, signum)
        if halt:
            say(f"{self.stage}: exit_after={opts.exit_after}: checkpointed {loop.unit} {step}; "
                "run the same command again to continue")
            return _End(Outcome.exit_after, step)
        return None

    def _finish(self, loop: StageLoop, end: _End) -> int:
        """After the steps: the exit code of a stop, or the export and then `DONE`."""
        if end.outcome is Outcome.signal:
            return StopRequest.exit_code(end.signum)
        if end.outcome is Outcome.exit_after:
            return 0
        if self.options.export_hf:
            out = loop.export(self.stage_dir.hf)
            say(f"{self.stage}: HF export: {out or self.stage_dir.hf}")
        self.stage_dir.mark_done(step=end.step)  # atomic, the last file of the stage
        collectives.barrier()
        return 0
