"""`ModelConfig.check_compatible`: the one "does this checkpoint fit this model" check, against
HF config dicts (every compared key, the spellings of transformers versions, dense vs MoE)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from swallow_train.models.config import HF_KEYS, MOE_HF_KEYS, Difference, ModelConfig

DENSE = ModelConfig(name="d", hidden_size=64, num_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, ffn_hidden_size=128, vocab_size=1000)
MOE = replace(DENSE, name="m", num_experts=8, moe_router_topk=2, moe_ffn_hidden_size=32)


def _changed(value):
    if isinstance(value, bool):
        return not value
    return value * 2 if value else 3


@pytest.mark.parametrize("model", [DENSE, MOE], ids=["dense", "moe"])
def test_own_config_fits_and_each_key_is_compared(model: ModelConfig) -> None:
    hf = model.to_hf_config()
    assert model.check_compatible(hf) == []
    keys = HF_KEYS + (MOE_HF_KEYS if model.is_moe else ())
    for field, key in keys:
        if model.is_moe and field == "ffn_hidden_size":
            continue
        theirs = _changed(hf[key])
        diffs = model.check_compatible({**hf, key: theirs})
        assert diffs == [Difference(field, key, getattr(model, field), theirs)], key


def test_dense_against_moe_is_one_difference() -> None:
    assert DENSE.check_compatible(MOE.to_hf_config()) == [
        Difference("num_experts", "num_experts", 0, 8)]
    assert MOE.check_compatible(DENSE.to_hf_config()) == [
        Difference("num_experts", "num_experts", 8, 0)]


def test_spellings_and_absent_keys() -> None:
    hf = MOE.to_hf_config()
    theta = hf.pop("rope_theta")
    hf["rope_parameters"] = {"rope_type": "default", "rope_theta": theta * 10}
    hf["num_local_experts"] = hf.pop("num_experts")
    del hf["head_dim"], hf["vocab_size"]  # head_dim: hidden / heads; vocab: not compared
    assert MOE.check_compatible(hf) == [
        Difference("rope_theta", "rope_theta", MOE.rope_theta, theta * 10)]
    # an all-MoE model uses no dense FFN: its width is not compared
    assert MOE.check_compatible({**MOE.to_hf_config(), "intermediate_size": 7}) == []
    # a string where a bool belongs does not pass for it
    assert [d.field for d in DENSE.check_compatible(
        {**DENSE.to_hf_config(), "tie_word_embeddings": "false"})] == ["tie_word_embeddings"]


def test_message_names_the_file_and_the_fix() -> None:
    (diff,) = DENSE.check_compatible({**DENSE.to_hf_config(), "rms_norm_eps": 1e-5})
    assert str(diff) == "model.rms_norm_eps=1e-06 but config.json has rms_norm_eps 1e-05"
    assert diff.message("ckpt/config.json") == (
        "model.rms_norm_eps=1e-06 but ckpt/config.json has rms_norm_eps 1e-05: set "
        "model.rms_norm_eps=1e-05 or pick the model preset of that checkpoint")


def test_shape_differences_of_a_saved_model_section() -> None:
    saved = {k: getattr(DENSE, k) for k in DENSE.__dataclass_fields__}
    assert MOE.shape_differences(saved) == ["model.num_experts=0 (now 8)"]
    assert DENSE.shape_differences({**saved, "hidden_size": 32, "rope_theta": 1.0}) == [
        "model.hidden_size=32 (now 64)"]  # rope_theta changes no shape
    assert DENSE.shape_differences(saved) == []
