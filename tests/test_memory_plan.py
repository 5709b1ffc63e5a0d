"""The --dry-run memory plan: checked against Megatron-LM's own formula, hand counts, layouts
known to have run, and every shipped recipe on its clusters; a layout that cannot fit is
refused with the fields to change."""

from __future__ import annotations

import pytest

from swallow_train.cli import main
from swallow_train.config import compose, recipe_memory_plan
from swallow_train.memory_plan import (
    H100_80,
    H200,
    GiB,
    activation_bytes_per_token,
    plan_training,
)
from swallow_train.parallel import LayoutError, ParallelConfig, validate_layout


def _plan(model: str, gpu=None, seq: int = 32768, world: int = 128, **parallel):
    m = compose("cpt", [f"model={model}"]).model
    p = ParallelConfig(**parallel)
    layout = validate_layout(m, p, world_size=world, global_batch_size=256, micro_batch_size=1,
                             seq_length=seq)
    return m, plan_training(m, p, layout, seq_length=seq, micro_batch_size=1, gpu=gpu)


def _item(plan, prefix: str) -> float:
    return next(b for what, b in plan.items if what.startswith(prefix))


@pytest.mark.parametrize(("model", "tp", "pp", "dp"), [("qwen3_8b", 2, 1, 64),
                                                        ("qwen3_32b", 4, 2, 16)])
def test_weights_and_optimizer_match_megatron_theoretical_memory(model, tp, pp, dp) -> None:
    """Megatron-LM `compute_weight_and_optimizer_memory`: parameters of the most loaded shard
    x (6 + 12 / DP) bytes with the distributed optimizer (attention 2h^2 (1 + g/n) q/h, MLP
    2h (3/2 ffn + 1), embedding on the first stage, the untied head too when PP = 1)."""
    m, plan = _plan(model, world=tp * pp * dp, tp=tp, pp=pp, sequence_parallel=True)
    h, n, g = m.hidden_size, m.num_attention_heads, m.num_key_value_heads
    q = n * m.head_dim
    layer = 2 * h * h * (1 + g / n) * q / h + 2 * h * (m.ffn_hidden_size * 3 / 2 + 1)
    qk_norm = 2 * m.head_dim  # Qwen3's q/k RMSNorm weights: not in Megatron-LM's formula
    block = (layer + qk_norm) * m.num_layers + h
    embedding = h * m.vocab_size
    shard = (block / pp + embedding) / tp + (embedding / tp if pp == 1 else 0)
    megatron = shard * (6 + 12 / dp)
    ours = sum(_item(plan, k) for k in ("parameters", "gradients", "optimizer"))
    assert ours == pytest.approx(megatron, rel=1e-12)


def test_activation_bytes_per_token_by_hand() -> None:
    m = compose("cpt", ["model=qwen3_8b"]).model
    # attention: 2 x (4096 + 4096) / 2 + 2 x ((4096 + 1024) + (4096 + 2048) + 4096 + 64) / 2
    # MLP: 2 x (4096 + 4096) / 2 + 2 x 3 x 12288 / 2
    assert activation_bytes_per_token(m, tp=2, sp=True) == 8192 + 15424 + 8192 + 36864
    # without sequence parallel the norm and QKV/fc1 inputs are whole on every TP rank
    assert activation_bytes_per_token(m, tp=2, sp=False) == 16384 + 15424 + 16384 + 36864


def test_issue_first_estimate_and_recompute() -> None:
    """8B TP2 at 32K without recompute: 120-130 GB (the issue's first estimate) -> refused on
    TSUBAME's H100 94 GB; full recompute stores one hidden state per layer."""
    m, plan = _plan("qwen3_8b", tp=2, sequence_parallel=True)
    assert 115 * GiB < plan.total < 125 * GiB
    assert _item(plan, "logits") == 32768 * (6 * 75968 + 2 * 2 * 4096 / 2)
    _, full = _plan("qwen3_8b", tp=2, sequence_parallel=True, recompute="full")
    layer = activation_bytes_per_token(m, 2, True)
    assert _item(full, "activations") == 32768 * (2 * 4096 / 2 * 36 + layer)


def test_layouts_known_to_run_fit() -> None:
    """Megatron-Bridge's qwen3_8b_sft_8gpu_h100_bf16_32k (TP4 CP2 SP, 32K, 8 x H100 80 GB) and
    the Swallow 30B-A3B ABCI job (TP1 CP2 EP8, MoE recompute, 32K, H200)."""
    _, bridge = _plan("qwen3_8b", H100_80, world=8, tp=4, cp=2, sequence_parallel=True)
    assert bridge.fits(H100_80)
    _, swallow = _plan("qwen3_30b_a3b", H200, tp=1, cp=2, ep=8, sequence_parallel=True,
                       moe_grouped_gemm=True, recompute="moe")
    assert swallow.fits(H200)


GOLDEN_GPUS = {"cpt": {"qwen3_8b": 128, "qwen3_30b_a3b": 128, "qwen3_32b": 256},
               "sft": {"qwen3_8b": 64, "qwen3_30b_a3b": 64, "qwen3_32b": 64},
               "rl": {"qwen3_8b": 16, "qwen3_30b_a3b": 32, "qwen3_32b": 32}}


@pytest.mark.parametrize("cluster", ["abci3", "tsubame4"])
@pytest.mark.parametrize("stage", ["cpt", "sft", "rl"])
def test_every_shipped_recipe_fits_its_clusters(stage, cluster) -> None:
    """The Swallow layouts (size recipes) fit ABCI 3.0; the TSUBAME 4.0 example scripts carry
    the fixes the plan names (`launch.golden.FIT`), and without them the plan refuses."""
    from swallow_train.launch.golden import FIT

    per_node = {"abci3": 8, "tsubame4": 4}[cluster]
    for model, gpus in GOLDEN_GPUS[stage].items():
        base = [f"model={model}", f"cluster={cluster}", f"cluster.nodes={gpus // per_node}"]
        fit = FIT.get((cluster, stage, model), [])
        text = recipe_memory_plan(compose(stage, base + fit))  # LayoutError if it cannot fit
        assert ": fits" in text, (model, text)
        if fit:
            with pytest.raises(LayoutError, match="out of GPU memory"):
                recipe_memory_plan(compose(stage, base))


def test_a_layout_that_cannot_fit_is_refused_with_the_fix(capsys) -> None:
    args = ["cpt", "--dry-run", "model=qwen3_32b", "cluster=tsubame4", "cluster.nodes=64",
            "parallel.recompute=null"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "out of GPU memory" in err and "H100 94 GB of cluster tsubame4" in err
    assert "fix: set parallel.recompute=full (-> 58 GiB)" in err
    assert "parallel.tp=8" not in err  # TP stays within a 4-GPU node
    with pytest.raises(LayoutError, match=r"parallel\.recompute=full"):
        recipe_memory_plan(compose("cpt", args[2:]))


def test_dry_run_prints_the_plan(capsys) -> None:
    assert main(["cpt", "--dry-run", "model=qwen3_8b", "cluster=abci3", "cluster.nodes=16"]) == 0
    out = capsys.readouterr().out
    assert "# memory plan per GPU: seq 32,768 x micro-batch 1, TP2 PP1 CP1" in out
    assert "(H200 141 GB, 86%): fits" in out


def test_rl_plan_refuses_an_sglang_pool_that_leaves_nothing(capsys) -> None:
    args = ["rl", "--dry-run", "model=qwen3_32b", "cluster=tsubame4", "cluster.nodes=8"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "SGLang pool 0.7 x 93.6 = 65.5 GiB = weights 15.3" in out
    assert main([*args, "slime.sglang_mem_fraction_static=0.99"]) == 2
    assert "lower it" in capsys.readouterr().err
    assert main([*args, "slime.sglang_mem_fraction_static=0.15"]) == 2
    assert "raise slime.sglang_mem_fraction_static" in capsys.readouterr().err
