"""A tiny synthetic math set with known answers, in English and Japanese, for the CPU default.

Every problem is single-digit addition, subtraction or multiplication whose answer is one digit
(0-9), asked for in `\\boxed{}`: a response of ten tokens (`<think>\\n\\n</think>\\n\\n\\boxed{7}`)
answers it, so a tiny model with a 12-token budget can learn it. Japanese problems write their
numbers in full-width digits (３ + ４), as Japanese text often does; labels are ASCII. The set is
the same on every machine: all 266 problems in a fixed order, shuffled by `seed`.

    from swallow_train.rl.tiny_math import tiny_problems, format_conversations
    rows = tiny_problems(seed=0)          # slime prompt rows: prompt, label, metadata
    chats = format_conversations(rows)    # the same problems answered, for SFT on the format
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

EN_SUFFIX = " Put the final answer in \\boxed{}."
JA_SUFFIX = "最終的な答えを \\boxed{} に書いてください。"
_FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def _operations() -> Iterator[tuple[str, int, int, int]]:
    """(op, a, b, answer) for every single-digit problem with a single-digit answer."""
    for a in range(10):
        for b in range(10):
            if a + b <= 9:
                yield "add", a, b, a + b
            if b <= a:
                yield "sub", a, b, a - b
            if a >= 1 and b >= 1 and a * b <= 9:
                yield "mul", a, b, a * b


def _english(op: str, a: int, b: int) -> str:
    text = {"add": f"What is {a} + {b}?", "sub": f"What is {a} - {b}?",
            "mul": f"What is {a} × {b}?"}[op]
    return text + EN_SUFFIX


def _japanese(op: str, a: int, b: int) -> str:
    fa, fb = str(a).translate(_FULL_WIDTH), str(b).translate(_FULL_WIDTH)
    text = {"add": f"{fa} + {fb} はいくつですか？", "sub": f"{fa} から {fb} を引くといくつですか？",
            "mul": f"{fa} × {fb} はいくつですか？"}[op]
    return text + JA_SUFFIX


def tiny_problems(seed: int = 0) -> list[dict[str, Any]]:
    """All problems as slime prompt rows, shuffled deterministically by `seed`."""
    rows: list[dict[str, Any]] = []
    for op, a, b, answer in _operations():
        for lang, render in (("en", _english), ("ja", _japanese)):
            rows.append({
                "prompt": [{"role": "user", "content": render(op, a, b)}],
                "label": str(answer),
                "metadata": {"source_name": f"tiny_math_{lang}", "id": f"tiny-{lang}-{op}-{a}-{b}"},
            })
    random.Random(seed).shuffle(rows)
    return rows


def format_conversations(rows: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """The problems answered correctly (empty thinking), as chat messages for SFT: what teaches
    a tiny model the `\\boxed{}` answer format before RL."""
    return [[*row["prompt"], {"role": "assistant", "content": f"\\boxed{{{row['label']}}}"}]
            for row in rows]
