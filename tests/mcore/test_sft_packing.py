"""Packed SFT sequences train exactly as their samples would alone (CPU: block-diagonal mask)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swallow_train.config import compose
from swallow_train.data.packed import PackedSFTDataset
from swallow_train.mcore.data_sft import block_causal_mask


@pytest.fixture(scope="module")
def model():
    from swallow_train.mcore import distributed
    from swallow_train.mcore.config import Precision
    from swallow_train.mcore.model import build_model, transformer_config

    recipe = compose("sft", ["model=tiny_dense"])
    layout = recipe.layout()
    distributed.init_parallel_state(layout, seed=3)
    config = transformer_config(recipe.model, recipe.parallel, layout, precision=Precision.fp32)
    gpt = build_model(recipe.model, config)[0].eval()
    return gpt


def _losses(gpt, tokens, labels, positions, mask) -> torch.Tensor:
    from swallow_train.mcore import cpu_runtime

    with torch.no_grad(), cpu_runtime.active():  # CPU: mask None asks megatron for CUDA
        return gpt(torch.as_tensor(tokens)[None], torch.as_tensor(positions)[None], mask,
                   labels=torch.as_tensor(labels)[None])[0]


def test_packed_loss_equals_the_samples_run_alone(model, tiny_sft_packs) -> None:
    ds = PackedSFTDataset(tiny_sft_packs)
    index = max(range(len(ds)), key=lambda i: ds.conversations[i])  # the fullest pack
    item = ds[index]
    samples = int(ds.conversations[index])
    assert samples >= 3
    length = len(item["tokens"])
    packed = _losses(model, item["tokens"], item["labels"], item["position_ids"],
                     block_causal_mask([item["seq_lens"]], length))
    start, alone_sum, alone_tokens = 0, 0.0, 0.0
    for n in item["seq_lens"][:samples]:
        sl = slice(start, start + n)
        alone = _losses(model, item["tokens"][sl], item["labels"][sl], np.arange(n), None)
        mask = torch.as_tensor(item["loss_mask"][sl])
        # every position of the sample sees exactly what it sees alone
        torch.testing.assert_close(packed[sl], alone, rtol=1e-5, atol=1e-5)
        alone_sum += float((alone * mask).sum())
        alone_tokens += float(mask.sum())
        start += n
    mask = torch.as_tensor(item["loss_mask"])
    packed_mean = float((packed * mask).sum() / mask.sum())
    assert alone_tokens == float(mask.sum()) > 0  # padding carries no loss
    assert packed_mean == pytest.approx(alone_sum / alone_tokens, rel=1e-6)
    # and the mask is what makes it so: plain causal attention across samples differs
    leaky = _losses(model, item["tokens"], item["labels"], item["position_ids"], None)
    second = slice(int(item["seq_lens"][0]), int(item["seq_lens"][:2].sum()))
    assert (leaky[second] - packed[second]).abs().max() > 1e-3


def test_block_causal_mask_shape_and_blocks() -> None:
    mask = block_causal_mask([np.array([2, 3, 1])], 6)[0, 0]
    allowed = (~mask).int().tolist()
    assert allowed == [[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0],
                       [0, 0, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 1, 0],
                       [0, 0, 0, 0, 0, 1]]
