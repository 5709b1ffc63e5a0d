"""Tokens/s, tokens/s/GPU, MFU and memory of a training step.

MFU = model FLOPs per token (ModelConfig.flops_per_token: 6 x active matmul weights + causal
attention) x tokens/s/GPU / peak. The peak is the dense bf16 peak of an H100/H200 SXM,
989 TFLOP/s; on a CPU there is no meaningful peak and MFU is not reported.
"""

from __future__ import annotations

import os
import time

import torch

H100_BF16_PEAK_FLOPS = 989e12


def memory_gib() -> float:
    """Peak GPU memory allocated on this device, or this process's resident memory on CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 2**30


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

    def stop(self, tokens: int) -> dict[str, float]:
        """Metrics of the step that processed `tokens` tokens (all ranks together)."""
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
        if self.peak_flops:
            metrics["tflops_per_gpu"] = per_gpu * self.flops_per_token / 1e12
            metrics["mfu"] = per_gpu * self.flops_per_token / self.peak_flops
        return metrics
