"""Packing: every sample exactly once, nothing over capacity, >= 99% efficient on chat lengths."""

from __future__ import annotations

import numpy as np
import pytest

from swallow_train.data.packing import (
    best_fit_decreasing,
    chat_lengths,
    efficiency,
    greedy_concat,
)

L = 32_768


def _valid(lengths: np.ndarray, packs: list[np.ndarray], capacity: int) -> None:
    flat = np.concatenate(packs)
    assert np.array_equal(np.sort(flat), np.arange(lengths.size))  # each sample exactly once
    assert max(int(lengths[p].sum()) for p in packs) <= capacity


def test_best_fit_decreasing_on_the_chat_length_distribution() -> None:
    lengths = chat_lengths(20_000, seed=0)
    assert 2_000 < np.median(lengths) < 4_500 and lengths.max() <= L
    packs = best_fit_decreasing(lengths, L, seed=1)
    _valid(lengths, packs, L)
    eff = efficiency(lengths, packs, L)
    assert eff >= 0.99
    # no packer can use fewer packs than ceil(tokens / capacity)
    assert len(packs) >= int(np.ceil(lengths.sum() / L))
    base = greedy_concat(lengths, L, seed=1)
    _valid(lengths, base, L)
    assert efficiency(lengths, base, L) < eff - 0.05


def test_same_seed_same_packs_other_seed_other_order() -> None:
    lengths = chat_lengths(3_000, seed=3)
    a, b = best_fit_decreasing(lengths, L, 7), best_fit_decreasing(lengths, L, 7)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = best_fit_decreasing(lengths, L, 8)
    assert [x.tolist() for x in a] != [x.tolist() for x in c]


def test_small_exact_case() -> None:
    lengths = np.array([6, 5, 4, 3, 2])  # 20 tokens into capacity 10: two full packs
    packs = best_fit_decreasing(lengths, 10, seed=0)
    _valid(lengths, packs, 10)
    assert sorted(sorted(lengths[p].tolist()) for p in packs) == [[2, 3, 5], [4, 6]]
    assert efficiency(lengths, packs, 10) == 1.0


def test_too_long_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"in \[1, 10\]"):
        best_fit_decreasing(np.array([3, 11]), 10, seed=0)
