"""The Qwen3 presets against transformers' configs built from the published config.json values."""

from __future__ import annotations

import pytest
from transformers import Qwen3Config, Qwen3MoeConfig

from swallow_train.config import compose
from swallow_train.models.config import ModelConfig

# The architecture fields of the published config.json files (Qwen/Qwen3-8B-Base,
# Qwen/Qwen3-30B-A3B-Base, Qwen/Qwen3-32B), typed here as the independent reference.
# The -Base checkpoints have max_position_embeddings 32768 (the post-trained ones 40960).
COMMON = dict(vocab_size=151936, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
              tie_word_embeddings=False, head_dim=128, max_position_embeddings=32768)
PUBLISHED = {
    "qwen3_8b": (Qwen3Config, dict(COMMON, hidden_size=4096, num_hidden_layers=36,
                                   num_attention_heads=32, num_key_value_heads=8,
                                   intermediate_size=12288)),
    "qwen3_30b_a3b": (Qwen3MoeConfig, dict(COMMON, hidden_size=2048, num_hidden_layers=48,
                                           num_attention_heads=32, num_key_value_heads=4,
                                           intermediate_size=6144, num_experts=128,
                                           num_experts_per_tok=8, moe_intermediate_size=768,
                                           norm_topk_prob=True, router_aux_loss_coef=0.001,
                                           decoder_sparse_step=1, mlp_only_layers=[])),
    "qwen3_32b": (Qwen3Config, dict(COMMON, max_position_embeddings=40960, hidden_size=5120,
                                    num_hidden_layers=64,
                                    num_attention_heads=64, num_key_value_heads=8,
                                    intermediate_size=25600)),
}
FIELDS = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
          "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
          "rms_norm_eps", "tie_word_embeddings", "hidden_act", "attention_bias"]
MOE_FIELDS = ["num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob",
              "router_aux_loss_coef", "decoder_sparse_step", "mlp_only_layers"]


def _preset(name: str) -> ModelConfig:
    return compose("cpt", [f"model={name}", "cluster.gpus_per_node=8"]).model


def _rope_theta(cfg) -> float:
    params = getattr(cfg, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(cfg, "rope_theta", 0.0)))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_matches_published_qwen3_config(name: str) -> None:
    cls, published = PUBLISHED[name]
    reference = cls(**published)
    ours = cls(**_preset(name).to_hf_config())
    for field in FIELDS + (MOE_FIELDS if cls is Qwen3MoeConfig else []):
        assert getattr(ours, field) == getattr(reference, field), field
    assert _rope_theta(ours) == _rope_theta(reference) == 1_000_000.0
    assert ours.architectures == [
        "Qwen3MoeForCausalLM" if cls is Qwen3MoeConfig else "Qwen3ForCausalLM"
    ]


def test_attention_width_differs_from_hidden_where_qwen3_says_so() -> None:
    widths = {n: (_preset(n).num_attention_heads * _preset(n).head_dim, _preset(n).hidden_size)
              for n in PUBLISHED}
    assert widths == {"qwen3_8b": (4096, 4096), "qwen3_30b_a3b": (4096, 2048),
                      "qwen3_32b": (8192, 5120)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_from_hf_config_inverts_to_hf_config(name: str) -> None:
    preset = _preset(name)
    back = ModelConfig.from_hf_config(preset.to_hf_config(), name=preset.name,
                                      tokenizer=preset.tokenizer)
    assert back == preset


@pytest.mark.parametrize(("name", "total", "active"), [
    # Published sizes: 8.2B, 30.5B total / 3.3B active, 32.8B (with embeddings).
    ("qwen3_8b", 8.19e9, 8.19e9),
    ("qwen3_30b_a3b", 30.5e9, 3.35e9),
    ("qwen3_32b", 32.8e9, 32.8e9),
])
def test_parameter_counts_match_published_sizes(name: str, total: float, active: float) -> None:
    preset = _preset(name)
    assert preset.num_params() == pytest.approx(total, rel=0.01)
    assert preset.num_params(active=True) == pytest.approx(active, rel=0.02)


def test_flops_per_token_is_6n_plus_attention() -> None:
    preset = _preset("qwen3_8b")
    seq = 4096
    attention = 36 * 6 * seq * 32 * 128
    matmul_params = preset.num_params() - 151936 * 4096 - (36 * (2 * 4096 + 2 * 128) + 4096)
    assert preset.flops_per_token(seq) == pytest.approx(6 * matmul_params + attention, rel=1e-9)


def test_validate_rejects_inconsistent_architecture() -> None:
    bad = ModelConfig(name="x", hidden_size=64, num_layers=2, num_attention_heads=6,
                      num_key_value_heads=4, head_dim=16, ffn_hidden_size=128)
    with pytest.raises(ValueError, match=r"num_attention_heads=6.*num_key_value_heads=4"):
        bad.validate()
