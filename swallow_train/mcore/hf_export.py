"""Export megatron-core GPTModel chunks (any TP/PP/EP/ETP/VPP layout) or a torch_dist checkpoint
on disk to a Hugging Face directory that `transformers` and vLLM load as it is.

    export_to_hf(chunks, model_cfg, "runs/tiny/cpt/hf", tokenizer="bundled:qwen3")  # every rank
    export_checkpoint("runs/tiny/cpt/checkpoints", model_cfg, "out/hf", tokenizer="bundled:qwen3")
    swallow-train export --checkpoint runs/tiny/cpt/checkpoints --model tiny_dense --out out/hf

Collective: TP/ETP shards are all-gathered and merged, then one owner rank per tensor (TP/ETP
rank 0 of the first DP replica) sends it to rank 0, which writes with `write_hf_checkpoint`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from megatron.core import dist_checkpointing
from torch.distributed.checkpoint.api import CheckpointException

from swallow_train import collectives
from swallow_train.convert.checkpoint_dir import resolve_iteration_dir
from swallow_train.convert.hf_io import write_hf_checkpoint
from swallow_train.convert.hf_meta import read_start_record
from swallow_train.convert.names import TPSplit
from swallow_train.convert.transforms import ConversionError, to_hf, tp_merge
from swallow_train.mcore import cpu_runtime
from swallow_train.mcore.config import Precision
from swallow_train.mcore.distributed import init_parallel_state
from swallow_train.mcore.hf_import import local_params
from swallow_train.mcore.model import build_model, transformer_config
from swallow_train.mcore.torch_dist_read import (
    CommonState,
    check_args_match,
    load_model_tensors,
    read_common,
    sharded_metadata,
)
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import ParallelConfig, validate_layout


def gather_hf_state_dict(chunks: list[torch.nn.Module], model: ModelConfig,
                         *, progress: bool = True) -> dict[str, torch.Tensor]:
    """Collective: every HF tensor of the model on rank 0 (CPU, parameter dtype); {} elsewhere.
    Rank 0 holds the whole model in host memory (what `write_hf_checkpoint` takes)."""
    owned: dict[str, torch.Tensor] = {}
    for p in local_params(chunks, model):
        tensor = p.param.detach()
        if p.tp_size > 1 and p.match.rule.tp is not TPSplit.replicated:
            tensor = tp_merge(collectives.all_gather_tensor(tensor, p.tp_group), p.match.rule.tp)
        if p.owner and p.match.rule.export:  # host memory: GPUs may still hold optimizer state
            hf = [t.cpu() for t in to_hf(p.match.rule, tensor, model)]
            owned.update(zip(p.match.hf_names(), hf, strict=True))
    return _collect_on_rank0(owned, progress)


def _collect_on_rank0(owned: dict[str, torch.Tensor], progress: bool) -> dict[str, torch.Tensor]:
    from tqdm import tqdm

    rank, world = collectives.rank(), collectives.world_size()
    out = dict(owned) if rank == 0 else {}
    if world == 1:
        return out
    metas = collectives.all_gather_objects([(n, tuple(t.shape), t.dtype)
                                            for n, t in owned.items()])
    total = sum(len(m) for m in metas[1:])
    bar = tqdm(total=total, desc="gathering", disable=not progress or rank != 0, leave=False)
    for src in range(1, world):
        for name, shape, dtype in metas[src]:
            if rank == src:
                collectives.send_tensor(owned[name], dst=0)
            elif rank == 0:
                if name in out:
                    raise RuntimeError(f"tensor {name} is owned by rank {src} and another rank")
                out[name] = collectives.recv_tensor(shape, dtype, src=src)
                bar.update()
    bar.close()
    return out


def export_to_hf(chunks: list[torch.nn.Module], model: ModelConfig, out_dir: str | os.PathLike[str],
                 *, tokenizer: str, dtype: torch.dtype = torch.bfloat16,
                 progress: bool = True) -> Path | None:
    """Collective: gather the model and write it on rank 0. Rank 0 gets the path, others None;
    every rank raises if the write failed."""
    state_dict = gather_hf_state_dict(chunks, model, progress=progress)
    rank = collectives.rank()
    path: Path | None = None
    error: Exception | None = None
    failure: list[str | None] = [None]
    if rank == 0:
        try:
            # bos/eos/generation_config of the stage's start checkpoint, recorded beside hf/
            start = read_start_record(Path(out_dir).parent)
            path = write_hf_checkpoint(state_dict, model, out_dir, tokenizer=tokenizer,
                                       dtype=dtype, progress=progress, start=start)
        except Exception as exc:  # re-raised below, after the other ranks have heard of it
            error, failure[0] = exc, f"{exc.__class__.__name__}: {exc}"
    failure = [collectives.broadcast_object(failure[0], src=0)]
    if error is not None:
        raise error
    if failure[0] is not None:
        raise ConversionError(f"rank 0 could not write {out_dir}: {failure[0]}")
    return path


MODEL_KEY_PREFIXES = ("embedding.", "decoder.", "output_layer.")
CHECKPOINT_KEY_ALIASES = {
    "decoder.layers.mlp.linear_fc1.layer_norm_weight": "decoder.layers.pre_mlp_layernorm.weight",
}
"""Sharded keys that the two megatron-core specs write under different names: the local spec
renames every pre-MLP norm to TE's fused dense name, the TE spec keeps `pre_mlp_layernorm` in MoE
layers (so a GPU-trained MoE checkpoint loads into the CPU local spec only through this alias)."""
_ALIASES = {**CHECKPOINT_KEY_ALIASES, **{v: k for k, v in CHECKPOINT_KEY_ALIASES.items()}}


def checkpoint_precision(metadata: dict[str, Any]) -> Precision:
    """bf16 when the checkpoint's model weights are bf16 (the training default), else fp32."""
    embedding = metadata.get("embedding.word_embeddings.weight")
    bf16 = embedding is not None and embedding.dtype == torch.bfloat16
    return Precision.bf16 if bf16 else Precision.fp32


def _not_this_model(iter_dir: Path, model: ModelConfig, detail: str) -> ConversionError:
    return ConversionError(f"{iter_dir} does not hold a model {model.name!r}: {detail}. Pick the "
                           "preset or config.yaml the checkpoint was trained with")


def load_checkpoint_model(chunk: torch.nn.Module, iter_dir: Path, model: ModelConfig,
                          metadata: dict[str, Any], common: CommonState | None = None) -> None:
    """Load only the model of a torch_dist checkpoint (optimizer, scheduler and RNG keys are
    ignored; `common.pt` is never needed, `common` is what the restricted reader found in it).
    Sharded keys are global, so a checkpoint of any TP/PP/EP/VPP layout loads; every model
    tensor of the checkpoint must be one this model asks for."""
    sharded = chunk.sharded_state_dict(metadata=sharded_metadata(common))
    request = {k: v for k, v in sharded.items()
               if not k.endswith("._extra_state")}  # TE/FP8 metadata: nothing to export
    for item in request.values():
        key = getattr(item, "key", None)
        if key is not None and key not in metadata and _ALIASES.get(key) in metadata:
            item.key = _ALIASES[key]
    asked = {getattr(v, "key", None) for v in request.values()}
    extra = sorted(k for k in metadata if k.startswith(MODEL_KEY_PREFIXES) and k not in asked)
    if extra:
        raise _not_this_model(iter_dir, model, f"it has tensors the model lacks: {extra[:4]}")
    try:
        loaded = load_model_tensors(request, iter_dir)  # without common.pt
    except (Exception, CheckpointException) as exc:  # DCP's exception is a BaseException
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise _not_this_model(iter_dir, model, f"{exc.__class__.__name__}: "
                              f"{lines[-1] if lines else ''}") from exc
    missing, _ = chunk.load_state_dict(loaded["model"], strict=False)
    missing = [m for m in missing if not m.endswith("_extra_state")]
    if missing:
        raise _not_this_model(iter_dir, model, f"it lacks {missing[:4]}")


@cpu_runtime.active()  # CPU: megatron's CUDA calls to the CPU, for this export only
def export_checkpoint(ckpt_dir: str | os.PathLike[str], model: ModelConfig,
                      out_dir: str | os.PathLike[str], *, tokenizer: str,
                      iteration: int | None = None, dtype: torch.dtype = torch.bfloat16,
                      progress: bool = True) -> Path:
    """Export a torch_dist checkpoint from disk in this single process (TP1 PP1 EP1, world size
    1), without the training job: `{ckpt_dir}/iter_{step:07d}` of `iteration` or the latest."""
    iter_dir = resolve_iteration_dir(ckpt_dir, iteration)
    if collectives.world_size() != 1:
        raise ConversionError("export_checkpoint runs in one process; use export_to_hf inside "
                              "a multi-process job")
    model.validate()
    parallel = ParallelConfig()
    layout = validate_layout(model, parallel, world_size=1, global_batch_size=1,
                             micro_batch_size=1, seq_length=1)
    init_parallel_state(layout, seed=0)
    common = read_common(iter_dir)  # Megatron-LM's args (slime's classes stubbed), or None
    check_args_match(common, model, iter_dir)
    metadata = dist_checkpointing.load_tensors_metadata(str(iter_dir))
    config = transformer_config(model, parallel, layout, precision=checkpoint_precision(metadata))
    config.use_cpu_initialization = True  # the whole model in host memory, even on a GPU node
    config.perform_initialization = False  # every weight comes from the checkpoint
    chunks = build_model(model, config)
    load_checkpoint_model(chunks[0], iter_dir, model, metadata, common)
    path = export_to_hf(chunks, model, out_dir, tokenizer=tokenizer, dtype=dtype,
                        progress=progress)
    assert path is not None  # world size 1: this is rank 0
    return path
