"""torch_dist checkpoints of the megatron-core loop: model, optimizer, scheduler, data position and
RNG, loadable at another TP/PP/EP layout (everything but the RNG reshards).

On disk (Megatron-LM's convention, so its tools and slime read it too):
    checkpoints/iter_0000020/          dist_checkpointing directory; model under "model"
    checkpoints/latest_checkpointed_iteration.txt
Writing is crash-safe through `swallow_train.checkpoint_files.CheckpointDir`.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject

from swallow_train.checkpoint_files import (
    CheckpointDir,
    CheckpointError,
    verify_checksums,
)
from swallow_train.parallel import Layout

OPTIM_METADATA = {"distrib_optim_sharding_type": "fully_reshardable"}


@dataclass
class TrainState:
    """What the loop needs besides tensors to continue exactly where it stopped."""

    step: int = 0
    consumed_samples: int = 0
    layout: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


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

    from swallow_train.signals import die_with_parent

    if _WRITERS_TIED or not hasattr(filesystem_async, "_results_queue"):
        return
    if filesystem_async._results_queue is None:
        manager = SyncManager(ctx=multiprocessing.get_context("spawn"))
        manager.start(initializer=die_with_parent, initargs=(os.getpid(),))
        filesystem_async._results_queue = manager.Queue()
        _WRITER_MANAGER = manager
    util.register_after_fork(filesystem_async, lambda _module: die_with_parent())
    _WRITERS_TIED = True


def _rank0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _all_ok(ok: bool) -> bool:
    """True on every rank only if `ok` on every rank."""
    if not dist.is_initialized():
        return ok
    flag = torch.tensor([0 if ok else 1], dtype=torch.int32)
    dist.all_reduce(flag)
    return int(flag.item()) == 0


def unwrap(chunk: torch.nn.Module) -> torch.nn.Module:
    """The GPTModel inside DDP / Float16Module wrappers (they share its parameters)."""
    while hasattr(chunk, "module"):
        chunk = chunk.module
    return chunk


def _model_state(chunks) -> dict[str, Any]:
    chunks = [unwrap(c) for c in chunks]
    if len(chunks) == 1:
        return {"model": chunks[0].sharded_state_dict()}
    return {f"model{i}": chunk.sharded_state_dict() for i, chunk in enumerate(chunks)}


def _rng_object() -> ShardedObject:
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


def _restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


class MegatronCheckpointer:
    def __init__(self, root: Path, keep_last: int) -> None:
        self.dir = CheckpointDir(root, keep_last)

    def latest_step(self) -> int | None:
        return self.dir.latest_step()

    def save(self, chunks, optimizer, scheduler, state: TrainState) -> Path:
        """Collective. The previous checkpoint stays valid until this one is complete."""
        tie_writers_to_this_process()
        tmp = self.dir.root / f".tmp_iter_{state.step:07d}"
        if _rank0():
            tmp = self.dir.begin(state.step)
        _barrier()
        model_sd = _model_state(chunks)
        sharded = {
            **model_sd,
            "optimizer": optimizer.sharded_state_dict(model_sd, metadata=OPTIM_METADATA),
            "opt_param_scheduler": scheduler.state_dict(),
            "train_state": asdict(state),
            "rng_state": _rng_object(),
        }
        error: BaseException | None = None
        try:
            dist_checkpointing.save(sharded, str(tmp))
        except Exception as exc:  # full disk, permissions, I/O errors
            error = exc
        if not _all_ok(error is None):
            if _rank0():
                self.dir.abort(tmp)
            raise CheckpointError(
                f"writing checkpoint step {state.step} to {tmp} failed ({error!r}); the previous "
                f"checkpoint (step {self.dir.latest_step()}) and its marker are intact"
            ) from error
        final = self.dir.path(state.step)
        if _rank0():
            self.dir.commit(state.step, tmp)
        _barrier()
        return final

    def load(
        self,
        chunks,
        optimizer,
        scheduler,
        layout: Layout,
        *,
        step: int | None = None,
        root: Path | None = None,
        load_optimizer: bool = True,
    ) -> TrainState:
        """Restore everything saved at `step` (default: the latest). Collective."""
        ckpts = CheckpointDir(root, 0) if root is not None else self.dir
        step = ckpts.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint under {ckpts.root}")
        path = ckpts.path(step)
        problem = None
        if _rank0():
            try:
                verify_checksums(path)
            except CheckpointError as exc:
                problem = exc
        if not _all_ok(problem is None):
            raise problem or CheckpointError(f"{path}: failed verification on rank 0")
        common = dist_checkpointing.load_common_state_dict(str(path))
        saved = TrainState(**common["train_state"])
        same_layout = saved.layout == asdict(layout)
        model_sd = _model_state(chunks)
        request: dict[str, Any] = dict(model_sd)
        if load_optimizer:
            for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
                if hasattr(opt, "_init_optimizer_states_with_dummy_values"):
                    opt._init_optimizer_states_with_dummy_values()
            request["optimizer"] = optimizer.sharded_state_dict(
                model_sd, is_loading=True, metadata=OPTIM_METADATA
            )
        if same_layout:
            request["rng_state"] = _rng_object()
        loaded = dist_checkpointing.load(request, str(path))
        for key in model_sd:
            index = 0 if key == "model" else int(key.removeprefix("model"))
            unwrap(chunks[index]).load_state_dict(loaded[key])
        if load_optimizer:
            optimizer.load_state_dict(loaded["optimizer"])
            scheduler.load_state_dict(common["opt_param_scheduler"])
        else:  # fp32 main copies of the (bf16) params must follow the loaded weights
            optimizer.reload_model_params()
        if same_layout:
            _restore_rng(loaded["rng_state"])
        return saved
