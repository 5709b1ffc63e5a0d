"""The few real tensor transforms between HF and megatron-core layouts, as small functions.

* QKV: megatron's `linear_qkv` rows are grouped per query group g: that group's q heads, then
  its k head, then its v head (`qkv_merge` / `qkv_split`).
* Gated MLP: `linear_fc1` is `[gate; up]` (`gate_up_merge` / `gate_up_split`).
* Tensor parallelism: `tp_split` / `tp_merge` by `TPSplit` (a QKV shard holds whole groups; a
  fc1 shard holds `[gate_i; up_i]`).
* Expert parallelism: local expert `l` of EP rank `r` is global `r * E / EP + l`.

`to_hf` / `from_hf` apply one rule to whole (TP-merged) tensors; `read_shard` builds one TP
rank's megatron tensor from slices of the HF tensors only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from swallow_train.convert.names import NameMap, Rule, TPSplit, Transform
from swallow_train.errors import SwallowError
from swallow_train.models.config import ModelConfig


class ConversionError(SwallowError, ValueError):
    """A checkpoint that does not fit the model; the message names the tensor."""


def qkv_merge(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups: int) -> torch.Tensor:
    """HF q [heads*d, h], k/v [groups*d, h] -> megatron [groups*(heads/groups + 2)*d, h]."""
    hidden = q.shape[1]
    parts = (q.reshape(groups, -1, hidden), k.reshape(groups, -1, hidden),
             v.reshape(groups, -1, hidden))
    return torch.cat(parts, dim=1).reshape(-1, hidden)


def qkv_split(qkv: torch.Tensor, heads: int, groups: int, head_dim: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of `qkv_merge` (contiguous copies)."""
    hidden = qkv.shape[1]
    per_group = heads // groups * head_dim
    grouped = qkv.reshape(groups, per_group + 2 * head_dim, hidden)
    q, k, v = grouped.split([per_group, head_dim, head_dim], dim=1)
    return (q.reshape(-1, hidden).contiguous(), k.reshape(-1, hidden).contiguous(),
            v.reshape(-1, hidden).contiguous())


def gate_up_merge(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return torch.cat([gate, up], dim=0)


def gate_up_split(fc1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of the two halves (no copy)."""
    gate, up = fc1.chunk(2, dim=0)
    return gate, up


def shard_range(length: int, size: int, rank: int, what: str = "tensor") -> tuple[int, int]:
    """[start, stop) of rank `rank` out of `size` equal shards of `length`."""
    if length % size:
        raise ConversionError(f"{what}: dimension {length} is not divisible by {size} ranks")
    step = length // size
    return rank * step, (rank + 1) * step


def tp_split(full: torch.Tensor, split: TPSplit, size: int, rank: int) -> torch.Tensor:
    """Rank `rank`'s shard of a whole megatron tensor (QKV: whole groups, contiguous rows)."""
    if split is TPSplit.replicated or size == 1:
        return full
    if split is TPSplit.gate_up:
        return gate_up_merge(*(tp_split(p, TPSplit.rows, size, rank) for p in full.chunk(2)))
    dim = 1 if split is TPSplit.cols else 0
    start, stop = shard_range(full.shape[dim], size, rank)
    return full.narrow(dim, start, stop - start)


def tp_merge(parts: Sequence[torch.Tensor], split: TPSplit) -> torch.Tensor:
    """The whole megatron tensor from every rank's shard, in rank order."""
    if split is TPSplit.replicated or len(parts) == 1:
        return parts[0]
    if split is TPSplit.gate_up:
        halves = [p.chunk(2) for p in parts]
        return torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim=0)
    return torch.cat(list(parts), dim=1 if split is TPSplit.cols else 0)


def global_expert(local: int, ep_rank: int, num_local: int) -> int:
    """EP renumbering: local expert index on an EP rank -> global expert index."""
    return ep_rank * num_local + local


def local_expert(global_index: int, num_local: int) -> tuple[int, int]:
    """(EP rank, local index) that holds global expert `global_index`."""
    return divmod(global_index, num_local)


def to_hf(rule: Rule, full: torch.Tensor, model: ModelConfig) -> list[torch.Tensor]:
    """A whole (TP-merged) megatron tensor -> its HF tensors, in the order of `rule.hf`."""
    if rule.transform is Transform.qkv:
        return list(qkv_split(full, model.num_attention_heads, model.num_key_value_heads,
                              model.head_dim))
    if rule.transform is Transform.gate_up:
        return list(gate_up_split(full))
    return [full]


def from_hf(rule: Rule, tensors: Sequence[torch.Tensor], model: ModelConfig) -> torch.Tensor:
    """The HF tensors of a rule (order of `rule.hf`) -> the whole megatron tensor."""
    if rule.transform is Transform.qkv:
        return qkv_merge(*tensors, groups=model.num_key_value_heads)
    if rule.transform is Transform.gate_up:
        return gate_up_merge(*tensors)
    return tensors[0]


class TensorSource(Protocol):
    """Named HF tensors that can be read in slices (a safetensors checkpoint, a dict)."""

    def shape(self, name: str) -> tuple[int, ...]: ...

    def read(self, name: str, dim: int | None = None, start: int = 0, stop: int = 0
             ) -> torch.Tensor:
        """Rows (dim 0) or columns (dim 1) [start, stop) of tensor `name`; dim None: all."""
        ...


class DictSource:
    """A `TensorSource` over an in-memory state dict."""

    def __init__(self, state_dict: dict[str, torch.Tensor]):
        self.state_dict = state_dict

    def _get(self, name: str) -> torch.Tensor:
        if name not in self.state_dict:
            raise ConversionError(f"tensor {name} is missing from the state dict")
        return self.state_dict[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._get(name).shape)

    def read(self, name: str, dim: int | None = None, start: int = 0, stop: int = 0
             ) -> torch.Tensor:
        tensor = self._get(name)
        return tensor if dim is None else tensor.narrow(dim, start, stop - start)


def read_shard(source: TensorSource, rule: Rule, hf_names: Sequence[str], model: ModelConfig,
               size: int = 1, rank: int = 0) -> torch.Tensor:
    """TP (or ETP) rank `rank`'s megatron tensor of `rule`, reading only its slices."""
    split = rule.tp if size > 1 else TPSplit.replicated
    if split is TPSplit.replicated:
        return from_hf(rule, [source.read(n) for n in hf_names], model)
    if split is TPSplit.qkv:
        groups = model.num_key_value_heads
        g0, g1 = shard_range(groups, size, rank, f"{hf_names[0]} (query groups)")
        q_rows, d = model.num_attention_heads // groups * model.head_dim, model.head_dim
        q = source.read(hf_names[0], 0, g0 * q_rows, g1 * q_rows)
        k, v = (source.read(n, 0, g0 * d, g1 * d) for n in hf_names[1:])
        return qkv_merge(q, k, v, groups=g1 - g0)
    dim = 1 if split is TPSplit.cols else 0
    parts = []
    for name in hf_names:
        start, stop = shard_range(source.shape(name)[dim], size, rank, name)
        parts.append(source.read(name, dim, start, stop))
    return from_hf(rule, parts, model)


def hf_to_mcore(source: TensorSource, names: NameMap) -> dict[str, torch.Tensor]:
    """Every whole (TP 1) megatron tensor of the model, by global megatron name."""
    out: dict[str, torch.Tensor] = {}
    for match in names.instances():
        out[match.mcore_name()] = read_shard(source, match.rule, match.hf_names(), names.model)
    return out


def mcore_to_hf(state_dict: dict[str, torch.Tensor], names: NameMap) -> dict[str, torch.Tensor]:
    """Whole megatron tensors by global name -> HF tensors; a name without a rule is an error."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        match = names.match(name)
        if match is None:
            raise ConversionError(f"megatron tensor {name} has no HF mapping")
        if match.rule.export:
            out.update(zip(match.hf_names(), to_hf(match.rule, tensor, names.model), strict=True))
    return out
