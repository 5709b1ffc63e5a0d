"""safetensors files: a streaming, deterministic writer and a slice reader over a checkpoint.

The writer streams each tensor's bytes straight from the tensor's memory to the file (no
intermediate `bytes` copy, unlike `safetensors.torch.save_file`), casting the next tensor in a
second thread while the current one is written. The same tensors always give the same bytes:
header fields in a fixed order, no timestamps.

    plan = plan_shards(sizes, max_shard_bytes=5 * 2**30)
    write_safetensors(path, [(name, tensor), ...], torch.bfloat16)
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from swallow_train.convert.transforms import ConversionError

SAFETENSORS_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


def shard_name(index: int, count: int) -> str:
    return f"model-{index + 1:05d}-of-{count:05d}.safetensors"


def plan_shards(sizes: Sequence[tuple[str, int]], max_shard_bytes: int) -> list[list[str]]:
    """Greedy, order-preserving split of (name, bytes) into shards of at most `max_shard_bytes`
    (a tensor larger than that gets a shard of its own)."""
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes={max_shard_bytes} must be > 0")
    shards: list[list[str]] = [[]]
    used = 0
    for name, size in sizes:
        if shards[-1] and used + size > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += size
    return shards if shards[0] else []


def _header(tensors: Sequence[tuple[str, torch.Tensor]], dtype: torch.dtype) -> bytes:
    fields: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, tensor in tensors:
        size = tensor.numel() * dtype.itemsize
        fields[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(fields, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw


def _as_bytes(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return tensor.detach().to(device="cpu", dtype=dtype).contiguous().reshape(-1).view(torch.uint8)


def write_safetensors(path: Path, tensors: Sequence[tuple[str, torch.Tensor]], dtype: torch.dtype,
                      on_bytes: Callable[[int], object] | None = None) -> None:
    """Write `tensors` (in this order), cast to `dtype`, to `path` and fsync it."""
    if dtype not in SAFETENSORS_DTYPES:
        raise ValueError(f"dtype {dtype} has no safetensors name")
    with open(path, "wb") as f, ThreadPoolExecutor(1) as pool:
        f.write(_header(tensors, dtype))
        pending = pool.submit(_as_bytes, tensors[0][1], dtype) if tensors else None
        for i in range(len(tensors)):
            data = pending.result()  # type: ignore[union-attr]
            if i + 1 < len(tensors):
                pending = pool.submit(_as_bytes, tensors[i + 1][1], dtype)
            f.write(memoryview(data.numpy()))
            if on_bytes is not None:
                on_bytes(data.numel())
        f.flush()
        os.fsync(f.fileno())


class SafetensorsSource:
    """The tensors of an HF checkpoint directory (`model.safetensors` or shards + index), read
    lazily and in slices: `shape(name)`, `read(name, dim, start, stop)` (a `TensorSource`)."""

    def __init__(self, path: str | os.PathLike[str]):
        from safetensors import safe_open

        self.path = Path(path)
        index = self.path / INDEX_NAME
        if index.is_file():
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        elif (self.path / SINGLE_NAME).is_file():
            with safe_open(self.path / SINGLE_NAME, framework="pt") as f:
                weight_map = dict.fromkeys(f.keys(), SINGLE_NAME)
        else:
            raise ConversionError(
                f"{self.path} holds no {INDEX_NAME} and no {SINGLE_NAME}: not a safetensors HF "
                "checkpoint (re-save it with transformers' save_pretrained)"
            )
        self.weight_map = weight_map
        self._open = safe_open
        self._files: dict[str, Any] = {}

    def names(self) -> list[str]:
        return list(self.weight_map)

    def _file(self, name: str) -> Any:
        if name not in self.weight_map:
            raise ConversionError(f"tensor {name} is missing from the checkpoint {self.path}")
        file = self.weight_map[name]
        if file not in self._files:
            if not (self.path / file).is_file():
                raise ConversionError(f"{self.path / file} (holding {name}) does not exist")
            self._files[file] = self._open(self.path / file, framework="pt")
        return self._files[file]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._file(name).get_slice(name).get_shape())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: self.shape(name) for name in self.weight_map}

    def read(self, name: str, dim: int | None = None, start: int = 0, stop: int = 0
             ) -> torch.Tensor:
        f = self._file(name)
        if dim is None:
            return f.get_tensor(name)
        part = f.get_slice(name)
        return part[start:stop] if dim == 0 else part[:, start:stop]
