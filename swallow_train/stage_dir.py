"""The stage-directory contract every stage keeps (CPT, SFT, RL, eval, quantize).

`{run.root}/{run.name}/{stage}/` holds `config.yaml` (the resolved recipe, written when the stage
starts), the stage's own files (checkpoints/, metrics.jsonl, curves.png, eval/ ...), `hf/` for a
stage that exports a model, and `DONE`, written last and atomically: `{"stage": ..., "step": N}`.
A stage whose `DONE` exists is skipped when run again with the same recipe, and refused with the
differing keys when run with another (run.finished_stage). Only global rank 0 writes here. The
slime job script writes its `DONE` empty, from the shell, after its export: done, with no step.

Stages that train run through `swallow_train.lifecycle.StageRunner`, which keeps this contract
for them; a stage without steps uses it directly:

    sd = StageDir.of(recipe.run, "eval")
    if sd.finished(recipe): return 0
    with sd.lock():
        sd.write_config(recipe)
        ...                                   # the stage's work
        sd.mark_done(step=0)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from swallow_train.checkpoint_files import write_atomic
from swallow_train.config import RecipeError, to_yaml
from swallow_train.models.config import ModelConfig
from swallow_train.run import DONE, RunConfig, check_stage_dir_model, finished_stage


def _rank0() -> bool:
    from swallow_train import collectives

    return collectives.rank() == 0


@dataclass(frozen=True)
class StageDir:
    """One stage's directory of one run."""

    path: Path
    stage: str

    @classmethod
    def of(cls, run: RunConfig, stage: str) -> StageDir:
        return cls(run.stage_dir(stage), stage)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def done_path(self) -> Path:
        return self.path / DONE

    @property
    def hf(self) -> Path:
        """Where a stage that produces a model writes its Hugging Face export."""
        return self.path / "hf"

    def is_done(self) -> bool:
        return self.done_path.exists()

    def finished(self, recipe: object, model: ModelConfig | None = None) -> bool:
        """True when this directory holds a finished run of `recipe` (skip the stage). Refuses
        (RecipeError, naming the fix) a directory of another model's run, or one finished
        with another recipe."""
        if model is not None:
            check_stage_dir_model(self.path, model)
        return finished_stage(self.path, recipe)

    def done_step(self) -> int | None:
        """The step `DONE` records (None when not done, or for the empty `DONE` of the slime job
        script, written from the shell)."""
        if not self.is_done():
            return None
        text = self.done_path.read_text().strip()
        if not text:
            return None
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            raise RecipeError(f"{self.done_path} is not a DONE record ({text[:40]!r}): delete "
                              "it to run the stage again") from None
        return int(record["step"]) if isinstance(record, dict) else int(record)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive use of the directory for this job (collective when distributed)."""
        from swallow_train.run_lock import stage_lock

        with stage_lock(self.path, self.stage):
            yield

    def write_config(self, recipe: object) -> None:
        """The resolved recipe as `config.yaml` (rank 0, atomically)."""
        if _rank0():
            self.path.mkdir(parents=True, exist_ok=True)
            write_atomic(self.config_path, to_yaml(recipe))

    def mark_done(self, *, step: int) -> None:
        """Write `DONE` (rank 0, atomically): the last file the stage writes."""
        if _rank0():
            self.path.mkdir(parents=True, exist_ok=True)
            write_atomic(self.done_path, json.dumps({"stage": self.stage, "step": step}) + "\n")
