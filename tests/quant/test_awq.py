"""AWQ W4A16 of a tiny random-init Qwen3 on CPU: the compressed-tensors checkpoint reloads with
transformers and its logits stay close to the bf16 original; lm_head (and the MoE routers) stay
bf16; the export's tokenizer, chat template and generation config come along; the CPU pinning
workaround is scoped and version-checked. Needs llmcompressor (the /tmp/vq environment).

    /tmp/vq/bin/python -m pytest tests/quant/test_awq.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("llmcompressor")

from swallow_train.quant.awq import no_pin_memory, quantize_awq
from swallow_train.quant.config import AWQConfig
from tests.quant.helpers import calibration_texts, random_policy

LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
MAX_KL = 0.01
"""Tolerance: mean over positions of KL(original || quantized) of the next-token distributions,
against the bf16 original (both run in float32). Measured on tiny_dense: 0.0012."""
MIN_COSINE = 0.9
"""Tolerance: the smallest cosine similarity, over positions, of the centred logit vectors
(151,936 entries). Measured on tiny_dense: 0.962 (relative L2 error 0.21). Top-1 agreement is
no criterion here: a random-init model's logits are nearly flat (std 0.23), so its argmax is a
near-tie that INT4 noise flips (measured 0.52)."""


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> tuple[Path, Path]:
    from swallow_train.tokenizer import load_tokenizer

    root = tmp_path_factory.mktemp("awq")
    source = random_policy(root / "bf16", moe=False)
    tok = load_tokenizer(str(source))
    out = quantize_awq(source, calibration_texts(tok, 8), tok, AWQConfig(n_grid=4),
                       max_seq_length=48, out=root / "w4a16")
    return source, out


def _tensors(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    names: dict[str, str] = {}
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), "pt") as fh:
            names |= {k: fh.get_slice(k).get_dtype() for k in fh.keys()}  # noqa: SIM118
    return names


def test_the_config_is_symmetric_int4_in_groups_of_128(dense) -> None:
    config = json.loads((dense[1] / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors"
    assert config["format"] == "pack-quantized"
    weights = config["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["type"], weights["symmetric"], weights["strategy"],
            weights["group_size"]) == (4, "int", True, "group", 128)
    assert config["config_groups"]["group_0"]["input_activations"] is None  # A16
    assert "lm_head" in config["ignore"]


def test_every_linear_is_packed_and_lm_head_stays_bf16(dense) -> None:
    tensors = _tensors(dense[1])
    for layer in range(2):
        for linear in LINEARS:
            name = f"model.layers.{layer}.{linear}"
            assert tensors[f"{name}.weight_packed"] == "I32", name
            assert tensors[f"{name}.weight_scale"] == "BF16", name
            assert f"{name}.weight" not in tensors and f"{name}.weight_zero_point" not in tensors
    assert tensors["lm_head.weight"] == "BF16" and "lm_head.weight_packed" not in tensors
    assert tensors["model.embed_tokens.weight"] == "BF16"


def test_tokenizer_chat_template_and_generation_config_are_copied(dense) -> None:
    source, out = dense
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (out / name).read_bytes() == (source / name).read_bytes(), name
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == AutoTokenizer.from_pretrained(source).chat_template
    assert json.loads((out / "generation_config.json").read_text())["top_k"] == 20


def logit_agreement(source: Path, quantized: Path, tok) -> tuple[float, float]:
    """(mean KL, smallest cosine of centred logits) of the reloaded quantized model against the
    original, on a chat text the calibration did not contain."""
    from transformers import AutoModelForCausalLM

    text = calibration_texts(tok, 12)[-1]
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        ref = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)(ids).logits
        model = AutoModelForCausalLM.from_pretrained(quantized, dtype=torch.float32)
        got = model(ids).logits
    lp, lq = ref.log_softmax(-1), got.log_softmax(-1)
    kl = float((lp.exp() * (lp - lq)).sum(-1).mean())
    cos = torch.nn.functional.cosine_similarity(got - got.mean(-1, keepdim=True),
                                                ref - ref.mean(-1, keepdim=True), dim=-1)
    return kl, float(cos.min())


def test_reloads_with_transformers_and_logits_stay_close(dense) -> None:
    from transformers import AutoTokenizer

    source, out = dense
    kl, cosine = logit_agreement(source, out, AutoTokenizer.from_pretrained(source))
    assert 0.0 < kl < MAX_KL, kl  # > 0: the weights were quantized
    assert cosine >= MIN_COSINE, cosine


def test_pinning_is_off_only_inside_the_context() -> None:
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.__dict__["pin_memory"]
    with pytest.raises(KeyError), no_pin_memory():
        assert IntermediatesCache.__dict__["pin_memory"] is not original
        raise KeyError("an error inside oneshot")
    assert IntermediatesCache.__dict__["pin_memory"] is original


def test_another_llmcompressor_series_is_refused(monkeypatch) -> None:
    import llmcompressor

    from swallow_train.quant.awq import QuantizeError

    monkeypatch.setattr(llmcompressor, "__version__", "0.15.0")
    with pytest.raises(QuantizeError, match=r"llmcompressor 0\.15\.0.*LLMCOMPRESSOR_SERIES"), \
            no_pin_memory():
        pass
