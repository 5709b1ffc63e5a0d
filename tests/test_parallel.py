"""Parallel layout validation, table-driven, including the Swallow v0.2 layouts."""

from __future__ import annotations

import pytest

from swallow_train.config import compose
from swallow_train.parallel import LayoutError, ParallelConfig, Recompute, validate_layout


def _model(name: str):
    return compose("cpt", [f"model={name}"]).model


# (model, parallel, world, global batch, micro batch, seq) -> expected (dp, accum steps)
VALID = [
    ("qwen3_8b", dict(tp=2, sequence_parallel=True), 128, 256, 1, 32768, (64, 4)),
    ("qwen3_30b_a3b", dict(tp=1, cp=2, ep=8, sequence_parallel=True), 128, 256, 1, 32768, (64, 4)),
    ("qwen3_32b", dict(tp=4, cp=2, sequence_parallel=True), 128, 256, 1, 32768, (16, 16)),
    ("qwen3_32b", dict(tp=8, pp=2, vpp=2, sequence_parallel=True), 64, 256, 1, 4096, (4, 64)),
    ("qwen3_30b_a3b", dict(tp=2, ep=8, sequence_parallel=True), 16, 64, 1, 4096, (8, 8)),
    ("tiny_dense", dict(tp=2, sequence_parallel=True), 2, 8, 4, 128, (1, 2)),
    ("tiny_dense", dict(pp=2), 2, 8, 4, 128, (1, 2)),
    ("tiny_moe", dict(ep=2), 2, 8, 2, 128, (2, 2)),
]

# (model, parallel, world, global batch, micro batch, seq, the field(s) the message must name)
INVALID = [
    ("qwen3_8b", dict(tp=2), 127, 256, 1, 32768, ["cluster.nodes x cluster.gpus_per_node"]),
    ("qwen3_8b", dict(tp=16), 128, 256, 1, 32768,
     ["model.num_key_value_heads=8", "parallel.tp=16"]),
    ("qwen3_32b", dict(tp=3), 96, 96, 1, 32768, ["model.num_attention_heads=64", "parallel.tp=3"]),
    ("qwen3_8b", dict(pp=5), 5, 5, 1, 4096, ["model.num_layers=36", "parallel.pp=5"]),
    ("qwen3_32b", dict(pp=4, vpp=3), 8, 8, 1, 4096, ["PP x VPP = 4 x 3"]),
    ("qwen3_8b", dict(vpp=2), 8, 8, 1, 4096, ["parallel.vpp=2 needs parallel.pp > 1"]),
    ("qwen3_30b_a3b", dict(ep=3), 24, 24, 1, 4096, ["model.num_experts=128", "parallel.ep=3"]),
    ("qwen3_30b_a3b", dict(tp=2), 16, 16, 1, 4096, ["parallel.sequence_parallel=true"]),
    ("qwen3_8b", dict(ep=2), 8, 8, 1, 4096, ["parallel.ep=2 needs an MoE model"]),
    ("qwen3_8b", dict(cp=2), 8, 8, 1, 4098, ["seq_length=4098", "2 x parallel.cp = 4"]),
    ("qwen3_8b", dict(tp=2), 128, 100, 1, 4096, ["global_batch_size=100", "micro_batch_size x DP"]),
    ("qwen3_8b", dict(recompute="selective"), 8, 8, 1, 4096, ["parallel.recompute"]),
    ("qwen3_8b", dict(tp=0), 8, 8, 1, 4096, ["parallel.tp=0 must be >= 1"]),
    ("qwen3_8b", dict(recompute="moe"), 8, 8, 1, 4096,
     ["parallel.recompute=moe needs an MoE model", "parallel.recompute=full"]),
    ("qwen3_30b_a3b", dict(ep=8, recompute="moe_act"), 8, 8, 1, 4096,
     ["parallel.recompute=moe_act needs parallel.moe_grouped_gemm=true"]),
    ("qwen3_8b", dict(overlap_param_gather=True, distributed_optimizer=False), 8, 8, 1, 4096,
     ["parallel.overlap_param_gather=true needs parallel.distributed_optimizer=true"]),
    ("qwen3_32b", dict(tp=1, tp_comm_overlap=True), 8, 8, 1, 4096,
     ["parallel.tp_comm_overlap=true needs parallel.tp > 1 (is 1)",
      "parallel.sequence_parallel=true"]),
    ("qwen3_30b_a3b", dict(ep=8, moe_token_dispatcher="flex"), 8, 8, 1, 4096,
     ["parallel.moe_token_dispatcher='flex' must be one of 'alltoall', 'allgather'"]),
]


@pytest.mark.parametrize(("model", "par", "world", "gbs", "mbs", "seq", "expected"), VALID)
def test_valid_layouts(model, par, world, gbs, mbs, seq, expected) -> None:
    layout = validate_layout(_model(model), ParallelConfig(**par), world_size=world,
                             global_batch_size=gbs, micro_batch_size=mbs, seq_length=seq)
    assert (layout.dp, layout.grad_accum_steps) == expected
    assert layout.tp * layout.pp * layout.cp * layout.dp == world


@pytest.mark.parametrize(("model", "par", "world", "gbs", "mbs", "seq", "names"), INVALID)
def test_invalid_layouts_name_the_field_and_fix(model, par, world, gbs, mbs, seq, names) -> None:
    with pytest.raises(LayoutError) as err:
        validate_layout(_model(model), ParallelConfig(**par), world_size=world,
                        global_batch_size=gbs, micro_batch_size=mbs, seq_length=seq)
    for name in names:
        assert name in str(err.value)


def test_every_broken_rule_is_reported_at_once() -> None:
    with pytest.raises(LayoutError) as err:
        validate_layout(_model("qwen3_8b"), ParallelConfig(tp=16, pp=5), world_size=100,
                        global_batch_size=7, micro_batch_size=1, seq_length=4096)
    assert str(err.value).count("\n  - ") == 3
    for name in ("world size 100", "parallel.tp=16", "parallel.pp=5"):
        assert name in str(err.value)


def test_sequence_parallel_is_off_without_tp() -> None:
    layout = validate_layout(_model("qwen3_30b_a3b"),
                             ParallelConfig(cp=2, ep=8, sequence_parallel=True), world_size=16,
                             global_batch_size=16, micro_batch_size=1, seq_length=4096)
    assert not layout.sequence_parallel


def test_recipe_layout_uses_the_cluster_world_size() -> None:
    recipe = compose("cpt", ["model=qwen3_32b", "cluster=tsubame4", "cluster.nodes=16"])
    assert recipe.layout().world_size == 64
    with pytest.raises(LayoutError, match="world size 60"):
        compose("cpt", ["model=qwen3_32b", "cluster=tsubame4", "cluster.nodes=15"]).layout()


@pytest.mark.parametrize("stage", ["cpt", "sft"])
@pytest.mark.parametrize("model", ["qwen3_8b", "qwen3_30b_a3b", "qwen3_32b"])
def test_cluster_recipes_carry_the_performance_defaults(stage, model) -> None:
    """Megatron-Bridge's Qwen3 defaults, with the Swallow layouts unchanged; the 30B-A3B keeps
    MoE-block recompute (attention stored: no flash-attention rerun); tp_comm_overlap stays off."""
    p = compose(stage, [f"model={model}"]).parallel
    layout = {"qwen3_8b": (2, 1, 1), "qwen3_30b_a3b": (1, 2, 8), "qwen3_32b": (4, 2, 1)}[model]
    assert (p.tp, p.cp, p.ep) == layout and p.sequence_parallel
    assert p.overlap_grad_reduce and p.overlap_param_gather and p.distributed_optimizer
    assert p.gradient_accumulation_fusion and p.apply_rope_fusion and p.cross_entropy_loss_fusion
    assert not p.tp_comm_overlap
    assert p.recompute == (Recompute.moe if model == "qwen3_30b_a3b" else None)


def test_tiny_cpu_recipes_keep_ddp_overlap_off() -> None:
    p = compose("cpt", ["model=tiny_dense"]).parallel
    assert not (p.overlap_grad_reduce or p.overlap_param_gather or p.tp_comm_overlap)


def test_the_same_fields_render_as_megatron_lm_flags_for_slime() -> None:
    """slime's Megatron-LM takes the layout from the same ParallelConfig: Megatron-LM's defaults
    (fusions on) write nothing, so the RL goldens stay as they were."""
    from swallow_train.rl.megatron_args import parallel_args

    moe = _model("qwen3_30b_a3b")
    assert parallel_args(moe, ParallelConfig(ep=8, recompute="moe"))[-4:] == [
        "--recompute-granularity", "selective", "--recompute-modules", "moe"]
    assert parallel_args(moe, ParallelConfig(ep=8, moe_grouped_gemm=True,
                                             recompute="moe_act"))[-5:] == [
        "--recompute-granularity", "selective", "--recompute-modules", "moe_act", "layernorm"]
    dense = _model("qwen3_32b")
    base = parallel_args(dense, ParallelConfig(tp=4, sequence_parallel=True))
    every = parallel_args(dense, ParallelConfig(
        tp=4, sequence_parallel=True, overlap_grad_reduce=True, overlap_param_gather=True,
        gradient_accumulation_fusion=False, apply_rope_fusion=False, tp_comm_overlap=True))
    assert every == [*base, "--overlap-grad-reduce", "--use-distributed-optimizer",
                     "--overlap-param-gather", "--no-gradient-accumulation-fusion",
                     "--no-rope-fusion", "--tp-comm-overlap"]
