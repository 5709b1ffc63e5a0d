"""Tokens/s, tokens/s/GPU, MFU and memory of a training step.

MFU = model FLOPs per token (ModelConfig.flops_per_token: 6 x active matmul weights + causal
attention) x tokens/s/GPU / peak. The peak is the dense bf16 peak of an H100/H200 SXM,
989 TFLOP/s; on a CPU there is no meaningful peak and MFU is not reported.

Packed SFT (`StepWork`): only real tokens count, and attention is charged per sample, sum of
L_i^2 over the samples instead of (pack length)^2 per pack, as for THD batches: a sample of
L tokens costs L x flops_per_token(L) = 6 L x dense weights + 6 x layers x q_dim x L^2.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from swallow_train.models.config import ModelConfig

H100_BF16_PEAK_FLOPS = 989e12


def memory_gib() -> float:
    """Peak GPU memory allocated on this device, or this process's resident memory on CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 2**30


@dataclass(frozen=True)
class StepWork:
    """What a step really computed: its non-padding tokens and their model FLOPs."""

    tokens: int
    flops: float


def sample_work(model: ModelConfig, lengths: Iterable[int]) -> StepWork:
    """The work of samples of these real lengths, each attending only within itself."""
    lengths = [int(n) for n in lengths if n > 0]
    return StepWork(tokens=sum(lengths),
                    flops=float(sum(n * model.flops_per_token(n) for n in lengths)))


def real_lengths(tokens: np.ndarray, seq_lens: np.ndarray, pad_id: int) -> list[int]:
    """Non-padding tokens of each segment of one pack (padding-only segments dropped)."""
    ends = np.cumsum(seq_lens)
    real = np.add.reduceat((np.asarray(tokens) != pad_id).astype(np.int64), ends - seq_lens)
    return [int(n) for n in real if n > 0]


class Throughput:
    def __init__(self, flops_per_token: float, world_size: int,
                 peak_flops: float = H100_BF16_PEAK_FLOPS) -> None:
        self.flops_per_token = flops_per_token
        self.world_size = world_size
        self.peak_flops = peak_flops if torch.cuda.is_available() else None
        self._start = time.perf_counter()

    def start(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def stop(self, tokens: int, work: StepWork | None = None) -> dict[str, float]:
        """Metrics of the step that processed `tokens` tokens (all ranks together). With
        `work` (packed SFT), MFU and TFLOP/s count only its real tokens and FLOPs."""
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = max(time.perf_counter() - self._start, 1e-9)
        per_gpu = tokens / seconds / self.world_size
        metrics = {
            "step_time_s": seconds,
            "tokens_per_s": tokens / seconds,
            "tokens_per_s_per_gpu": per_gpu,
            "memory_gib": memory_gib(),
        }
        flops = tokens * self.flops_per_token if work is None else work.flops
        if work is not None:
            metrics["real_tokens_per_s_per_gpu"] = work.tokens / seconds / self.world_size
        flops_per_gpu = flops / seconds / self.world_size
        metrics["tflops_per_gpu"] = flops_per_gpu / 1e12
        if self.peak_flops:
            metrics["mfu"] = flops_per_gpu / self.peak_flops
        return metrics
