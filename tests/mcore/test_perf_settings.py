"""The performance settings as megatron-core fields: fusions only with TE (inactive on CPU),
recompute modules chosen explicitly, FP8 refused where it cannot run, tp_comm_overlap refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from swallow_train.config import compose
from swallow_train.mcore import model as model_mod
from swallow_train.mcore.config import Fp8Recipe, Precision
from swallow_train.mcore.fp8 import Fp8Unavailable, fp8_settings
from swallow_train.parallel import LayoutError, ParallelConfig, Recompute

ON = ParallelConfig(overlap_grad_reduce=True, overlap_param_gather=True,
                    gradient_accumulation_fusion=True, apply_rope_fusion=True,
                    cross_entropy_loss_fusion=True)
FUSIONS = ("apply_rope_fusion", "gradient_accumulation_fusion", "cross_entropy_loss_fusion")


@pytest.fixture(scope="module")
def tiny():
    from swallow_train.mcore import distributed

    recipe = compose("cpt", ["model=tiny_moe"])
    layout = recipe.layout()
    distributed.init_parallel_state(layout, seed=0)
    return recipe.model, layout


def _fields(monkeypatch, model, parallel, layout, *, te: bool, **kw) -> dict:
    """The TransformerConfig keyword arguments transformer_config passes (TE's kernels cannot
    be constructed on CPU, so the config class is replaced by a recorder)."""
    monkeypatch.setattr(model_mod, "use_transformer_engine", lambda: te)
    monkeypatch.setattr(model_mod, "TransformerConfig", lambda **fields: fields)
    return model_mod.transformer_config(model, parallel, layout, **kw)


def test_fusions_are_inactive_on_cpu(tiny) -> None:
    model, layout = tiny
    config = model_mod.transformer_config(model, ON, layout, precision=Precision.fp32,
                                          for_training=True)
    assert [getattr(config, f) for f in FUSIONS] == [False, False, False]


def test_fusions_with_te_and_grad_fusion_only_for_ddp(tiny, monkeypatch) -> None:
    model, layout = tiny
    train = _fields(monkeypatch, model, ON, layout, te=True, precision=Precision.bf16,
                    for_training=True)
    assert [train[f] for f in FUSIONS] == [True, True, True]
    assert train["cross_entropy_fusion_impl"] == "te"
    bare = _fields(monkeypatch, model, ON, layout, te=True, precision=Precision.bf16)
    assert bare["gradient_accumulation_fusion"] is False  # no DDP main_grad to write into
    off = replace(ON, apply_rope_fusion=False, cross_entropy_loss_fusion=False)
    assert _fields(monkeypatch, model, off, layout, te=True, precision=Precision.bf16,
                   for_training=True)["apply_rope_fusion"] is False


@pytest.mark.parametrize(("choice", "expected"), [
    (None, {}),
    (Recompute.full, dict(recompute_granularity="full", recompute_method="uniform",
                          recompute_num_layers=1)),
    (Recompute.moe, dict(recompute_granularity="selective", recompute_modules=["moe"])),
    (Recompute.moe_act, dict(recompute_granularity="selective",
                             recompute_modules=["moe_act", "layernorm"])),
])
def test_recompute_modules_are_explicit(tiny, monkeypatch, choice, expected) -> None:
    """`moe` no longer goes through megatron's moe_layer_recompute, which added core_attn."""
    model, layout = tiny
    par = ParallelConfig(recompute=choice, moe_grouped_gemm=True)
    fields = _fields(monkeypatch, model, par, layout, te=False, precision=Precision.fp32)
    assert "moe_layer_recompute" not in fields
    got = {k: fields[k] for k in ("recompute_granularity", "recompute_method",
                                  "recompute_num_layers", "recompute_modules") if k in fields}
    assert got == expected


def test_moe_recompute_builds_without_core_attn(tiny) -> None:
    model, layout = tiny
    config = model_mod.transformer_config(model, ParallelConfig(recompute=Recompute.moe), layout,
                                          precision=Precision.fp32)
    assert config.recompute_granularity == "selective"
    assert config.recompute_modules == ["moe"]


def test_fp8_is_refused_on_cpu_naming_the_field(tiny) -> None:
    model, layout = tiny
    with pytest.raises(Fp8Unavailable, match=r"train\.fp8=delayed needs a GPU with Transformer "
                                             r"Engine.*set train\.fp8=null"):
        model_mod.transformer_config(model, ParallelConfig(), layout, precision=Precision.fp32,
                                     fp8=Fp8Recipe.delayed)


def test_tp_comm_overlap_is_refused_by_the_trainer(tiny) -> None:
    model, layout = tiny
    with pytest.raises(LayoutError, match=r"parallel\.tp_comm_overlap=true.*set "
                                          r"parallel\.tp_comm_overlap=false"):
        model_mod.transformer_config(model, ParallelConfig(tp_comm_overlap=True), layout,
                                     precision=Precision.fp32)


HOPPER, BLACKWELL = (9, 0), (10, 0)


def _fp8(recipe, capability=HOPPER, precision=Precision.bf16, moe=False, **par):
    return fp8_settings(recipe, precision=precision, te=True, capability=capability,
                        parallel=ParallelConfig(**par), moe=moe)


def test_fp8_recipes_as_megatron_fields() -> None:
    assert _fp8(None) == {}
    assert _fp8(Fp8Recipe.delayed) == dict(fp8="hybrid", fp8_recipe="delayed",
                                           fp8_amax_history_len=1024,
                                           fp8_amax_compute_algo="max")
    assert _fp8(Fp8Recipe.tensorwise) == dict(fp8="hybrid", fp8_recipe="tensorwise",
                                              first_last_layers_bf16=True)
    assert _fp8(Fp8Recipe.mxfp8, BLACKWELL) == dict(fp8="e4m3", fp8_recipe="mxfp8")
    assert _fp8(Fp8Recipe.mxfp8, BLACKWELL, moe=True)["moe_router_padding_for_quantization"]
    assert "moe_router_padding_for_quantization" not in _fp8(
        Fp8Recipe.tensorwise, moe=True, moe_token_dispatcher="allgather")


@pytest.mark.parametrize(("args", "message"), [
    (dict(recipe=Fp8Recipe.mxfp8), r"train\.fp8=mxfp8 needs a Blackwell .* sm_90: use "
                                   r"train\.fp8=tensorwise or delayed on Hopper"),
    (dict(recipe=Fp8Recipe.tensorwise, capability=(8, 0)), r"Hopper or Ada .* sm_80"),
    (dict(recipe=Fp8Recipe.delayed, precision=Precision.fp32),
     r"train\.precision resolves to fp32: set train\.precision=bf16"),
    (dict(recipe=Fp8Recipe.delayed, recompute=Recompute.moe_act, moe_grouped_gemm=True),
     r"use train\.fp8=tensorwise or parallel\.recompute=moe"),
])
def test_fp8_refusals_name_the_field_and_the_fix(args, message) -> None:
    with pytest.raises(Fp8Unavailable, match=message):
        _fp8(**args)
