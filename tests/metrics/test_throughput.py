"""Honest MFU for packed SFT: real tokens only, attention per sample (sum of L_i^2)."""

from __future__ import annotations

import numpy as np
import pytest

from swallow_train.metrics import throughput
from swallow_train.metrics.throughput import StepWork, Throughput, real_lengths, sample_work
from swallow_train.models.config import ModelConfig

# dense weights per layer: attention 8 x (8 + 2 x 4) + 8 x 8 = 192, MLP 3 x 8 x 16 = 384;
# 2 layers + LM head 32 x 8: 1,408 -> 6 x 1,408 = 8,448 FLOPs per token; attention
# 6 x 2 layers x q_dim 8 = 96 FLOPs per token per token of context.
MODEL = ModelConfig(name="t", hidden_size=8, num_layers=2, num_attention_heads=2,
                    num_key_value_heads=1, head_dim=4, ffn_hidden_size=16, vocab_size=32)


def test_flops_per_token_by_hand() -> None:
    assert MODEL.flops_per_token(1) == 8448 + 96
    assert MODEL.flops_per_token(10) == 8448 + 960


def test_sample_work_charges_attention_per_sample() -> None:
    work = sample_work(MODEL, [3, 5, 0])
    assert work == StepWork(tokens=8, flops=3 * (8448 + 3 * 96) + 5 * (8448 + 5 * 96))
    assert work.flops == 70848
    # the padded-pack accounting it replaces: 10 tokens, attention over the whole pack
    assert 10 * MODEL.flops_per_token(10) == 94080


def test_real_lengths_drop_padding_segments_and_in_sample_padding() -> None:
    pad = 99
    tokens = np.array([1, 2, 3, 4, 5, 6, 7, 8, pad, pad])
    assert real_lengths(tokens, np.array([3, 5, 2]), pad) == [3, 5]
    tokens = np.array([1, 2, 3, pad, 4, 5, 6, 7, pad, pad])  # samples padded to a multiple of 4
    assert real_lengths(tokens, np.array([4, 4, 2]), pad) == [3, 4]


def test_throughput_uses_the_real_work(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 10.0, 12.0])  # __init__, start, stop
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    meter = Throughput(MODEL.flops_per_token(10), world_size=2)
    meter.peak_flops = 1e4
    meter.start()
    m = meter.stop(10, work=sample_work(MODEL, [3, 5]))
    assert m["step_time_s"] == 2.0
    assert m["tokens_per_s_per_gpu"] == 10 / 2 / 2
    assert m["real_tokens_per_s_per_gpu"] == 8 / 2 / 2
    assert m["tflops_per_gpu"] == 70848 / 2 / 2 / 1e12
    assert m["mfu"] == 70848 / 2 / 2 / 1e4


def test_throughput_without_work_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.0, 4.0])
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    meter = Throughput(1000.0, world_size=1)
    meter.peak_flops = 1e6
    meter.start()
    m = meter.stop(8)
    assert m["tokens_per_s_per_gpu"] == 2.0
    assert m["mfu"] == 2000.0 / 1e6
    assert "real_tokens_per_s_per_gpu" not in m
