"""A tiny synthetic math set with known answers, in English and Japanese, for the CPU default.

Every problem is single-digit addition with a one-digit sum (0-9), asked for in `\\boxed{}`:
with the empty think block prefilled (thinking off, as the tiny recipes sample), a response of
five tokens (`\\boxed{7}<|im_end|>`) answers it. Each of the 55 facts is asked in four phrasings
(`TEMPLATES`: two English, two Japanese), all writing the expression the same way (`3 + 4`,
ASCII digits), so a held-out phrasing of a fact shares its tokens with the trained phrasings: a
model that learns the facts from the train split can answer the held-out prompts. The set is the
same on every machine: all 220 problems in a fixed order, shuffled by `seed`.

    from swallow_train.data.tiny_math import tiny_problems, format_conversations
    rows = tiny_problems(seed=0)                     # slime prompt rows: prompt, label, metadata
    chats = format_conversations(rows, hedged=0.6)   # answered, for SFT (60% of them hedged)

The RL stage's prompts (`rl/prompts.py`) and the SFT set (`data/synthetic_sets.py`,
`tiny_math_chat`) both come from here, and so does the held-out split they agree on: the
`TINY_EVAL_SIZE` (64) prompts whose keys hash lowest are never trained on (SFT or RL); the eval
stage's `tiny_math` task samples 4 answers to each of them (pass@1 of 4).

The SFT answers are those of an imperfect teacher: `HEDGED_SHARE` of them name the right sum and
a neighbour (`\\boxed{7 or 8}`, `\\boxed{7 または 8}`), which the verifier scores 0 as any
grader would. SFT teaches the facts and the hedging alike; RL, rewarded by the verifier alone,
has to learn to commit to one answer. That is what the tiny pipeline shows RL doing (README,
Two commands): the facts are learned in SFT, the rewarded behaviour in RL.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

EN_SUFFIX = " Put the final answer in \\boxed{}."
JA_SUFFIX = "最終的な答えを \\boxed{} に書いてください。"
HEDGES = {"en": "or", "ja": "または"}
"""The word between the two numbers of a hedged answer, per prompt language."""
HEDGED_SHARE = 0.6
"""The share of the tiny SFT set's answers that are hedged (`format_conversations`)."""
TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": ("What is {expr}?" + EN_SUFFIX, "Calculate {expr}." + EN_SUFFIX),
    "ja": ("{expr} はいくつですか？" + JA_SUFFIX, "{expr} を計算してください。" + JA_SUFFIX),
}
"""The phrasings of every fact, per language; `{expr}` is e.g. `3 + 4`."""
TINY_EVAL_SIZE = 64
"""data.eval_size of the tiny RL recipe (recipes/size/rl_tiny_*.yaml)."""


def _facts() -> Iterator[tuple[int, int]]:
    """(a, b) for every sum of two digits that is a digit."""
    for a in range(10):
        for b in range(10 - a):
            yield a, b


def tiny_problems(seed: int = 0) -> list[dict[str, Any]]:
    """All problems as slime prompt rows, shuffled deterministically by `seed`."""
    rows: list[dict[str, Any]] = []
    for a, b in _facts():
        expr, answer = f"{a} + {b}", a + b
        for lang, templates in TEMPLATES.items():
            for i, template in enumerate(templates):
                rows.append({
                    "prompt": [{"role": "user", "content": template.replace("{expr}", expr)}],
                    "label": str(answer),
                    "metadata": {"source_name": f"tiny_math_{lang}",
                                 "id": f"tiny-{lang}-add-{a}-{b}-{i}"},
                })
    random.Random(seed).shuffle(rows)
    return rows


def format_conversations(rows: list[dict[str, Any]], *,
                         hedged: float = 0.0) -> list[list[dict[str, str]]]:
    """The problems answered in `\\boxed{}` (empty thinking), as chat messages for SFT. The
    rows whose ids hash below `hedged` (a share, the same rows on every machine) get the hedged
    answer: the right sum, then a neighbour (`\\boxed{7 or 8}`)."""
    return [[*row["prompt"], {"role": "assistant", "content": "\\boxed{%s}" % (
        hedge(row) if _share(row["metadata"]["id"]) < hedged else row["label"])}]
            for row in rows]


def hedge(row: dict[str, Any]) -> str:
    """`7 or 8` for a row labelled 7 (`8 or 9`... `9 or 8`): the label, then its neighbour."""
    label = int(row["label"])
    lang = row["metadata"]["source_name"].removeprefix("tiny_math_")
    return f"{label} {HEDGES[lang]} {label + 1 if label < 9 else label - 1}"


def _share(key: str) -> float:
    """A number in [0, 1) fixed by `key`."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 16**8


def prompt_key(row: dict[str, Any]) -> str:
    """The deduplication key of a prompt row: its last message, NFKC, casefolded, spaces
    collapsed."""
    text = unicodedata.normalize("NFKC", row["prompt"][-1]["content"]).casefold()
    return re.sub(r"\s+", " ", text).strip()


def _rank(key: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}\0{key}".encode()).hexdigest()


def split_held_out(rows: dict[str, dict[str, Any]], eval_size: int, seed: int,
                   group: Callable[[dict[str, Any]], str] | None = None,
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, eval) of deduplicated rows keyed by `prompt_key`: the `eval_size` rows whose keys
    hash lowest (with `seed`) are held out, so the split does not depend on the rows' order.
    With `group` (e.g. `fact`), a row is passed over when holding it out would leave its group
    nothing in train: every held-out prompt then asks something the train split teaches."""
    ranked = sorted(rows, key=lambda k: _rank(k, seed))
    if group is None:
        held = set(ranked[:eval_size])
    else:
        sizes = Counter(group(row) for row in rows.values())
        taken: Counter[str] = Counter()
        held = set()
        for key in ranked:
            if len(held) == eval_size:
                break
            name = group(rows[key])
            if taken[name] + 1 < sizes[name]:
                taken[name] += 1
                held.add(key)
    return ([row for key, row in rows.items() if key not in held],
            [row for key, row in rows.items() if key in held])


def fact(row: dict[str, Any]) -> str:
    """The fact a tiny row asks, whatever the phrasing: `add-3-4` for `tiny-ja-add-3-4-1`."""
    return "-".join(row["metadata"]["id"].split("-")[2:5])


def tiny_sft_rows(eval_size: int = TINY_EVAL_SIZE, seed: int = 0) -> list[dict[str, Any]]:
    """The tiny problems of the RL train split (the tiny recipe's held-out eval prompts
    excluded), for teaching the answer format in SFT before RL."""
    rows = {prompt_key(row): row for row in tiny_problems(seed)}
    return split_held_out(rows, eval_size, seed, group=fact)[0]
