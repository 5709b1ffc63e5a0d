"""The HF <-> megatron-core name tables: complete against what `transformers` saves, one rule per
tensor, and the exact names of both megatron spec families."""

from __future__ import annotations

import pytest
from safetensors import safe_open

from swallow_train.convert.names import Experts, NameMap, Spec, Transform
from tests.convert.helpers import preset, save_random_hf


@pytest.mark.parametrize("name,tied", [("tiny_dense", False), ("tiny_dense", True),
                                        ("tiny_moe", False)])
def test_hf_tensors_are_exactly_what_transformers_saves(tmp_path, name, tied):
    model = preset(name, tie_word_embeddings=tied)
    save_random_hf(model, tmp_path)
    with safe_open(tmp_path / "model.safetensors", framework="pt") as f:
        saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    assert NameMap(model, Spec.local).hf_shapes() == saved


@pytest.mark.parametrize("name", ["tiny_dense", "tiny_moe"])
@pytest.mark.parametrize("spec", list(Spec))
@pytest.mark.parametrize("experts", list(Experts))
def test_each_hf_tensor_comes_from_exactly_one_rule(name, spec, experts):
    names = NameMap(preset(name), spec, experts)
    produced = [hf for m in names.instances() if m.rule.export for hf in m.hf_names()]
    assert len(produced) == len(set(produced))
    assert set(produced) == set(names.hf_shapes())
    mcore = [m.mcore_name() for m in names.instances()]
    assert len(mcore) == len(set(mcore))
    for m in names.instances():  # every megatron name parses back to its own rule and indices
        assert names.match(m.mcore_name()) == m


def _layer0(names: NameMap) -> dict[str, tuple[str, ...]]:
    return {m.mcore_name(): m.hf_names() for m in names.instances()
            if m.layer == 0 and (m.expert is None or m.expert == 3)}


def test_dense_names_of_both_specs():
    hf = "model.layers.0."
    common = {
        "decoder.layers.0.self_attention.linear_qkv.weight": (
            hf + "self_attn.q_proj.weight", hf + "self_attn.k_proj.weight",
            hf + "self_attn.v_proj.weight"),
        "decoder.layers.0.self_attention.q_layernorm.weight": (hf + "self_attn.q_norm.weight",),
        "decoder.layers.0.self_attention.k_layernorm.weight": (hf + "self_attn.k_norm.weight",),
        "decoder.layers.0.self_attention.linear_proj.weight": (hf + "self_attn.o_proj.weight",),
        "decoder.layers.0.mlp.linear_fc1.weight": (hf + "mlp.gate_proj.weight",
                                                   hf + "mlp.up_proj.weight"),
        "decoder.layers.0.mlp.linear_fc2.weight": (hf + "mlp.down_proj.weight",),
    }
    local = {"decoder.layers.0.input_layernorm.weight": (hf + "input_layernorm.weight",),
             "decoder.layers.0.pre_mlp_layernorm.weight": (hf + "post_attention_layernorm.weight",)}
    te = {"decoder.layers.0.self_attention.linear_qkv.layer_norm_weight":
          (hf + "input_layernorm.weight",),
          "decoder.layers.0.mlp.linear_fc1.layer_norm_weight":
          (hf + "post_attention_layernorm.weight",)}
    model = preset("tiny_dense")
    assert _layer0(NameMap(model, Spec.local)) == {**common, **local}
    assert _layer0(NameMap(model, Spec.te)) == {**common, **te}


def test_moe_names_of_both_expert_layouts():
    model = preset("tiny_moe")
    e3 = "model.layers.0.mlp.experts.3."
    fc1 = (e3 + "gate_proj.weight", e3 + "up_proj.weight")
    fc2 = (e3 + "down_proj.weight",)
    seq = _layer0(NameMap(model, Spec.local, Experts.sequential))
    grouped = _layer0(NameMap(model, Spec.te, Experts.grouped))
    assert seq["decoder.layers.0.mlp.experts.local_experts.3.linear_fc1.weight"] == fc1
    assert seq["decoder.layers.0.mlp.experts.local_experts.3.linear_fc2.weight"] == fc2
    assert grouped["decoder.layers.0.mlp.experts.linear_fc1.weight3"] == fc1
    assert grouped["decoder.layers.0.mlp.experts.linear_fc2.weight3"] == fc2
    for names in (seq, grouped):  # MoE layers keep a separate pre-MLP norm in both specs
        assert names["decoder.layers.0.pre_mlp_layernorm.weight"] == (
            "model.layers.0.post_attention_layernorm.weight",)
        assert names["decoder.layers.0.mlp.router.weight"] == ("model.layers.0.mlp.gate.weight",)
    assert grouped["decoder.layers.0.self_attention.linear_qkv.layer_norm_weight"] == (
        "model.layers.0.input_layernorm.weight",)
    assert not any("linear_fc1.layer_norm_weight" in n for n in grouped)


def test_match_reads_global_indices_and_rejects_unknown_names():
    names = NameMap(preset("tiny_moe", num_layers=24, num_experts=128), Spec.local)
    m = names.match("decoder.layers.17.mlp.experts.local_experts.101.linear_fc1.weight")
    assert (m.layer, m.expert, m.rule.transform) == (17, 101, Transform.gate_up)
    assert names.match("decoder.layers.0.self_attention.linear_qkv._extra_state") is None
    assert names.match("decoder.layers.0.mlp.experts.weight1") is None  # legacy GroupedMLP
    assert names.match("decoder.layers.0.mlp.linear_fc1.weight") is None  # dense name, MoE model


def test_tied_embeddings_export_no_lm_head():
    names = NameMap(preset("tiny_dense", tie_word_embeddings=True), Spec.local)
    assert "lm_head.weight" not in names.hf_shapes()
    out = names.match("output_layer.weight")
    assert out.hf_names() == ("model.embed_tokens.weight",) and not out.rule.export
