"""CPU stand-ins for what megatron-core asks of CUDA: the TorchFunctionMode that sends
`device="cuda"` to the CPU, and streams/events that do nothing (CPU work is synchronous). Used by
the patch table `cpu_patches.py`; installed by `cpu_runtime.py`.

    with CudaToCpuMode():
        torch.zeros(2, device="cuda").device   # device(type='cpu')
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode


class CudaToCpuMode(TorchFunctionMode):
    """Rewrites explicit requests for CUDA memory (`device="cuda"`, `.cuda()`, `.to("cuda")`) to
    the CPU, and makes `Tensor.type()` name the CUDA type that megatron's optimizers assert
    (`clip_grads`, `DistributedOptimizer`). Calls that do not ask for CUDA pass through."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return name if ".cuda." in name else name.replace("torch.", "torch.cuda.", 1)
        if _is_cuda(kwargs.get("device")):
            kwargs = {**kwargs, "device": "cpu"}
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda(args[1]):
            args = (args[0], "cpu", *args[2:])
        return func(*args, **kwargs)


def _is_cuda(device: object) -> bool:
    if isinstance(device, str):
        return device.startswith("cuda")
    if isinstance(device, torch.device):
        return device.type == "cuda"
    return False


class NullEvent:
    """`torch.cuda.Event` on CPU: every operation is already complete."""

    def record(self, *_a: object, **_k: object) -> None: ...
    def wait(self, *_a: object, **_k: object) -> None: ...
    def synchronize(self) -> None: ...
    def query(self) -> bool:
        return True


class NullStream:
    """`torch.cuda.Stream` on CPU: every operation is already synchronous."""

    def __init__(self, *_a: object, **_k: object) -> None: ...
    def wait_stream(self, *_a: object, **_k: object) -> None: ...
    def wait_event(self, *_a: object, **_k: object) -> None: ...
    def record_event(self, *_a: object, **_k: object) -> NullEvent:
        return NullEvent()
    def synchronize(self) -> None: ...
    def __eq__(self, other: object) -> bool:
        return isinstance(other, NullStream)
    def __hash__(self) -> int:
        return 0
