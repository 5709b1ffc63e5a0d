"""Typed sections of the megatron-core training loop (CPT and SFT) and `TrainRecipe`, the root
those stages share. Part of the core schema (swallow_train/layers.py): no megatron import here,
configs must compose on machines without megatron-core.

    swallow-train cpt train.train_steps=100 optim.lr=3e-4 checkpoint.save_interval=20
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from swallow_train.cluster import ClusterConfig
from swallow_train.metrics.config import LoggingConfig
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import Layout, ParallelConfig, validate_layout
from swallow_train.run import InitConfig, RunConfig


class Precision(Enum):
    auto = "auto"
    """bf16 with CUDA, fp32 on CPU."""
    bf16 = "bf16"
    fp32 = "fp32"


class Fp8Recipe(Enum):
    """Transformer Engine FP8 matmuls on top of bf16 (Megatron-Bridge's presets). Weights,
    fp32 main parameters, gradients and the HF export stay as without FP8 (README: FP8)."""

    delayed = "delayed"
    """Hopper: per-tensor scales from a 1024-step amax history (max); e4m3 forward, e5m2
    gradients (`hybrid`)."""
    tensorwise = "tensorwise"
    """Hopper: per-tensor current scaling; `hybrid`; first and last layer stay bf16."""
    mxfp8 = "mxfp8"
    """Blackwell only: one e8m0 scale per 32 elements, e4m3 everywhere."""


class OptimFormat(Enum):
    dp_reshardable = "dp_reshardable"
    """Each rank writes its own optimizer shard, no gather: fully parallel, fast. Reloads at
    another DP size only (TP/PP/CP/EP fixed)."""
    fully_reshardable = "fully_reshardable"
    """Gathered per model-parallel shard on DP rank 0: loads at any layout, slower, host
    memory of one TP shard's optimizer state on that rank."""


class DecayStyle(Enum):
    cosine = "cosine"
    linear = "linear"
    constant = "constant"


@dataclass(kw_only=True)
class OptimConfig:
    """AdamW with warmup then decay to `min_lr` (megatron's OptimizerParamScheduler)."""

    lr: float
    min_lr: float
    warmup_steps: int
    decay_style: DecayStyle = DecayStyle.cosine
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0


@dataclass(kw_only=True)
class TrainConfig:
    global_batch_size: int
    """Sequences per optimizer step (CPT: 256 x 32,768 tokens). SFT: conversations per step
    (64); its packed sequences per step are derived from the packing statistics."""
    seq_length: int
    train_steps: int
    """Optimizer steps; 0 means one epoch of the data (SFT)."""
    micro_batch_size: int = 1
    seed: int = 1234
    precision: Precision = Precision.auto
    fp8: Fp8Recipe | None = None
    """FP8 matmuls with this recipe; None: off. Needs a GPU with Transformer Engine and bf16
    (refused on CPU, at start)."""
    log_interval: int = 1
    eval_interval: int = 0
    """Evaluate on the validation split every N steps; 0: never."""
    eval_steps: int = 1
    exit_after: int | None = None
    """Checkpoint and exit (rc 0, stage not done) once this many steps are done; the same
    command then resumes (Megatron's --exit-interval, for time-limited jobs). None: never."""
    deterministic: bool | None = None
    """Deterministic kernels. None (the default): on for CPU, where it gives bit-exact resume
    (tests/mcore/test_training.py), off on GPU, where it would pick TE's slower deterministic
    attention backward and NaN-fill every allocation, yet still not make NCCL reductions
    bit-exact across a resume. True on GPU: same numbers for the same layout and world size
    run to run, at a speed cost."""

    def resolved_deterministic(self, cuda: bool) -> bool:
        return (not cuda) if self.deterministic is None else self.deterministic


@dataclass(kw_only=True)
class CheckpointConfig:
    save_interval: int
    """Save every N steps (and on SIGTERM/SIGUSR1, and at the end)."""
    keep_last: int = 3
    """Keep the last K checkpoints; older ones are deleted after a newer one is complete."""
    save_on_signal: bool = True
    export_hf: bool = True
    """Write the Hugging Face export (`hf/`) when training ends."""
    load: str | None = None
    """Resume from this checkpoint directory instead of the run's own (e.g. another layout)."""
    async_save: bool = True
    """Periodic saves write in the background while training goes on (megatron's async
    torch_dist save); the marker moves only once every rank's files are written and hashed.
    Saves on a stop signal and at the end are waited for."""
    optim_format: OptimFormat = OptimFormat.dp_reshardable
    """Distributed-optimizer format of periodic saves. The final save is always
    fully_reshardable, so a finished stage loads at any layout."""
    fallback: bool = False
    """If the latest checkpoint fails verification, resume from the newest one that verifies
    (the bad one is set aside as `.corrupt_iter_*`) instead of stopping."""


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

    def recipe_errors(self) -> list[str]:
        """Settings this stage cannot honour, checked at compose time (`config.check`)."""
        errors: list[str] = []
        if self.optim.min_lr > self.optim.lr:
            errors.append(f"optim.min_lr={self.optim.min_lr!r} is above optim.lr="
                          f"{self.optim.lr!r}: the schedule decays from lr to min_lr; set "
                          "optim.min_lr <= optim.lr")
        return errors

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
