"""`train.fp8`: Transformer Engine FP8 matmuls as megatron-core's TransformerConfig fields, and
the refusals that would otherwise surface as a TE error deep inside the first step.

    swallow-train cpt model=qwen3_8b cluster=abci3 train.fp8=tensorwise     # Hopper (H100/H200)
    swallow-train cpt model=qwen3_8b cluster=... train.fp8=mxfp8            # Blackwell only

Only the matmuls run in FP8: parameters stay bf16 (no `fp8_param`), main parameters, gradients
and Adam state fp32, so the HF export is the same bf16 export as without FP8. What changes in a
checkpoint is each TE module's `_extra_state` (README: FP8).
"""

from __future__ import annotations

from typing import Any

import torch

from swallow_train.errors import SwallowError
from swallow_train.mcore.config import Fp8Recipe, Precision
from swallow_train.parallel import MoeDispatcher, ParallelConfig, Recompute

MIN_CAPABILITY = {Fp8Recipe.delayed: (8, 9), Fp8Recipe.tensorwise: (8, 9), Fp8Recipe.mxfp8: (10, 0)}
"""FP8 tensor cores: Ada / Hopper (sm_89 / sm_90) for per-tensor scaling, Blackwell (sm_100)
for MXFP8 block scaling."""


class Fp8Unavailable(SwallowError):
    """`train.fp8` asked for where it cannot run; the message names the field and the fix."""


def fp8_settings(recipe: Fp8Recipe | None, *, precision: Precision, te: bool,
                 capability: tuple[int, int] | None, parallel: ParallelConfig,
                 moe: bool) -> dict[str, Any]:
    """TransformerConfig fields of `train.fp8` ({} when off). `capability`: the GPU's compute
    capability, None without CUDA. Raises Fp8Unavailable naming the field and the fix."""
    if recipe is None:
        return {}
    field = f"train.fp8={recipe.value}"
    if capability is None or not te:
        raise Fp8Unavailable(
            f"{field} needs a GPU with Transformer Engine (FP8 GEMMs are TE kernels); this "
            "process has no CUDA device: set train.fp8=null for CPU runs")
    if precision is not Precision.bf16:
        raise Fp8Unavailable(f"{field} runs on top of bf16 but train.precision resolves to "
                             f"{precision.value}: set train.precision=bf16 (or auto)")
    need = MIN_CAPABILITY[recipe]
    if capability < need:
        gpu = "Blackwell (sm_100)" if recipe is Fp8Recipe.mxfp8 else "Hopper or Ada (sm_89+)"
        fix = ("use train.fp8=tensorwise or delayed on Hopper" if recipe is Fp8Recipe.mxfp8
               else "set train.fp8=null")
        raise Fp8Unavailable(f"{field} needs a {gpu} GPU; this one is sm_{capability[0]}"
                             f"{capability[1]}: {fix}")
    if recipe is Fp8Recipe.delayed and parallel.recompute == Recompute.moe_act:
        raise Fp8Unavailable(f"{field} cannot recompute SwiGLU/norm outputs (megatron-core "
                             "refuses it): use train.fp8=tensorwise or parallel.recompute=moe")
    settings: dict[str, Any] = {
        Fp8Recipe.delayed: dict(fp8="hybrid", fp8_recipe="delayed", fp8_amax_history_len=1024,
                                fp8_amax_compute_algo="max"),
        Fp8Recipe.tensorwise: dict(fp8="hybrid", fp8_recipe="tensorwise",
                                   first_last_layers_bf16=True),
        Fp8Recipe.mxfp8: dict(fp8="e4m3", fp8_recipe="mxfp8"),
    }[recipe]
    if moe and parallel.moe_token_dispatcher == MoeDispatcher.alltoall:
        # each expert's token count padded (zero-weight tokens) to the FP8 GEMM alignment,
        # 16 (MXFP8: 32); megatron-core supports it with alltoall only
        settings["moe_router_padding_for_quantization"] = True
    return settings


def device_capability() -> tuple[int, int] | None:
    """This process's GPU compute capability, None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability())  # type: ignore[return-value]
