"""Where a run writes and what a stage starts from, and the stage-directory contract every stage
keeps: `{run.root}/{run.name}/{stage}/` holds `config.yaml` (the resolved recipe), and `DONE`,
written last, marks it finished. Part of the core schema (swallow_train/layers.py).

    swallow-train cpt run.name=exp1 run.root=/groups/x/runs     # -> /groups/x/runs/exp1/cpt/
    swallow-train sft init.from_stage=cpt                       # starts from runs/<name>/cpt/hf
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from swallow_train.config import RecipeError, to_yaml
from swallow_train.models.config import ModelConfig

DONE = "DONE"
"""Written last in a stage directory: the stage finished (skipped when run again)."""

RESULT_NEUTRAL = ("cluster.", "parallel.", "logging.", "run.", "slime.", "checkpoint.save_interval",
                  "checkpoint.keep_last", "checkpoint.save_on_signal", "train.log_interval",
                  "data.num_workers", "data.batch_docs", "data.batch_conversations",
                  "local.exit_after", "train.exit_after", "reward.workers")
"""Recipe keys that do not change what a finished stage produced (where and how it ran)."""


@dataclass(kw_only=True)
class RunConfig:
    """A run writes each stage to `{root}/{name}/{stage}/` (checkpoints, hf/, logs, plots).
    `name` defaults to the model preset's name, so runs of different models never share a
    directory (the `pipeline` recipe passes its own `name`, `tiny` by default)."""

    name: str = "${model.name}"
    root: str = "runs"

    def stage_dir(self, stage: str) -> Path:
        return Path(self.root) / self.name / stage


@dataclass(kw_only=True)
class InitConfig:
    """What a stage starts from: the HF export of an earlier stage of this run, or an HF
    checkpoint (hub id or directory). `hf` wins when both are set."""

    from_stage: str | None = None
    hf: str | None = None

    def resolve(self, run: RunConfig) -> str | None:
        if self.hf:
            return self.hf
        if self.from_stage:
            return str(run.stage_dir(self.from_stage) / "hf")
        return None


def check_stage_dir_model(stage_dir: Path, model: ModelConfig,
                          fix: str = "pick another run.name (or run.root)") -> None:
    """Refuse a stage directory whose run (its saved `config.yaml`) was of a model of another
    shape: it would be skipped as finished, or resumed from checkpoints that do not fit."""
    saved = stage_dir / "config.yaml"
    if not saved.is_file():
        return
    try:
        theirs = (yaml.safe_load(saved.read_text()) or {}).get("model")
    except (yaml.YAMLError, AttributeError) as exc:
        raise RecipeError(f"{saved} is not a stage's config.yaml ({exc}): {fix}, or move "
                          f"{stage_dir} away") from None
    if not isinstance(theirs, dict):
        raise RecipeError(f"{saved} has no model: section: {fix}, or move {stage_dir} away")
    differences = model.shape_differences(theirs)
    if differences:
        raise RecipeError(
            f"{stage_dir} holds a run of model {theirs.get('name')!r}, not {model.name!r} ("
            + "; ".join(differences[:4]) + f"): {fix}, or move that directory away")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def recipe_differences(saved: Path, recipe: object) -> list[str]:
    """The keys (outside RESULT_NEUTRAL) whose value in the `config.yaml` at `saved` differs
    from `recipe`, as `key: <there> there, <now> now`. `object`: any composed stage recipe (a
    dataclass tree, compared as the YAML `config.to_yaml` writes); no field of it is read."""
    try:
        theirs = _flat(yaml.safe_load(saved.read_text()) or {})
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"{saved} cannot be read ({exc}): restore it or move "
                          f"{saved.parent} away") from None
    ours = _flat(yaml.safe_load(to_yaml(recipe)))
    keys = sorted(set(theirs) | set(ours))
    return [f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} now" for k in keys
            if not k.startswith(RESULT_NEUTRAL) and theirs.get(k) != ours.get(k)]


def finished_stage(stage_dir: Path, recipe: object) -> bool:
    """True when `stage_dir` holds a finished run (`DONE`) of this same recipe (`object`: any
    composed stage recipe, compared as YAML by `recipe_differences`): skip it. A run that
    finished with another recipe is refused (RecipeError naming the keys that differ and how
    to continue), instead of being skipped as if it were this one."""
    if not (stage_dir / DONE).exists():
        return False
    saved = stage_dir / "config.yaml"
    if not saved.is_file():
        return True  # nothing to compare with (written by a job script): as before, skip
    differences = recipe_differences(saved, recipe)
    if not differences:
        return True
    raise RecipeError(
        f"{stage_dir} already finished ({DONE}) with another recipe than this one:\n  "
        + "\n  ".join(differences[:8])
        + (f"\n  ... and {len(differences) - 8} more" if len(differences) > 8 else "")
        + f"\nTo keep that result, run the new recipe under another run.name (add "
        f"init.hf={stage_dir / 'hf'} to start from its export). To extend that run instead, "
        f"delete {stage_dir / DONE}: it then resumes from its last checkpoint with the new "
        f"recipe, but the optimizer state and learning-rate schedule (lr, min_lr, warmup, decay "
        f"steps) stay the checkpoint's. To skip it, rerun with the recipe in {saved}.")
