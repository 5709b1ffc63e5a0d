"""Config pieces every stage shares: where a run writes, where a stage starts from, and the
sections of the megatron-core loop that CPT and SFT have in common."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from swallow_train.config import RecipeError
from swallow_train.launch.cluster import ClusterConfig
from swallow_train.mcore.config import CheckpointConfig, OptimConfig, TrainConfig
from swallow_train.metrics.config import LoggingConfig
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import Layout, ParallelConfig, validate_layout


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


@dataclass(kw_only=True)
class TrainRecipe:
    """What CPT and SFT share: the megatron-core loop's sections. Stages add `data`."""

    model: ModelConfig
    cluster: ClusterConfig
    train: TrainConfig
    optim: OptimConfig
    checkpoint: CheckpointConfig
    run: RunConfig = field(default_factory=RunConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    init: InitConfig = field(default_factory=InitConfig)

    def sequences_per_step(self) -> int | None:
        """Sequences per optimizer step, if known before the data is opened."""
        return self.train.global_batch_size

    def layout(self) -> Layout:
        """The validated layout for the cluster's world size (LayoutError names the fix)."""
        self.model.validate()
        return validate_layout(
            self.model,
            self.parallel,
            world_size=self.cluster.world_size,
            global_batch_size=self.sequences_per_step(),
            micro_batch_size=self.train.micro_batch_size,
            seq_length=self.train.seq_length,
        )
