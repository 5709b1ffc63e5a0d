"""The tensor transforms: QKV interleave per query group, gate/up fuse, TP slicing and merging,
EP renumbering, and whole-model HF -> megatron -> HF round trips in every name family."""

from __future__ import annotations

import pytest
import torch

from swallow_train.convert.names import Experts, NameMap, Spec, TPSplit
from swallow_train.convert.transforms import (
    ConversionError,
    DictSource,
    gate_up_merge,
    gate_up_split,
    global_expert,
    hf_to_mcore,
    local_expert,
    mcore_to_hf,
    qkv_merge,
    qkv_split,
    read_shard,
    tp_merge,
    tp_split,
)
from tests.convert.helpers import preset, random_hf_state_dict

HEADS, GROUPS, D, HIDDEN = 8, 2, 3, 5


def _labelled(rows_per_head: int, heads: int, tag: float) -> torch.Tensor:
    """Row block h holds tag + h, so each output row tells which head it came from."""
    return torch.cat([torch.full((rows_per_head, HIDDEN), tag + h) for h in range(heads)])


def test_qkv_merge_interleaves_per_query_group():
    q, k, v = _labelled(D, HEADS, 100), _labelled(D, GROUPS, 200), _labelled(D, GROUPS, 300)
    fused = qkv_merge(q, k, v, groups=GROUPS)
    heads_per_group = HEADS // GROUPS
    expected = []
    for g in range(GROUPS):  # the group's q heads, then its k head, then its v head
        expected += [100 + g * heads_per_group + h for h in range(heads_per_group)]
        expected += [200 + g, 300 + g]
    assert fused[::D, 0].tolist() == expected
    assert fused.shape == ((HEADS + 2 * GROUPS) * D, HIDDEN)
    back = qkv_split(fused, HEADS, GROUPS, D)
    assert all(torch.equal(a, b) for a, b in zip(back, (q, k, v), strict=True))


def test_gate_up_fuse_puts_gate_first():
    gate, up = torch.zeros(4, 3), torch.ones(4, 3)
    fused = gate_up_merge(gate, up)
    assert fused[:4].eq(0).all() and fused[4:].eq(1).all()
    assert all(torch.equal(a, b) for a, b in zip(gate_up_split(fused), (gate, up), strict=True))


@pytest.mark.parametrize("split", list(TPSplit))
@pytest.mark.parametrize("size", [1, 2, 4])
def test_tp_split_then_merge_is_identity(split, size):
    full = torch.randn(8 * 4, 12)
    parts = [tp_split(full, split, size, r) for r in range(size)]
    assert torch.equal(tp_merge(parts, split), full)
    if split is not TPSplit.replicated and size > 1:
        assert sum(p.numel() for p in parts) == full.numel()


def test_qkv_tp_shard_holds_whole_query_groups():
    q, k, v = torch.randn(HEADS * D, HIDDEN), torch.randn(GROUPS * D, HIDDEN), torch.randn(
        GROUPS * D, HIDDEN)
    fused = qkv_merge(q, k, v, groups=GROUPS)
    per = HEADS // GROUPS * D
    for rank in range(GROUPS):  # TP = number of groups: one group per rank
        mine = qkv_merge(q[rank * per:(rank + 1) * per], k[rank * D:(rank + 1) * D],
                         v[rank * D:(rank + 1) * D], groups=1)
        assert torch.equal(tp_split(fused, TPSplit.qkv, GROUPS, rank), mine)


def test_gate_up_tp_shard_is_gate_slice_then_up_slice():
    gate, up = torch.randn(8, 3), torch.randn(8, 3)
    shard = tp_split(gate_up_merge(gate, up), TPSplit.gate_up, 2, 1)
    assert torch.equal(shard, torch.cat([gate[4:], up[4:]]))


def test_tp_split_refuses_indivisible_dimensions():
    with pytest.raises(ConversionError, match="not divisible by 3"):
        tp_split(torch.randn(8, 4), TPSplit.rows, 3, 0)


def test_expert_renumbering():
    assert global_expert(local=3, ep_rank=2, num_local=16) == 35
    for g in range(128):
        rank, local = local_expert(g, num_local=32)
        assert global_expert(local, rank, 32) == g


@pytest.mark.parametrize("name", ["tiny_dense", "tiny_moe"])
@pytest.mark.parametrize("size", [2])
def test_read_shard_reads_the_tp_shard_of_the_whole_tensor(name, size):
    model = preset(name)
    source = DictSource(random_hf_state_dict(model))
    names = NameMap(model, Spec.local)
    whole = hf_to_mcore(source, names)
    for m in names.instances():
        for rank in range(size):
            shard = read_shard(source, m.rule, m.hf_names(), model, size, rank)
            assert torch.equal(shard, tp_split(whole[m.mcore_name()], m.rule.tp, size, rank)), (
                m.mcore_name())


@pytest.mark.parametrize("name", ["tiny_dense", "tiny_moe"])
@pytest.mark.parametrize("spec,experts", [(Spec.local, Experts.sequential),
                                          (Spec.te, Experts.sequential),
                                          (Spec.te, Experts.grouped)])
def test_whole_model_round_trip_is_bit_exact(name, spec, experts):
    model = preset(name)
    hf = random_hf_state_dict(model)
    names = NameMap(model, spec, experts)
    mcore = hf_to_mcore(DictSource(hf), names)
    assert len(mcore) == len(names.instances())
    back = mcore_to_hf(mcore, names)
    assert back.keys() == hf.keys()
    assert all(torch.equal(back[k], hf[k]) for k in hf)


def test_missing_hf_tensor_is_named():
    model = preset("tiny_dense")
    hf = random_hf_state_dict(model)
    del hf["model.layers.1.self_attn.v_proj.weight"]
    with pytest.raises(ConversionError, match=r"model\.layers\.1\.self_attn\.v_proj\.weight"):
        hf_to_mcore(DictSource(hf), NameMap(model, Spec.local))
