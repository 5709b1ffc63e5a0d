"""AWQ W4A16 of the tiny Qwen3-MoE (8 experts, top-2) on CPU: every expert's three Linears are
quantized (saved per expert, as vLLM reads Qwen3-MoE), the routers and lm_head stay bf16, and the
checkpoint reloads with transformers within the dense test's tolerance. Needs llmcompressor.

    /tmp/vq/bin/python -m pytest tests/quant/test_moe.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("llmcompressor")

from swallow_train.quant.awq import quantize_awq
from swallow_train.quant.config import AWQConfig
from tests.quant.helpers import calibration_texts, random_policy
from tests.quant.test_awq import MAX_KL, MIN_COSINE, _tensors, logit_agreement

pytestmark = pytest.mark.slow  # ~35 s of CPU for 2 layers x 8 experts (grid search per expert)


@pytest.fixture(scope="module")
def moe(tmp_path_factory) -> tuple[Path, Path]:
    from swallow_train.tokenizer import load_tokenizer

    root = tmp_path_factory.mktemp("awq_moe")
    source = random_policy(root / "bf16", moe=True)
    tok = load_tokenizer(str(source))
    out = quantize_awq(source, calibration_texts(tok, 4), tok, AWQConfig(n_grid=3),
                       max_seq_length=48, out=root / "w4a16")
    return source, out


def test_every_expert_is_quantized_and_the_routers_stay_bf16(moe) -> None:
    tensors = _tensors(moe[1])
    config = json.loads((moe[1] / "config.json").read_text())["quantization_config"]
    for layer in range(2):
        for expert in range(8):
            for proj in ("gate_proj", "up_proj", "down_proj"):
                name = f"model.layers.{layer}.mlp.experts.{expert}.{proj}"
                assert tensors[f"{name}.weight_packed"] == "I32", name
                assert tensors[f"{name}.weight_scale"] == "BF16", name
        gate = f"model.layers.{layer}.mlp.gate"
        assert tensors[f"{gate}.weight"] == "BF16" and f"{gate}.weight_packed" not in tensors
        assert gate in config["ignore"]
    assert tensors["lm_head.weight"] == "BF16" and "lm_head" in config["ignore"]


def test_reloads_with_transformers_and_logits_stay_close(moe) -> None:
    from transformers import AutoTokenizer

    source, out = moe
    kl, cosine = logit_agreement(source, out, AutoTokenizer.from_pretrained(source))
    assert 0.0 < kl < MAX_KL, kl
    assert cosine >= MIN_COSINE, cosine
