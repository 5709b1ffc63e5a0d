"""The quality gate's verdict: it fails exactly when a threshold is exceeded, and its message
names the threshold field and both numbers.

    /tmp/vq/bin/python -m pytest tests/quant/test_gate.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from swallow_train.errors import SwallowError
from swallow_train.quant.config import GateConfig
from swallow_train.quant.gate import GateError, Quality, gate_error, judge_gate

GATE = GateConfig(max_pass_at_1_drop=0.03, max_perplexity_ratio=1.05)


def q(ppl: float, p1: float) -> Quality:
    return Quality(perplexity=ppl, pass_at_1=p1, tokens=1000, samples=1024)


@pytest.mark.parametrize(("after", "failed"), [
    (q(2.0, 0.50), []),                                   # identical
    (q(2.1, 0.47), []),                                   # exactly at both thresholds
    (q(1.9, 0.55), []),                                   # better on both
    (q(2.1, 0.4699), ["gate.max_pass_at_1_drop"]),
    (q(2.1002, 0.47), ["gate.max_perplexity_ratio"]),
    (q(3.0, 0.10), ["gate.max_pass_at_1_drop", "gate.max_perplexity_ratio"]),
])
def test_fails_exactly_when_a_threshold_is_exceeded(after: Quality, failed: list[str]) -> None:
    failures = judge_gate(q(2.0, 0.50), after, GATE)
    assert [f.split(" > ")[1].split("=")[0] for f in failures] == failed


def test_the_message_names_the_field_and_both_numbers() -> None:
    failures = judge_gate(q(2.0, 0.50), q(2.5, 0.40), GATE)
    assert failures[0] == ("math pass@1 fell from 0.5000 (bf16) to 0.4000 (quantized), a drop "
                           "of 0.1000 > gate.max_pass_at_1_drop=0.03")
    assert failures[1] == ("held-out perplexity rose from 2.0000 (bf16) to 2.5000 (quantized), "
                           "a ratio of 1.2500 > gate.max_perplexity_ratio=1.05")
    err = gate_error(failures, Path("runs/x/quantize/hf"))
    assert isinstance(err, GateError) and isinstance(err, SwallowError)  # the CLI prints it
    text = str(err)
    assert failures[0] in text and failures[1] in text
    assert "kept in runs/x/quantize/hf" in text and "raise the threshold" in text


def test_looser_thresholds_pass_the_same_numbers() -> None:
    loose = GateConfig(max_pass_at_1_drop=0.1, max_perplexity_ratio=1.25)
    assert judge_gate(q(2.0, 0.50), q(2.5, 0.40), loose) == []
