"""NCCL all-reduce bus bandwidth across this node's GPUs, measured as nccl-tests does:
one process per GPU, `size` bytes all-reduced `iters` times after a warm-up;
algbw = size / time per all-reduce, busbw = algbw x 2 (n - 1) / n.

    swallow-train doctor cpt cluster=abci3 --min-busbw 100
"""

from __future__ import annotations

import time

import torch

from swallow_train.check_report import Check, failed, passed, skipped
from swallow_train.spawn import spawn

SIZE_BYTES = 256 * 2**20
WARMUP, ITERS = 5, 20


def bus_bandwidth(size_bytes: int, seconds: float, nranks: int) -> tuple[float, float]:
    """(algbw, busbw) in GB/s (1e9 bytes) of one all-reduce of `size_bytes` over `nranks`."""
    algbw = size_bytes / seconds / 1e9
    return algbw, algbw * 2 * (nranks - 1) / nranks


def _worker(rank: int, *, size_bytes: int, warmup: int, iters: int) -> float:
    """Seconds per all-reduce on this rank (NCCL on its GPU)."""
    import torch.distributed as dist

    from swallow_train import collectives

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", device_id=torch.device("cuda", rank))
    tensor = torch.ones(size_bytes // 4, dtype=torch.float32, device="cuda")
    for _ in range(warmup):
        collectives.all_reduce_tensor(tensor)
    torch.cuda.synchronize()
    collectives.barrier()
    start = time.perf_counter()
    for _ in range(iters):
        collectives.all_reduce_tensor(tensor)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def nccl_bus_bandwidth(min_busbw: float, timeout: float = 300) -> Check:
    name = "NCCL all-reduce busbw"
    if not torch.cuda.is_available():
        return skipped(name, "no CUDA device")
    n = torch.cuda.device_count()
    if n < 2:
        return skipped(name, f"{n} GPU on this node: nothing to all-reduce across")
    times = spawn(_worker, nprocs=n, timeout=timeout, size_bytes=SIZE_BYTES, warmup=WARMUP,
                  iters=ITERS)
    algbw, busbw = bus_bandwidth(SIZE_BYTES, max(times), n)
    detail = (f"{n} GPUs, {SIZE_BYTES >> 20} MiB fp32, algbw {algbw:.1f} GB/s "
              f"(nccl-tests' formula)")
    if busbw < min_busbw:
        return failed(name, f"{detail}: below --min-busbw {min_busbw:g} GB/s; NVLink/NVSwitch "
                      "may be down or NCCL fell back to PCIe/sockets (rerun with NCCL_DEBUG=INFO)",
                      value=round(busbw, 1), unit="GB/s", algbw=algbw, seconds=times)
    return passed(name, round(busbw, 1), "GB/s", detail, algbw=algbw, seconds=times)
