"""Process group and megatron-core parallel state for one training process.

Works under `torchrun`/`mpirun` (reads RANK/WORLD_SIZE or OMPI_COMM_WORLD_*), and as a plain
single process (world size 1 with an in-process store). gloo without CUDA, NCCL with it.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from swallow_train import collectives
from swallow_train.mcore import cpu_runtime
from swallow_train.parallel import Layout, LayoutError


def _env_from_mpirun() -> None:
    """Open MPI sets OMPI_COMM_WORLD_*; torch.distributed's env:// wants RANK/WORLD_SIZE."""
    mapping = {
        "RANK": "OMPI_COMM_WORLD_RANK",
        "WORLD_SIZE": "OMPI_COMM_WORLD_SIZE",
        "LOCAL_RANK": "OMPI_COMM_WORLD_LOCAL_RANK",
    }
    for ours, ompi in mapping.items():
        if ours not in os.environ and ompi in os.environ:
            os.environ[ours] = os.environ[ompi]


def init_process_group(timeout_minutes: int = 30) -> None:
    """Initialise torch.distributed once (idempotent)."""
    cpu_runtime.install()  # process-wide attribute patches; the mode: cpu_runtime.active()
    if dist.is_initialized():
        return
    _env_from_mpirun()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    timeout = timedelta(minutes=timeout_minutes)
    if "RANK" not in os.environ:
        # not started by a launcher: a world of one with an in-process store (no port to
        # bind, so an inherited MASTER_PORT or a concurrent run cannot collide with it); the
        # environment is left alone, so processes this one starts are not mistaken for ranks
        if torch.cuda.is_available():
            torch.cuda.set_device(0)
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1,
                                timeout=timeout)
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timeout)


def init_parallel_state(layout: Layout, seed: int) -> None:
    """Process group + megatron parallel groups + the seeded model-parallel RNG tracker."""
    from megatron.core import parallel_state, tensor_parallel

    init_process_group()
    if dist.get_world_size() != layout.world_size:
        raise LayoutError(
            f"this job runs {dist.get_world_size()} processes but the layout was validated for "
            f"{layout.world_size} (cluster.nodes x cluster.gpus_per_node): launch with "
            "matching --nproc-per-node/--nnodes or change cluster.*"
        )
    if parallel_state.model_parallel_is_initialized():
        destroy_model_parallel()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=layout.tp,
        pipeline_model_parallel_size=layout.pp,
        virtual_pipeline_model_parallel_size=layout.vpp,
        context_parallel_size=layout.cp,
        expert_model_parallel_size=layout.ep,
        expert_tensor_parallel_size=layout.etp,
    )
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def destroy_model_parallel() -> None:
    """megatron's `destroy_model_parallel` forgets its groups but does not destroy them: each
    re-initialisation in one process (the export after training, the tests) left ~30 process
    groups alive, each with its gloo threads (a test session had grown to 2,000 threads). Every
    group but the world is destroyed here, on every rank alike."""
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        world = dist.group.WORLD
        for group in list(dist.distributed_c10d._world.pg_map):
            if group is not world:
                dist.destroy_process_group(group)


def live_groups() -> int:
    """How many process groups this process holds (the world included); 0 before init."""
    return len(dist.distributed_c10d._world.pg_map) if dist.is_initialized() else 0


def shutdown() -> None:
    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized():
        destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()


def is_rank0() -> bool:
    return collectives.rank() == 0


barrier = collectives.barrier
