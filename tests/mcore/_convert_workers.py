"""Workers of tests/mcore/test_hf_import_export.py: import an HF checkpoint at a TP/PP/EP layout,
compare logits with `transformers`, export, and save a torch_dist checkpoint (run in 2 gloo
processes by `tests.distributed.run_distributed`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from swallow_train.mcore import cpu_runtime
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import ParallelConfig, validate_layout

SEQ = 16


def build(model: ModelConfig, parallel: ParallelConfig, world_size: int,
          precision: str = "fp32") -> list[torch.nn.Module]:
    """Parallel state + megatron chunks of `model` at `parallel` (local spec on CPU)."""
    from swallow_train.mcore.config import Precision
    from swallow_train.mcore.distributed import init_parallel_state
    from swallow_train.mcore.model import build_model, transformer_config

    layout = validate_layout(model, parallel, world_size=world_size, global_batch_size=world_size,
                             micro_batch_size=1, seq_length=SEQ)
    init_parallel_state(layout, seed=0)
    config = transformer_config(model, parallel, layout, precision=Precision(precision))
    return build_model(model, config)


def logits(chunks: list[torch.nn.Module], ids: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary logits [b, s, v] of a PP=1 model (TP shards of the vocab gathered)."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    chunks[0].eval()
    positions = torch.arange(ids.shape[1])[None].expand_as(ids)
    with torch.no_grad(), cpu_runtime.active():  # CPU: mask None asks megatron for CUDA
        out = chunks[0](ids, positions, None)
    size = ps.get_tensor_model_parallel_world_size()
    if size == 1:
        return out
    parts = [torch.empty_like(out) for _ in range(size)]
    dist.all_gather(parts, out.contiguous(), group=ps.get_tensor_model_parallel_group())
    return torch.cat(parts, dim=-1)


def save_torch_dist(chunks: list[torch.nn.Module], root: Path, step: int,
                    rename: dict[str, str] | None = None) -> None:
    """A Megatron-LM style checkpoint: `{root}/iter_{step:07d}` with the model under "model"
    ("model0", "model1", ... with VPP) beside optimizer-like keys, and the latest-step file.
    `rename` changes sharded keys (to write what another layer spec would)."""
    import torch.distributed as dist
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    iter_dir = root / f"iter_{step:07d}"
    if dist.get_rank() == 0:
        iter_dir.mkdir(parents=True)
    dist.barrier()
    keys = ["model"] if len(chunks) == 1 else [f"model{i}" for i in range(len(chunks))]
    state: dict[str, Any] = {k: c.sharded_state_dict() for k, c in zip(keys, chunks, strict=True)}
    for item in (v for model_sd in list(state.values()) for v in model_sd.values()):
        if getattr(item, "key", None) in (rename or {}):
            item.key = rename[item.key]
    state["optimizer"] = {"fake_exp_avg": ShardedTensor.from_rank_offsets(
        "optimizer.fake_exp_avg", torch.ones(4), replica_id=dist.get_rank())}
    state["iteration"] = step
    dist_checkpointing.save(state, str(iter_dir))
    if dist.get_rank() == 0:
        (root / "latest_checkpointed_iteration.txt").write_text(f"{step}\n")
    dist.barrier()


def _tied_output(chunks: list[torch.nn.Module], job: dict[str, Any]) -> bool | None:
    """With tied embeddings and PP > 1 the last stage holds its own output layer: is it the HF
    embedding? (None where this rank has no such copy.)"""
    from swallow_train.convert.hf_io import read_hf_state_dict

    layer = getattr(chunks[-1], "output_layer", None)
    if not job["model"]["tie_word_embeddings"] or layer is None or layer.weight is None:
        return None
    if getattr(chunks[-1], "pre_process", False):  # PP=1: the weight is the embedding itself
        return None
    embedding = read_hf_state_dict(job["hf_dir"])["model.embed_tokens.weight"]
    return torch.equal(layer.weight.detach(), embedding)


@cpu_runtime.active()  # CPU: megatron's CUDA calls to the CPU
def layouts_worker(rank: int, *, jobs: list[dict[str, Any]], out_root: str) -> dict[str, Any]:
    """For each job (a model, its HF dir and layouts): import, logits vs the reference, export
    (fp32) and, when asked, save a torch_dist checkpoint."""
    from swallow_train.mcore.hf_export import export_to_hf
    from swallow_train.mcore.hf_import import load_hf_into_model

    results: dict[str, Any] = {}
    for job in jobs:
        model = ModelConfig(**job["model"])
        for case in job["cases"]:
            parallel = ParallelConfig(**case["parallel"])
            chunks = build(model, parallel, world_size=2)
            load_hf_into_model(chunks, model, job["hf_dir"], progress=False)
            diff = None
            if parallel.pp == 1:
                diff = (logits(chunks, job["ids"]) - job["reference_logits"]).abs().max().item()
            out = export_to_hf(chunks, model, Path(out_root) / case["name"],
                               tokenizer="bundled:qwen3", dtype=torch.float32, progress=False)
            if case.get("save_checkpoint"):
                save_torch_dist(chunks, Path(out_root) / f"{case['name']}-ckpt", step=7)
            results[case["name"]] = {"logits_diff": diff, "export": None if out is None
                                     else str(out), "tied_output": _tied_output(chunks, job)}
    return results
