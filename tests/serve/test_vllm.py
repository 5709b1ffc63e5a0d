"""vLLM (the vllm-cpu build, in .venv-serve) loads every stage's export of a tiny pipeline as it
is, takes the model card's sampling defaults from its generation_config.json, renders the same
chat prompt as transformers, and generates greedily exactly the tokens that transformers
generates from the same checkpoint in the same dtype: float32 here, where two logits do not
tie; the bf16 export as it is served is checked by test_server.py.

    make test-serve
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from tests.serve.helpers import (
    MODEL_CARD,
    PROMPT,
    chat_prompt_ids,
    int4_kernel_missing,
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


def _greedy_chat(hf: Path, dtype: str,
                 quantization: str | None = None) -> tuple[list[int], list[int]]:
    """vLLM's NEW_TOKENS greedy tokens for PROMPT from `hf` (its prompt ids, its tokens), after
    checking the engine's quantization, its sampling defaults (the model card's, from
    generation_config.json) and that it renders the chat prompt as transformers does."""
    llm = vllm.LLM(model=str(hf), dtype=dtype, enforce_eager=True, seed=0, max_num_seqs=1,
                   generation_config="auto", **SMALL)
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


def test_vllm_serves_the_awq_model(tiny_run: Path) -> None:
    """The quantize stage's compressed-tensors W4A16 checkpoint loads in vLLM as it is (its INT4
    kernel, bf16 activations) and generates transformers' greedy tokens of the same checkpoint
    reloaded through compressed-tensors (bf16 ties aside)."""
    missing = int4_kernel_missing()
    if missing:
        pytest.skip(missing)
    hf = tiny_run / "quantize" / "hf"
    prompt_ids, tokens = _greedy_chat(hf, "bfloat16", quantization="compressed-tensors")
    assert off_greedy(hf, prompt_ids, tokens, "bfloat16") == []
