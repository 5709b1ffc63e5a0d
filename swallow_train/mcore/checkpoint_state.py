"""What a megatron checkpoint holds besides the files: the loop's TrainState, this rank's RNG
states, the model's sharded state dict, and the tie that keeps megatron's writer processes from
outliving a SIGKILLed trainer. Used by `swallow_train/mcore/checkpoint.py`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from megatron.core import parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject


@dataclass
class TrainState:
    """What the loop needs besides tensors to continue exactly where it stopped."""

    step: int = 0
    consumed_samples: int = 0
    layout: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


MODEL_PARALLEL_KEYS = ("tp", "pp", "vpp", "cp", "ep", "etp")
"""Layout fields a `dp_reshardable` optimizer state is tied to (only DP may change)."""


def model_parallel_changed(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return [f"{k} {saved.get(k)} -> {now.get(k)}" for k in MODEL_PARALLEL_KEYS
            if saved.get(k) != now.get(k)]


_WRITER_MANAGER: Any = None
"""Our Manager serving megatron's write-results queue (kept referenced: it lives as long as we)."""
_WRITERS_TIED = False


def tie_writers_to_this_process() -> None:
    """Make megatron's checkpoint writer processes die with this process (idempotent).

    torch_dist saves go through `FileSystemWriterAsync`, which forks writer processes per save
    and collects their results through a queue served by a spawned `multiprocessing.Manager`.
    After a SIGKILL of the trainer both would live on: the Manager forever (holding the
    trainer's stdout), a writer long enough to write into the next run's checkpoint. Here the
    Manager is started by us with a die-with-parent initializer, and forked writers get the
    same request through multiprocessing's after-fork hook."""
    global _WRITER_MANAGER, _WRITERS_TIED
    import multiprocessing
    import os
    from multiprocessing import util
    from multiprocessing.managers import SyncManager

    from megatron.core.dist_checkpointing.strategies import filesystem_async

    from swallow_train.mcore.versions import TESTED, MegatronVersionError, require_megatron_core
    from swallow_train.signals import die_with_parent

    if _WRITERS_TIED:
        return
    what = "checkpoint_state.tie_writers_to_this_process"
    require_megatron_core(what, TESTED)  # it swaps a private global of filesystem_async
    if not hasattr(filesystem_async, "_results_queue"):
        raise MegatronVersionError(f"{what}: megatron-core's filesystem_async has no "
                                   "_results_queue any more: update it to the new writer queue")
    if filesystem_async._results_queue is None:
        manager = SyncManager(ctx=multiprocessing.get_context("spawn"))
        manager.start(initializer=die_with_parent, initargs=(os.getpid(),))
        filesystem_async._results_queue = manager.Queue()
        _WRITER_MANAGER = manager
    util.register_after_fork(filesystem_async, lambda _module: die_with_parent())
    _WRITERS_TIED = True


def unwrap(chunk: torch.nn.Module) -> torch.nn.Module:
    """The GPTModel inside DDP / Float16Module wrappers (they share its parameters)."""
    while hasattr(chunk, "module"):
        chunk = chunk.module
    return chunk


def model_state(chunks) -> dict[str, Any]:
    chunks = [unwrap(c) for c in chunks]
    if len(chunks) == 1:
        return {"model": chunks[0].sharded_state_dict()}
    return {f"model{i}": chunk.sharded_state_dict() for i, chunk in enumerate(chunks)}


def load_model_state(chunks, loaded: dict[str, Any], model_sd: dict[str, Any]) -> None:
    for key in model_sd:
        index = 0 if key == "model" else int(key.removeprefix("model"))
        unwrap(chunks[index]).load_state_dict(loaded[key])


def rng_object() -> ShardedObject:
    """This rank's RNG states, one slot per (PP, TP, DP x CP) rank."""
    state = {
        "random": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    ps = parallel_state
    shape = (
        ps.get_pipeline_model_parallel_world_size(),
        ps.get_tensor_model_parallel_world_size(),
        ps.get_data_parallel_world_size(with_context_parallel=True),
    )
    offset = (
        ps.get_pipeline_model_parallel_rank(),
        ps.get_tensor_model_parallel_rank(),
        ps.get_data_parallel_rank(with_context_parallel=True),
    )
    return ShardedObject("rng_state", state, shape, offset, replica_id=0)


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def local_bytes(sharded: dict[str, Any]) -> int:
    """Bytes of the tensors this rank holds in a sharded state dict (a checkpoint-size
    estimate for error messages: replicas are counted, so it is an upper bound)."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    total = 0
    for value in nested_values(sharded):
        if isinstance(value, ShardedTensor) and value.data is not None:
            total += value.data.numel() * value.data.element_size()
    return total
