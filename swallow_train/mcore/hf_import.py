"""Load a Hugging Face Qwen3 / Qwen3-MoE checkpoint into megatron-core GPTModel chunks at any
TP/PP/EP/ETP (and VPP) layout. Every rank reads only its own slices of the safetensors files:
its pipeline stage's layers, its TP rows/columns (QKV by whole query groups), its experts.

    from swallow_train.mcore.hf_import import load_hf_into_model
    load_hf_into_model(chunks, model_cfg, "Qwen/Qwen3-8B-Base")    # or an HF directory
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core.utils import unwrap_model

from swallow_train import collectives
from swallow_train.convert.hf_io import check_hf_shapes, read_hf_config_dict, resolve_hf_path
from swallow_train.convert.names import Experts, Match, NameMap, Spec
from swallow_train.convert.shards import SafetensorsSource
from swallow_train.convert.transforms import ConversionError, global_expert, read_shard
from swallow_train.models.config import ModelConfig

_GROUPED = re.compile(r"\.experts\.linear_fc1\.weight\d+$")


@dataclass(frozen=True)
class LocalParam:
    """One parameter of this rank with its rule at global layer / expert indices."""

    name: str
    param: torch.nn.Parameter
    match: Match
    tp_size: int
    tp_rank: int
    owner: bool
    """The one rank (TP/ETP rank 0, DP/expert-DP rank 0) that exports this tensor."""

    @property
    def tp_group(self) -> dist.ProcessGroup | None:
        if self.match.rule.expert:
            return ps.get_expert_tensor_parallel_group()
        return ps.get_tensor_model_parallel_group()


def detect_spec(chunk: torch.nn.Module) -> tuple[Spec, Experts]:
    """Which megatron name family a built chunk uses (TE fuses the norms into the linears)."""
    names = [n for n, _ in chunk.named_parameters()]
    te = any(n.endswith(".linear_qkv.layer_norm_weight") for n in names)
    grouped = any(_GROUPED.search(n) for n in names)
    return (Spec.te if te else Spec.local), (Experts.grouped if grouped else Experts.sequential)


def local_params(chunks: list[torch.nn.Module], model: ModelConfig) -> list[LocalParam]:
    """Every parameter of this rank's chunks (DDP / Float16Module wrappers are looked through),
    in a fixed order shared by the ranks of a TP / ETP group."""
    tp_size = ps.get_tensor_model_parallel_world_size()
    tp_rank = ps.get_tensor_model_parallel_rank()
    etp_size = ps.get_expert_tensor_parallel_world_size()
    etp_rank = ps.get_expert_tensor_parallel_rank()
    ep_size = ps.get_expert_model_parallel_world_size()
    ep_rank = ps.get_expert_model_parallel_rank()
    dense_owner = tp_rank == 0 and ps.get_data_parallel_rank(with_context_parallel=True) == 0
    expert_owner = model.is_moe and etp_rank == 0 and ps.get_expert_data_parallel_rank() == 0
    out: list[LocalParam] = []
    for chunk in unwrap_model(list(chunks)):
        spec, experts = detect_spec(chunk)
        names = NameMap(model, spec, experts)
        decoder = getattr(chunk, "decoder", None)
        layers = [layer.layer_number - 1 for layer in decoder.layers] if decoder else []
        for name, param in chunk.named_parameters():
            match = names.match(name)
            if match is None:
                raise ConversionError(
                    f"megatron parameter {name} has no HF mapping in the {spec.value} spec "
                    f"table ({experts.value} experts): see swallow_train/convert/names.py")
            layer = None if match.layer is None else layers[match.layer]
            expert = match.expert
            if expert is not None:
                expert = global_expert(expert, ep_rank, model.num_experts // ep_size)
            rule = match.rule
            out.append(LocalParam(
                name=name, param=param, match=Match(rule, layer, expert),
                tp_size=etp_size if rule.expert else tp_size,
                tp_rank=etp_rank if rule.expert else tp_rank,
                owner=expert_owner if rule.expert else dense_owner))
    return out


def check_config(path: Path, model: ModelConfig) -> None:
    """The HF config.json must agree with the model (`ModelConfig.check_compatible`), also on
    what the tensor shapes cannot show."""
    config = path / "config.json"
    if not config.is_file():
        return
    wrong = [d.message(config) for d in model.check_compatible(read_hf_config_dict(path))]
    if wrong:
        raise ConversionError("HF checkpoint and model config disagree (pick the matching "
                              "model preset, or set the field as given):\n  " + "\n  ".join(wrong))


def resolve_everywhere(hf_path: str | os.PathLike[str]) -> Path:
    """`resolve_hf_path` on rank 0 first (one hub download), then on the other ranks."""
    if collectives.world_size() == 1:
        return resolve_hf_path(hf_path)
    status: str | None = None
    path: Path | None = None
    if collectives.rank() == 0:
        try:
            path = resolve_hf_path(hf_path)
        except ConversionError as exc:
            status = str(exc)
    status = collectives.broadcast_object(status, src=0)
    if status is not None:
        raise ConversionError(status)
    return path if path is not None else resolve_hf_path(hf_path)


def load_hf_into_model(chunks: list[torch.nn.Module], model: ModelConfig,
                       hf_path: str | os.PathLike[str], *, progress: bool = True) -> None:
    """Copy an HF checkpoint (directory or hub id) into this rank's parameters, in place."""
    from tqdm import tqdm

    path = resolve_everywhere(hf_path)
    source = SafetensorsSource(path)
    check_config(path, model)
    check_hf_shapes(source.shapes(), model, f"HF checkpoint {path}")
    params = local_params(chunks, model)
    show = progress and collectives.rank() == 0
    with torch.no_grad():
        for p in tqdm(params, desc=f"loading {path.name}", disable=not show, leave=False):
            hf_names = p.match.hf_names()
            tensor = read_shard(source, p.match.rule, hf_names, model, p.tp_size, p.tp_rank)
            if tuple(tensor.shape) != tuple(p.param.shape):
                raise ConversionError(
                    f"megatron parameter {p.name} has shape {tuple(p.param.shape)} but "
                    f"{', '.join(hf_names)} give {tuple(tensor.shape)} at TP rank {p.tp_rank} of "
                    f"{p.tp_size}: the model config does not match the checkpoint")
            p.param.copy_(tensor)
