"""Which generations may calibrate AWQ: complete (the turn ended in `<|im_end|>` within the
budget), well formed (exactly one closed `<think>...</think>` first, then a non-empty final
answer) and correct (the RL reward's verifier: `swallow_train.rl.reward.group_reward`, math-verify
in its process pool). Every reject is counted by reason.

    verdicts = await judge(generations, labels)      # Reason | None per generation
    counts = Counter(v.value for v in verdicts if v)

The thinking may be empty (`<think>\\n\\n</think>`, what Qwen3 writes with thinking off and what
the tiny SFT set teaches); it must open the response and be closed exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from swallow_train.rl.answer import THINK_CLOSE, THINK_OPEN, extract_answer

IM_END = "<|im_end|>"


class Reason(Enum):
    """Why a generation is rejected (the keys of the counts), in the order they are checked."""

    truncated = "truncated"
    """It reached the token budget before ending its turn."""
    no_end_of_turn = "no_end_of_turn"
    """It stopped on another token than <|im_end|> (e.g. <|endoftext|>)."""
    no_think = "no_think"
    """No `<think>` at its start."""
    unclosed_think = "unclosed_think"
    """`<think>` opened and never closed."""
    several_think = "several_think"
    """More than one `<think>` or `</think>`."""
    empty_answer = "empty_answer"
    """Nothing after `</think>`."""
    no_answer = "no_answer"
    """Text after `</think>`, but no final answer the verifier reads (\\boxed{}, "answer is")."""
    wrong_answer = "wrong_answer"
    """The verifier says the answer does not match the label."""


@dataclass(frozen=True)
class Generation:
    """One sampled response, as both generation backends return it."""

    prompt_index: int
    """Index of its prompt in the list given to the generator."""
    text: str
    """The response decoded without special tokens (`<think>` is not special in Qwen3)."""
    token_ids: tuple[int, ...]
    """The response's tokens, the stop token included when it stopped."""
    stop: str | None
    """The token it stopped on (`<|im_end|>`, `<|endoftext|>`), None: truncated."""


def form_problem(gen: Generation) -> Reason | None:
    """The first rule `gen` breaks, or None when it is complete and well formed."""
    if gen.stop is None:
        return Reason.truncated
    if gen.stop != IM_END:
        return Reason.no_end_of_turn
    text = gen.text
    opens, closes = text.count(THINK_OPEN), text.count(THINK_CLOSE)
    if opens > 1 or closes > 1:
        return Reason.several_think
    if not text.lstrip().startswith(THINK_OPEN):
        return Reason.no_think
    if closes == 0:
        return Reason.unclosed_think
    answer = text.split(THINK_CLOSE, 1)[1]
    if not answer.strip():
        return Reason.empty_answer
    if extract_answer(text) is None:
        return Reason.no_answer
    return None


async def _scores(items: Sequence[tuple[str, Any]]) -> list[float]:
    from swallow_train.rl.reward import RolloutSample, group_reward

    samples = [RolloutSample(response=text, label=label) for text, label in items]
    rewards = await group_reward(None, samples)
    assert isinstance(rewards, list)
    return rewards


def verify(items: Sequence[tuple[str, Any]]) -> list[float]:
    """The RL reward (1.0 correct, 0.0 not) of each (response, label), all checked at once in
    this process's verifier pool (`rl.reward.configure` sizes it)."""
    if not items:
        return []
    return asyncio.run(_scores(items))


def judge(generations: Sequence[Generation], labels: Sequence[Any]) -> list[Reason | None]:
    """Reason | None (kept) for each generation; `labels[i]` is the label of generation i's
    prompt. Only complete, well formed generations go to the verifier."""
    verdicts: list[Reason | None] = [form_problem(g) for g in generations]
    todo = [i for i, v in enumerate(verdicts) if v is None]
    scores = verify([(generations[i].text, labels[i]) for i in todo])
    for i, score in zip(todo, scores, strict=True):
        if score <= 0.0:
            verdicts[i] = Reason.wrong_answer
    return verdicts


def reject_counts(verdicts: Sequence[Reason | None]) -> dict[str, int]:
    """Every reason's count (zeros included, in check order) and `kept`."""
    counts = {r.value: 0 for r in Reason}
    for v in verdicts:
        if v is not None:
            counts[v.value] += 1
    return {**counts, "kept": sum(v is None for v in verdicts)}
