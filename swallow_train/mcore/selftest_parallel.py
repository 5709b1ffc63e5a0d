"""Doctor's parity self-tests: the tiny model's per-token losses at TP=2 (sequence parallel) and
at CP=2, in two processes (NCCL on two GPUs; TP=2 also over gloo on CPU), against TP=1 in this
process, from the same HF weights.

    swallow-train doctor cpt model=qwen3_8b cluster=abci3      # the recipe runs TP=2
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from swallow_train.check_report import Check, failed, passed, skipped
from swallow_train.mcore import cpu_runtime
from swallow_train.mcore.config import Precision
from swallow_train.mcore.selftest import Tiny, build, device, load, quietly, rel_error, run
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import ParallelConfig
from swallow_train.spawn import spawn

TOL = {"cpu": 1e-5, "cuda": 2e-2}
"""Relative error of the per-token losses: fp32 reorderings on CPU, bf16 on GPU (CP needs TE's
bf16 attention); a wrong split or a missing reduction gives far more."""
LAYOUTS = {"tp": ParallelConfig(tp=2, sequence_parallel=True), "cp": ParallelConfig(cp=2)}


@cpu_runtime.active()  # a spawned process: CPU, megatron's CUDA calls to the CPU
def parity_worker(rank: int, *, model: dict[str, Any], weights: str, tokens: torch.Tensor,
                  labels: torch.Tensor, parallel: dict[str, Any], precision: str
                  ) -> dict[str, torch.Tensor]:
    """This rank's per-token losses and the sequence positions they belong to."""
    from megatron.core.utils import get_batch_on_this_cp_rank

    cfg = ModelConfig(**model)
    tiny = Tiny(model=cfg, weights=Path(weights), tokens=tokens, labels=labels)
    chunk = load(build(cfg, ParallelConfig(**parallel), world_size=2,
                       precision=Precision(precision)), tiny)
    pos = torch.arange(tokens.shape[1])[None].expand_as(tokens)
    batch = {"tokens": tokens.to(device()), "labels": labels.to(device()),
             "position_ids": pos.to(device())}
    if parallel["cp"] > 1:
        batch = get_batch_on_this_cp_rank(batch)
    losses = run(chunk, batch["tokens"], labels=batch["labels"],
                 position_ids=batch["position_ids"])
    return {"losses": losses, "index": batch["position_ids"][0].cpu()}


@cpu_runtime.active()  # CPU: megatron's CUDA calls to the CPU, for this check only
def parity(tiny: Tiny, key: str) -> Check:
    name = f"self-test {key.upper()}=2 parity"
    gpu = device().type == "cuda"
    precision = Precision.bf16 if gpu else Precision.fp32
    reference = run(load(build(tiny.model, ParallelConfig(), precision=precision), tiny),
                    tiny.tokens, labels=tiny.labels)
    parts = spawn(parity_worker, nprocs=2, timeout=600, model=asdict(tiny.model),
                  weights=str(tiny.weights), tokens=tiny.tokens, labels=tiny.labels,
                  parallel=asdict(LAYOUTS[key]), precision=precision.value)
    losses = torch.full_like(reference, float("nan"))
    for part in parts:
        losses[:, part["index"]] = part["losses"]
    error = rel_error(losses, reference) if not losses.isnan().any() else float("nan")
    tol = TOL[device().type]
    backend = "NCCL" if gpu else "gloo"
    detail = (f"per-token losses vs TP=1, 2 ranks over {backend}, {precision.value}: relative "
              f"error (tolerance {tol:g})")
    if not error <= tol:
        return failed(name, f"{detail}: the {key.upper()}=2 model computes something else; "
                      "check megatron-core / Transformer Engine / NCCL versions",
                      value=error, unit="rel")
    return passed(name, error, "rel", detail)


def parity_rows(tiny: Tiny, parallel: ParallelConfig, *, gpus: int, te: bool) -> list[Check]:
    """TP=2 when the recipe runs TP > 1, CP=2 when it runs CP > 1, where this machine can."""
    rows: list[Check] = []
    for key in ("tp", "cp"):
        name = f"self-test {key.upper()}=2 parity"
        size = getattr(parallel, key)
        if size == 1:
            rows.append(skipped(name, f"the recipe runs parallel.{key}=1"))
        elif gpus == 1:
            rows.append(skipped(name, "one GPU on this node: needs 2"))
        elif gpus and not te:
            rows.append(skipped(name, "needs transformer-engine (see its line)"))
        elif not gpus and key == "cp":
            rows.append(skipped(name, "context parallelism runs in Transformer Engine's "
                                "attention: GPU only"))
        else:
            rows += quietly(name, lambda key=key: parity(tiny, key))
    return rows
