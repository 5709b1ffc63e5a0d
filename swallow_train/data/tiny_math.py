"""A tiny synthetic math set with known answers, in English and Japanese, for the CPU default.

Every problem is single-digit addition, subtraction or multiplication whose answer is one digit
(0-9), asked for in `\\boxed{}`: with the empty think block prefilled (thinking off, as the tiny
recipes sample), a response of five tokens (`\\boxed{7}<|im_end|>`) answers it. Each of the 133
facts is asked in four phrasings (`TEMPLATES`: two English, two Japanese), all writing the
expression the same way (`3 + 4`, ASCII digits), so a held-out phrasing of a fact shares its
tokens with the trained phrasings: a model that learns the facts from the train split can answer
the held-out prompts. The set is the same on every machine: all 532 problems in a fixed order,
shuffled by `seed`.

    from swallow_train.data.tiny_math import tiny_problems, format_conversations
    rows = tiny_problems(seed=0)          # slime prompt rows: prompt, label, metadata
    chats = format_conversations(rows)    # the same problems answered, for SFT on the format

The RL stage's prompts (`rl/prompts.py`) and the SFT format set (`data/synthetic_sets.py`,
`tiny_math_chat`) both come from here, and so does the held-out split they agree on: the
`TINY_EVAL_SIZE` (64) prompts whose keys hash lowest are never trained on (SFT or RL); the eval
stage's `tiny_math` task samples 4 answers to each of them (pass@1 of 4).
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

EN_SUFFIX = " Put the final answer in \\boxed{}."
JA_SUFFIX = "最終的な答えを \\boxed{} に書いてください。"
OPERATORS = {"add": "+", "sub": "-", "mul": "×"}
TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": ("What is {expr}?" + EN_SUFFIX, "Calculate {expr}." + EN_SUFFIX),
    "ja": ("{expr} はいくつですか？" + JA_SUFFIX, "{expr} を計算してください。" + JA_SUFFIX),
}
"""The phrasings of every fact, per language; `{expr}` is e.g. `3 + 4`."""
TINY_EVAL_SIZE = 64
"""data.eval_size of the tiny RL recipe (recipes/size/rl_tiny_*.yaml)."""


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


def tiny_problems(seed: int = 0) -> list[dict[str, Any]]:
    """All problems as slime prompt rows, shuffled deterministically by `seed`."""
    rows: list[dict[str, Any]] = []
    for op, a, b, answer in _operations():
        expr = f"{a} {OPERATORS[op]} {b}"
        for lang, templates in TEMPLATES.items():
            for i, template in enumerate(templates):
                rows.append({
                    "prompt": [{"role": "user", "content": template.replace("{expr}", expr)}],
                    "label": str(answer),
                    "metadata": {"source_name": f"tiny_math_{lang}",
                                 "id": f"tiny-{lang}-{op}-{a}-{b}-{i}"},
                })
    random.Random(seed).shuffle(rows)
    return rows


def format_conversations(rows: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """The problems answered correctly (empty thinking), as chat messages for SFT: what teaches
    a tiny model the `\\boxed{}` answer format before RL."""
    return [[*row["prompt"], {"role": "assistant", "content": f"\\boxed{{{row['label']}}}"}]
            for row in rows]


def prompt_key(row: dict[str, Any]) -> str:
    """The deduplication key of a prompt row: its last message, NFKC, casefolded, spaces
    collapsed."""
    text = unicodedata.normalize("NFKC", row["prompt"][-1]["content"]).casefold()
    return re.sub(r"\s+", " ", text).strip()


def _rank(key: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}\0{key}".encode()).hexdigest()


def split_held_out(rows: dict[str, dict[str, Any]], eval_size: int,
                   seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, eval) of deduplicated rows keyed by `prompt_key`: the `eval_size` rows whose keys
    hash lowest (with `seed`) are held out, so the split does not depend on the rows' order."""
    held = set(sorted(rows, key=lambda k: _rank(k, seed))[:eval_size])
    return ([row for key, row in rows.items() if key not in held],
            [row for key, row in rows.items() if key in held])


def tiny_sft_rows(eval_size: int = TINY_EVAL_SIZE, seed: int = 0) -> list[dict[str, Any]]:
    """The tiny problems of the RL train split (the tiny recipe's held-out eval prompts
    excluded), for teaching the answer format in SFT before RL."""
    rows = {prompt_key(row): row for row in tiny_problems(seed)}
    return split_held_out(rows, eval_size, seed)[0]
