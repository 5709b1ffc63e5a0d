"""Honest MFU for packed SFT: the loop charges each step its real tokens and per-sample
attention (sum of L_i^2), read from the packs of the whole global batch (all DP ranks)."""

from __future__ import annotations

import numpy as np
import pytest

from swallow_train.config import compose
from swallow_train.data.packed import PackedSFTDataset
from swallow_train.mcore.batches import SampleLengths
from swallow_train.mcore.data_sft import SFTData
from swallow_train.mcore.trainer import step_work
from swallow_train.parallel import ParallelConfig, validate_layout


@pytest.fixture(scope="module")
def sft(tiny_sft_packs):
    recipe = compose("sft", ["model=tiny_dense"])
    data = SFTData(data=recipe.data, train=recipe.train, model=recipe.model,
                   cluster=recipe.cluster)
    data._open = lambda: PackedSFTDataset(tiny_sft_packs)  # type: ignore[method-assign]
    # as at DP=2: the step's packs span both ranks' shares, and every rank counts them all
    layout = validate_layout(recipe.model, ParallelConfig(), world_size=2, global_batch_size=None,
                             micro_batch_size=recipe.train.micro_batch_size,
                             seq_length=recipe.train.seq_length)
    data.prepare(layout)
    return recipe, data, PackedSFTDataset(tiny_sft_packs)


def _expected_lengths(ds: PackedSFTDataset, packs: list[int]) -> list[int]:
    """By hand: the first `conversations[p]` segments of each pack are its samples; each
    sample's real tokens are the non-pad ones (pad_to_multiple pads inside the segment)."""
    out = []
    for p in packs:
        tokens, segments = np.asarray(ds.tokens[p]), ds.segments(p)
        starts = np.concatenate([[0], np.cumsum(segments)[:-1]])
        for start, n in list(zip(starts, segments, strict=True))[: int(ds.conversations[p])]:
            out.append(int((tokens[start:start + n] != ds.pad_id).sum()))
    return out


def test_step_lengths_are_the_real_samples_of_all_ranks(sft) -> None:
    recipe, data, ds = sft
    assert isinstance(data, SampleLengths)
    per_step = data.global_batch_size()
    assert per_step % 2 == 0 and per_step >= 2
    order = np.random.default_rng([recipe.train.seed, 0]).permutation(len(ds))
    for step in (0, 1):
        packs = [int(p) for p in order[step * per_step:(step + 1) * per_step]]
        lengths = data.step_sample_lengths(step)
        assert lengths == _expected_lengths(ds, packs)
        assert len(lengths) == sum(int(ds.conversations[p]) for p in packs)
        assert sum(lengths) == sum(int((np.asarray(ds.tokens[p]) != ds.pad_id).sum())
                                   for p in packs)


def test_step_work_counts_real_tokens_and_attention_per_sample(sft) -> None:
    recipe, data, _ = sft
    model, seq = recipe.model, recipe.train.seq_length
    lengths = data.step_sample_lengths(0)
    work = step_work(model, data, 0)
    assert work is not None
    assert work.tokens == sum(lengths)
    assert work.flops == float(sum(n * model.flops_per_token(n) for n in lengths))
    # the old count: every position of every pack, attention over the whole pack
    naive = data.global_batch_size() * seq * model.flops_per_token(seq)
    assert work.flops < naive
    # by hand: 6 x dense weights per real token + 6 x layers x q_dim x sum(L_i^2)
    q = model.num_attention_heads * model.head_dim
    dense = model.flops_per_token(0) / 6
    assert work.flops == pytest.approx(6 * dense * sum(lengths)
                                       + 6 * model.num_layers * q * sum(n * n for n in lengths),
                                       rel=1e-12)


def test_sources_without_lengths_keep_the_cpt_count() -> None:
    class Plain:  # a BatchSource without the optional method (as CPT's)
        pass

    assert step_work(compose("cpt", ["model=tiny_dense"]).model, Plain(), 0) is None
