"""The one place that calls `torch.distributed` collectives (tests/test_collectives.py keeps it so).

NCCL takes CUDA tensors only ("No backend type associated with device type cpu"), gloo CPU
tensors only. Every function here builds its tensors on the group's communication device
(`device_for`) and hands plain Python values back, so a caller never holds a tensor on the wrong
device. We keep one NCCL process group (as Megatron-LM does) rather than a `cpu:gloo,cuda:nccl`
pair: megatron-core creates its DP/TP/PP subgroups with the default backend only, so a CPU tensor
on a subgroup would have no backend either way.

    from swallow_train import collectives
    if not collectives.all_true(ok): ...           # every rank agrees
    loss_sum, tokens = collectives.sum_floats([s, n], group=dp_group)

Without an initialised process group each function is the single-process identity.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

Group = Any  # a torch.distributed ProcessGroup, or None for the default (world) group


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if initialized() else 0


def world_size(group: Group = None) -> int:
    return dist.get_world_size(group) if initialized() else 1


def device_for(group: Group = None) -> torch.device:
    """The device the group's backend communicates from: this process's CUDA device for NCCL,
    the CPU for gloo (also for a `cpu:gloo,cuda:nccl` group)."""
    backend = str(dist.get_backend(group)) if initialized() else "gloo"
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier(group: Group = None) -> None:
    if initialized():
        dist.barrier(group=group)


def sum_floats(values: list[float] | torch.Tensor, group: Group = None) -> list[float]:
    """Element-wise float64 sum over the group's ranks (losses, token counts)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().double().cpu().tolist()
    if not initialized():
        return [float(v) for v in values]
    tensor = torch.tensor(values, dtype=torch.float64, device=device_for(group))
    dist.all_reduce(tensor, group=group)
    return tensor.cpu().tolist()


def max_int(value: int, group: Group = None) -> int:
    """The largest `value` of any rank (e.g. a received signal number, 0 for none)."""
    if not initialized():
        return int(value)
    tensor = torch.tensor([int(value)], dtype=torch.int64, device=device_for(group))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=group)
    return int(tensor.item())


def all_true(ok: bool, group: Group = None) -> bool:
    """True on every rank only if `ok` on every rank."""
    return max_int(0 if ok else 1, group) == 0


def broadcast_object(obj: Any, src: int = 0, group: Group = None) -> Any:
    """`obj` of rank `src` on every rank (picklable; small: messages, paths, status)."""
    if not initialized() or world_size(group) == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=group, device=device_for(group))
    return box[0]


def all_gather_objects(obj: Any, group: Group = None) -> list[Any]:
    """Every rank's `obj`, in rank order (picklable; small)."""
    if not initialized() or world_size(group) == 1:
        return [obj]
    out: list[Any] = [None] * world_size(group)
    dist.all_gather_object(out, obj, group=group)
    return out


def all_gather_tensor(tensor: torch.Tensor, group: Group = None) -> list[torch.Tensor]:
    """Every rank's shard of a tensor (data plane: e.g. TP shards of a weight for the export),
    on the group's device; the caller moves the merged result where it needs it."""
    if not initialized() or world_size(group) == 1:
        return [tensor]
    device = device_for(group)
    local = tensor.detach().to(device).contiguous()
    parts = [torch.empty_like(local) for _ in range(world_size(group))]
    dist.all_gather(parts, local, group=group)
    return parts


def send_tensor(tensor: torch.Tensor, dst: int) -> None:
    """Point-to-point send on the default group (from the communication device)."""
    dist.send(tensor.detach().to(device_for()).contiguous(), dst=dst)


def recv_tensor(shape: tuple[int, ...], dtype: torch.dtype, src: int) -> torch.Tensor:
    """Receive a tensor sent by `send_tensor`; returned on the CPU."""
    buffer = torch.empty(shape, dtype=dtype, device=device_for())
    dist.recv(buffer, src=src)
    return buffer.cpu()


def all_reduce_tensor(tensor: torch.Tensor, group: Group = None) -> torch.Tensor:
    """In-place sum of a tensor already on the group's device (data plane: bandwidth probes)."""
    if tensor.device != device_for(group):
        raise ValueError(f"all_reduce_tensor: tensor on {tensor.device}, the group "
                         f"communicates from {device_for(group)}")
    if initialized():
        dist.all_reduce(tensor, group=group)
    return tensor
