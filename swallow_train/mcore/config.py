"""Typed config of the shared megatron-core training loop (CPT and SFT). No megatron import here:
configs must compose on machines without megatron-core.

    swallow-train cpt train.train_steps=100 optim.lr=3e-4 checkpoint.save_interval=20
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Precision(Enum):
    auto = "auto"
    """bf16 with CUDA, fp32 on CPU."""
    bf16 = "bf16"
    fp32 = "fp32"


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
    log_interval: int = 1
    eval_interval: int = 0
    """Evaluate on the validation split every N steps; 0: never."""
    eval_steps: int = 1
    deterministic: bool = True
    """Bit-reproducible runs (exact resume); costs a little speed on GPU."""


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
