"""vLLM (the vllm-cpu build, in .venv-serve) loads every stage's export of a tiny pipeline as it
is, takes the model card's sampling defaults from its generation_config.json, renders the same
chat prompt as transformers, and generates greedily exactly the tokens that transformers
generates from the same checkpoint in the same dtype: float32 here, where two logits do not
tie; the bf16 export as it is served is checked by test_server.py.

    make test-serve
"""

from __future__ import annotations

import gc
import math
import os
from pathlib import Path
from typing import Any

import pytest

from tests.serve.helpers import (
    IN_PROCESS,
    MODEL_CARD,
    PROMPT,
    REFERENCE_CALLS,
    chat_prompt_ids,
    install_reference_int4_kernel,
    int4_kernel_missing,
    int4_layers_against_reference,
    off_greedy,
    transformers_greedy,
)

vllm = pytest.importorskip("vllm", reason="vLLM runs in .venv-serve: make test-serve")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the tiny model needs little

STAGES = ("cpt", "sft", "rl")
"""The bf16 exports; the AWQ model of the quantize stage: test_vllm_serves_the_awq_model."""
NEW_TOKENS = 12
SMALL = {"max_model_len": 128, "max_num_batched_tokens": 128}
"""A short context, so that vLLM's warm-up pass computes 128 rows of 151,936 logits, not
thousands (most of the start-up time on CPU)."""


def _llm(hf: Path, dtype: str, **engine: Any) -> Any:
    """vLLM's engine for `hf`, as every test here starts it (eager, seeded, one sequence, a short
    context, the export's generation_config.json); `engine`: more LLM arguments."""
    return vllm.LLM(model=str(hf), dtype=dtype, enforce_eager=True, seed=0, max_num_seqs=1,
                    generation_config="auto", **SMALL, **engine)


def _in_process(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The LLM arguments, and the environment, that run vLLM's engine in this process: where
    an op registered here (`install_reference_int4_kernel`) is the one it calls."""
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return IN_PROCESS


def _greedy_chat(hf: Path, dtype: str, quantization: str | None = None,
                 **engine: Any) -> tuple[list[int], list[int]]:
    """vLLM's NEW_TOKENS greedy tokens for PROMPT from `hf` (its prompt ids, its tokens), after
    checking the engine's quantization, its sampling defaults (the model card's, from
    generation_config.json) and that it renders the chat prompt as transformers does."""
    llm = _llm(hf, dtype, **engine)
    try:
        assert llm.llm_engine.model_config.quantization == quantization
        defaults = llm.get_default_sampling_params()
        assert {k: getattr(defaults, k) for k in MODEL_CARD} == MODEL_CARD
        greedy = vllm.SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True)
        out = llm.chat(PROMPT, greedy, use_tqdm=False)[0]
    finally:
        del llm
        gc.collect()
    prompt_ids = list(out.prompt_token_ids)
    assert prompt_ids == chat_prompt_ids(hf)  # the same chat template
    tokens = list(out.outputs[0].token_ids)
    assert len(tokens) == NEW_TOKENS
    return prompt_ids, tokens


@pytest.mark.parametrize("stage", STAGES)
def test_vllm_generates_what_transformers_generates(tiny_run: Path, stage: str) -> None:
    hf = tiny_run / stage / "hf"
    prompt_ids, tokens = _greedy_chat(hf, "float32")
    assert tokens == transformers_greedy(hf, prompt_ids, NEW_TOKENS, "float32")


def test_vllm_serves_the_awq_model(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quantize stage's compressed-tensors W4A16 checkpoint loads in vLLM as it is (its
    scheme, its packed weights and scales, the lm_head left in bf16) and generates transformers'
    greedy tokens of the same checkpoint reloaded through compressed-tensors (bf16 ties aside).
    Where vllm-cpu has no INT4 matmul (its `cpu_gemm_wna16` is in the AVX512 build only), that
    one op is `reference_gemm_wna16` (plain torch, checked against vLLM's own by the next test
    where vLLM has it), with the engine in this process; everything else is vLLM's."""
    engine = {}
    if int4_kernel_missing():
        install_reference_int4_kernel()
        engine = _in_process(monkeypatch)
    hf = tiny_run / "quantize" / "hf"
    calls = REFERENCE_CALLS[0]
    prompt_ids, tokens = _greedy_chat(hf, "bfloat16", "compressed-tensors", **engine)
    assert off_greedy(hf, prompt_ids, tokens, "bfloat16") == []
    if engine:  # the INT4 layers ran through the reference: 4 per layer and step at least
        assert REFERENCE_CALLS[0] - calls >= 8 * NEW_TOKENS


def test_reference_int4_kernel_equals_vllms(tiny_run: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`reference_gemm_wna16` (what the AWQ test runs on CPUs without vLLM's INT4 kernel) gives
    vLLM's `cpu_gemm_wna16` output, to one bf16 unit in the last place, on every INT4 layer of
    the AWQ model as vLLM loaded it."""
    if int4_kernel_missing():
        pytest.skip("vllm-cpu has no cpu_gemm_wna16 on this CPU to compare with (AVX512 only)")
    llm = _llm(tiny_run / "quantize" / "hf", "bfloat16", **_in_process(monkeypatch))
    try:
        (layers,) = llm.apply_model(int4_layers_against_reference)
    finally:
        del llm
        gc.collect()
    assert len(layers) >= 8, layers  # q/k/v (fused), o, gate/up (fused), down in each layer
    for name, diff, size in layers:  # one bf16 unit in the last place of the largest output
        assert diff <= math.ldexp(1.0, math.frexp(size)[1] - 8), (name, diff, size)
