"""torch_dist checkpoints of the megatron-core loop: model, optimizer, scheduler, data position and
RNG, loadable at another TP/PP/EP layout (everything but the RNG reshards).

    ckpt = MegatronCheckpointer(stage_dir / "checkpoints", recipe.checkpoint)
    ckpt.save(chunks, optimizer, scheduler, state)          # async: returns while files write
    ckpt.poll()                                             # every step: publish a finished save
    state = ckpt.load(chunks, optimizer, scheduler, layout)

On disk (Megatron-LM's convention, so its tools and slime read it too):
    checkpoints/iter_0000020/          dist_checkpointing directory; model under "model"
    checkpoints/latest_checkpointed_iteration.txt
Every rank writes its share (megatron's fully parallel strategy over the DP x CP group), in a
background process when `checkpoint.async_save`; once every rank's files are written, each rank
hashes the files it wrote (xxh3-128), rank 0 merges the manifest, renames the directory and only
then moves the marker (`swallow_train.checkpoint_files.CheckpointDir`). Loading verifies the
manifest the same way, spread over the ranks.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from megatron.core import dist_checkpointing, parallel_state
from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue
from megatron.core.dist_checkpointing.strategies.fully_parallel import (
    FullyParallelLoadStrategyWrapper,
    FullyParallelSaveStrategyWrapper,
)
from megatron.core.dist_checkpointing.strategies.torch import (
    TorchDistLoadShardedStrategy,
    TorchDistSaveShardedStrategy,
)
from torch.distributed.checkpoint.api import CheckpointException

from swallow_train import collectives
from swallow_train.checkpoint_files import (
    CheckpointDir,
    CheckpointError,
    checkpoint_files,
    hash_entries,
    owner_rank,
    verify_checksums,
    write_manifest,
)
from swallow_train.lifecycle import say
from swallow_train.mcore.checkpoint_state import (
    TrainState,
    load_model_state,
    local_bytes,
    model_parallel_changed,
    model_state,
    restore_rng,
    rng_object,
    tie_writers_to_this_process,
)
from swallow_train.mcore.config import CheckpointConfig, OptimFormat
from swallow_train.parallel import Layout

__all__ = ["MegatronCheckpointer", "TrainState"]
SAVE_ERRORS = (Exception, CheckpointException)  # torch's CheckpointException is a BaseException


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def _dp_group():
    return parallel_state.get_data_parallel_group(with_context_parallel=True)


class MegatronCheckpointer:
    def __init__(self, root: Path, cfg: CheckpointConfig) -> None:
        self.dir = CheckpointDir(root, cfg.keep_last)
        self.cfg = cfg
        self.queue = AsyncCallsQueue()
        self.pending: tuple[int, Path, int] | None = None  # step, tmp dir, bytes estimate

    def latest_step(self) -> int | None:
        return self.dir.latest_step()

    # -- save --------------------------------------------------------------------------------
    def save(self, chunks, optimizer, scheduler, state: TrainState, *, final: bool = False,
             blocking: bool = False) -> None:
        """Collective. Starts writing checkpoint `state.step`; returns at once with
        `checkpoint.async_save` (unless `blocking` or `final`). The previous checkpoint stays
        the latest until this one is complete and verified."""
        self.wait()  # one save in flight at a time
        tie_writers_to_this_process()
        tmp = None
        if collectives.rank() == 0:
            tmp = self.dir.begin(state.step)
        tmp = Path(collectives.broadcast_object(str(tmp) if tmp else None))
        fmt = OptimFormat.fully_reshardable if final else self.cfg.optim_format
        model_sd = model_state(chunks)
        sharded = {
            **model_sd,
            "optimizer": optimizer.sharded_state_dict(
                model_sd, metadata={"distrib_optim_sharding_type": fmt.value}),
            "opt_param_scheduler": scheduler.state_dict(),
            "train_state": asdict(state),
            "rng_state": rng_object(),
        }
        needed = int(collectives.sum_floats([local_bytes(sharded)])[0])
        strategy = FullyParallelSaveStrategyWrapper(
            TorchDistSaveShardedStrategy("torch_dist", 1), _dp_group())
        use_async = self.cfg.async_save and not (final or blocking)
        request, error = None, None
        try:
            request = dist_checkpointing.save(
                sharded, str(tmp), strategy, async_sharded_save=use_async,
                content_metadata={"distrib_optim_sharding_type": fmt.value})
        except SAVE_ERRORS as exc:  # full disk, permissions, I/O errors
            error = exc
        self.pending = (state.step, tmp, needed)
        errors = collectives.all_gather_objects(None if error is None else repr(error))
        if any(errors):
            self._fail("; ".join(f"rank {r}: {e}" for r, e in enumerate(errors) if e))
        if request is None:
            self._publish()
        else:
            request.finalize_fns.append(self._publish)
            self.queue.schedule_async_request(request)

    def poll(self) -> None:
        """Collective, cheap: publish the background save if its files are all written."""
        self._finalize(blocking=False)

    def wait(self) -> None:
        """Collective: block until the background save (if any) is published."""
        self._finalize(blocking=True)

    def _finalize(self, *, blocking: bool) -> None:
        if not self.queue.get_num_unfinalized_calls():
            return
        try:
            self.queue.maybe_finalize_async_calls(blocking=blocking)
        except CheckpointError:
            raise
        except SAVE_ERRORS as exc:  # raised on every rank by megatron's finalize
            self._fail(repr(exc))

    def _publish(self) -> None:
        """Every file is written: each rank hashes its own, rank 0 merges, renames, moves the
        marker. Runs on every rank (a finalize step of megatron's async queue, or inline)."""
        assert self.pending is not None
        step, tmp, _ = self.pending
        world, rank = collectives.world_size(), collectives.rank()
        entries, problem = {}, None
        try:
            mine = [rel for rel in checkpoint_files(tmp) if owner_rank(rel, world) == rank]
            entries = hash_entries(tmp, mine)
        except OSError as exc:
            problem = f"rank {rank}: {exc}"
        gathered = collectives.all_gather_objects((entries, problem))
        problems = [p for _, p in gathered if p]
        if not problems and rank == 0:
            try:
                write_manifest(tmp, {k: v for e, _ in gathered for k, v in e.items()})
                self.dir.commit(step, tmp)
            except (OSError, CheckpointError) as exc:
                problems.append(str(exc))
        problems = collectives.broadcast_object(problems)
        if problems:
            self._fail("; ".join(problems))
        self.pending = None

    def _fail(self, error: str) -> None:
        """Every rank: remove the partial directory, raise a CheckpointError with the fix."""
        step, tmp, needed = self.pending or (-1, self.dir.root, 0)
        self.pending = None
        if collectives.rank() == 0 and tmp != self.dir.root:
            self.dir.abort(tmp)
        collectives.barrier()
        free = shutil.disk_usage(self.dir.root).free if self.dir.root.exists() else 0
        raise CheckpointError(
            f"writing checkpoint step {step} to {tmp} failed ({error}); the partial directory "
            f"was removed and the previous checkpoint (step {self.dir.latest_step()}) and its "
            f"marker are intact. The checkpoint needs up to {_gb(needed)}, {_gb(free)} are free "
            f"on the filesystem of {self.dir.root}: free space (or lower "
            "checkpoint.keep_last), then rerun the same command to resume") from None

    # -- load --------------------------------------------------------------------------------
    def _verified_step(self, ckpts: CheckpointDir) -> int:
        """The latest step, verified (spread over the ranks); with `checkpoint.fallback`, the
        newest step that verifies."""
        step = ckpts.latest_step()
        if step is None:
            raise CheckpointError(f"no checkpoint under {ckpts.root}")
        candidates = [step] + ([s for s in reversed(ckpts.steps()) if s < step]
                               if self.cfg.fallback else [])
        for candidate in candidates:
            path = ckpts.path(candidate)
            try:
                verify_checksums(path, rank=collectives.rank(), world=collectives.world_size())
                problem = None
            except CheckpointError as exc:
                problem = str(exc)
            problems = [p for p in collectives.all_gather_objects(problem) if p]
            if not problems:
                if candidate != step:
                    self._set_aside(ckpts, step, candidate)
                return candidate
            if not self.cfg.fallback:
                raise CheckpointError(f"{problems[0]}; {ckpts.repair_advice(candidate)}")
            say(f"!!! CHECKPOINT {path} FAILED VERIFICATION: {problems[0]}; "
                 "checkpoint.fallback=true: trying the next older checkpoint")
        raise CheckpointError(f"no checkpoint under {ckpts.root} verifies; delete them and the "
                              "marker to start the stage again from its init")

    def _set_aside(self, ckpts: CheckpointDir, bad: int, good: int) -> None:
        if collectives.rank() == 0:
            for step in [s for s in ckpts.steps() if s > good]:
                ckpts.path(step).rename(ckpts.root / f".corrupt_{ckpts.path(step).name}")
            ckpts.point_marker(good)
        collectives.barrier()
        say(f"!!! RESUMING FROM OLDER CHECKPOINT step {good} (step {bad} and later failed "
             f"verification; kept as {ckpts.root}/.corrupt_iter_*)")

    def load(self, chunks, optimizer, scheduler, layout: Layout, *,
             root: Path | None = None) -> TrainState:
        """Restore everything of the latest (verified) checkpoint. Collective."""
        ckpts = CheckpointDir(root, 0) if root is not None else self.dir
        path = ckpts.path(self._verified_step(ckpts))
        common = dist_checkpointing.load_common_state_dict(str(path))
        meta = dist_checkpointing.load_content_metadata(preloaded_state_dict=common) or {}
        fmt = meta.get("distrib_optim_sharding_type", OptimFormat.fully_reshardable.value)
        saved = TrainState(**common["train_state"])
        changed = model_parallel_changed(saved.layout, asdict(layout))
        if fmt == OptimFormat.dp_reshardable.value and changed:
            raise CheckpointError(
                f"{path} holds its optimizer state as dp_reshardable (a periodic save), which "
                f"loads only at its own model-parallel layout ({', '.join(changed)}): resume "
                "at the saved layout, or finish the stage there (the final save is fully "
                "reshardable), or rerun at the saved layout with "
                "checkpoint.optim_format=fully_reshardable to write one that is")
        same_layout = saved.layout == asdict(layout)
        model_sd = model_state(chunks)
        for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
            if hasattr(opt, "_init_optimizer_states_with_dummy_values"):
                opt._init_optimizer_states_with_dummy_values()
        request: dict[str, Any] = {**model_sd, "optimizer": optimizer.sharded_state_dict(
            model_sd, is_loading=True, metadata={"distrib_optim_sharding_type": fmt})}
        if same_layout:
            request["rng_state"] = rng_object()
        strategy = FullyParallelLoadStrategyWrapper(TorchDistLoadShardedStrategy(), _dp_group())
        loaded = dist_checkpointing.load(request, str(path), strategy)
        load_model_state(chunks, loaded, model_sd)
        with torch.no_grad():  # dp_reshardable copies into fp32 main params that are leaves
            optimizer.load_state_dict(loaded["optimizer"])
        scheduler.load_state_dict(common["opt_param_scheduler"])
        if same_layout:
            restore_rng(loaded["rng_state"])
        return saved
