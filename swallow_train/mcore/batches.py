"""What the training loop asks of a data source, and how a global batch is split over DP ranks.

Step `s` consumes the samples `[s * G, (s + 1) * G)` of the source's (seeded, fixed) order,
G = global batch size; DP rank `r` takes the contiguous `G / DP` of them, in micro-batches. The
micro-batches of a step are thus a pure function of `s`: resuming needs nothing but the step.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from megatron.core import parallel_state

from swallow_train.parallel import Layout

Batch = dict[str, Any]


class BatchSource(Protocol):
    def prepare(self, layout: Layout) -> None:
        """Open / build the datasets (collective; torch.distributed is initialised)."""

    def total_steps(self) -> int:
        """Optimizer steps of the stage."""

    def global_batch_size(self) -> int:
        """Sequences per optimizer step."""

    def train_microbatches(self, step: int) -> list[Batch]:
        """This rank's micro-batches of optimizer step `step` (0-based)."""

    def eval_microbatches(self, index: int) -> list[Batch]:
        """This rank's micro-batches of evaluation batch `index`; [] when there is no eval set."""

    def summary(self) -> dict[str, Any]:
        """A few numbers worth printing and logging (epochs, packing efficiency, ...)."""


@runtime_checkable
class SampleLengths(Protocol):
    """Optional for a BatchSource: a packed source's sample lengths, for an honest MFU."""

    def step_sample_lengths(self, step: int) -> list[int]:
        """Real (non-padding) tokens of every sample of step `step`, over all DP ranks."""


def rank_sample_ranges(step: int, global_batch: int, micro_batch: int) -> list[range]:
    """The sample indices of this DP rank's micro-batches at `step`."""
    dp = parallel_state.get_data_parallel_world_size()
    rank = parallel_state.get_data_parallel_rank()
    per_rank = global_batch // dp
    start = step * global_batch + rank * per_rank
    return [range(start + i, start + i + micro_batch) for i in range(0, per_rank, micro_batch)]


def collate(samples: list[dict[str, np.ndarray]], keys: tuple[str, ...]) -> Batch:
    """Stack numpy samples into torch tensors (on the current device)."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else None
    batch: Batch = {}
    for key in keys:
        array = np.stack([np.asarray(s[key]) for s in samples])
        tensor = torch.from_numpy(array)
        if tensor.dtype in (torch.int32, torch.uint16, torch.int16):
            tensor = tensor.long()
        if device is not None:  # pinned, so the copy overlaps (mcore/prefetch.py's stream)
            tensor = tensor.pin_memory().to(device, non_blocking=True)
        batch[key] = tensor
    return batch
