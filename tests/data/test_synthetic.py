"""The synthetic corpora: deterministic, small, well-formed, and the math is right."""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

from swallow_train.data.pii import conversation_pii
from swallow_train.data.sources import SourceConfig, iter_records
from swallow_train.data.synthetic import math_problem
from swallow_train.data.synthetic_chat import PII_TURNS, my_number_check_digit, tiny_sft_chat
from swallow_train.data.synthetic_sets import GENERATORS, materialize


def test_materialize_is_deterministic_and_small(tmp_path: Path) -> None:
    total = 0
    for name in GENERATORS:
        a, b = materialize(name, tmp_path / "a"), materialize(name, tmp_path / "b")
        assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
        total += a.stat().st_size
    assert total < 2_000_000
    records = list(iter_records(SourceConfig(synthetic="tiny_math"), synthetic_dir=tmp_path / "a"))
    assert len(records) == 200 and records[0][0].endswith("tiny_math.jsonl:1")
    assert all(r["text"].strip() for _, r in records)


def test_math_answers_are_correct() -> None:
    rng = random.Random(0)
    for _ in range(300):
        q, steps, ans, ja = math_problem(rng)
        nums = [int(x) for x in re.findall(r"-?\d+", q)]
        if "x" in q:  # a x + b = c
            a, b, c = nums
            assert a * ans + b == c
        elif "等差数列" in q or "arithmetic" in q:
            first, diff, n = (nums[0], nums[1], nums[2]) if ja else (nums[1], nums[2], nums[0])
            assert ans == sum(first + i * diff for i in range(n))
        else:
            price, n, paid = (nums[1], nums[2], nums[3]) if ja else nums
            assert ans == paid - price * n >= 0
        assert str(ans) in steps[-1]


def test_chat_set_shape_and_planted_pii() -> None:
    chats = list(tiny_sft_chat())
    assert len(chats) == 320
    flagged = [c for c in chats if conversation_pii(c["messages"])]
    assert len(flagged) == len(PII_TURNS) == 10
    cats = sorted(cat for c in flagged for cat in conversation_pii(c["messages"]))
    assert cats == sorted(t[0] for t in PII_TURNS)
    assert all(
        m["reasoning_content"] for c in chats for m in c["messages"] if m["role"] == "assistant"
    )
    assert any(len(c["messages"]) >= 4 for c in chats)  # multi-turn
    assert any(c["messages"][0]["role"] == "system" for c in chats)
    japanese = sum(any("\u3040" <= ch <= "\u30ff" for ch in str(c["messages"])) for c in chats)
    assert 0.3 < japanese / len(chats) < 0.9


def test_my_number_check_digit_known_value() -> None:
    # 12 digits "123456789018": weights 2..7,2..6 over the reversed first 11 digits.
    assert my_number_check_digit("12345678901") == 8
