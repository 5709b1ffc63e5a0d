"""Parallel layout validation, table-driven, including the Swallow v0.2 layouts."""

from __future__ import annotations

import pytest

from swallow_train.config import compose
from swallow_train.parallel import LayoutError, ParallelConfig, validate_layout


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
