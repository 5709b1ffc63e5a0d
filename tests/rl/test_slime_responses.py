"""The reward on responses exactly as slime hands them to `--custom-rm-path`: special tokens kept
(`skip_special_tokens=False`, `no_stop_trim=True`), so thinking included and `<|im_end|>` (maybe
`<|endoftext|>` too) at the end of a normally finished turn; none at the end of a truncated one.

The function is loaded as slime's `load_function` does (`rpartition(".")` + `import_module`) and
awaited with slime's call signature: `await f(args, sample)` (`await f(args, samples)` with
`--group-rm`)."""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass, field
from enum import Enum
from types import SimpleNamespace
from typing import Any

import pytest

from swallow_train.rl import reward as rm
from swallow_train.rl.answer import END_TOKENS, end_of_turn, extract_answer

THINK = ("<think>\nThe user wants 1/2 + 1/4. Common denominator: 2/4 + 1/4 = 3/4.\n"
         "Maybe \\boxed{5}? No, that was wrong.\n</think>\n\n")
# (label, final text after the thinking): each is right, and each scored 0 before the special
# token was stripped (it was captured into the answer)
RIGHT = [
    ("\\frac{3}{4}", "Answer: 3/4"),
    ("0.75", "Answer: \\frac{3}{4}"),
    ("x^2+1", "Answer: x^2+1"),
    ("(1, 2)", "Answer: (1, 2)"),
    ("\\sqrt{2}", "Answer: \\sqrt{2}"),
    ("\\frac{3}{4}", "Adding the fractions gives\n\nAnswer: $\\frac{3}{4}$"),
    ("12", "答え：１２個"),
    ("7", "So the result is \\boxed{7}"),
]
WRONG = [
    ("\\frac{3}{4}", "Answer: 3/5"),
    ("x^2+1", "Answer: x^2-1"),
    ("(1, 2)", "Answer: [1, 2]"),
    ("\\sqrt{2}", "Answer: \\sqrt{3}"),
    ("5", "Answer: 7"),  # the \boxed{5} inside the thinking is not the answer
]
ENDINGS = ["<|im_end|>", "<|im_end|><|endoftext|>", "<|endoftext|>", "\n<|im_end|>", ""]


class SlimeStatus(Enum):  # slime.utils.types.Sample.Status
    PENDING = "pending"
    COMPLETED = "completed"
    TRUNCATED = "truncated"
    ABORTED = "aborted"
    FAILED = "failed"


@dataclass
class SlimeSample:  # the fields of slime's Sample that a reward may read
    prompt: str
    response: str
    label: Any
    status: SlimeStatus = SlimeStatus.COMPLETED
    metadata: dict[str, Any] = field(default_factory=dict)
    tokens: list[int] = field(default_factory=list)
    response_length: int = 0
    reward: float | None = None


def load_function(path: str) -> Any:
    """slime.utils.misc.load_function."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


PROMPT = ("<|im_start|>user\nWhat is 1/2 + 1/4?<|im_end|>\n<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def pool() -> Any:
    verifier = rm.configure(rm.RewardConfig(workers=2, timeout_s=20.0))
    verifier.warm_up()
    yield verifier
    rm.shutdown()


def test_end_tokens_are_cut_before_extraction() -> None:
    assert END_TOKENS == ("<|im_end|>", "<|endoftext|>")
    assert end_of_turn("a<|im_end|><|endoftext|>") == "a"
    assert end_of_turn("a<|endoftext|>b<|im_end|>") == "a"
    assert end_of_turn("no token") == "no token"
    for ending in ENDINGS:
        assert extract_answer(THINK + "Answer: 3/4" + ending) == "3/4"
        assert extract_answer(THINK + "The answer is $\\frac{3}{4}$." + ending) == "\\frac{3}{4}"
    # the turn ends at the token: text after it is not the model's answer
    assert extract_answer(THINK + "Answer: 3/4<|im_end|>\n<|im_start|>user\nAnswer: 9") == "3/4"
    # thinking opened but closed only after the end of the turn: no answer
    assert extract_answer("<think>\nhmm<|im_end|></think>Answer: 3") is None


@pytest.mark.parametrize("group", [False, True], ids=["custom-rm", "group-rm"])
def test_slime_custom_rm_on_raw_responses(pool: Any, group: bool) -> None:
    args = SimpleNamespace(custom_rm_path=rm.GROUP_REWARD_PATH if group else rm.REWARD_PATH,
                           group_rm=group, reward_key=None)
    fn = load_function(args.custom_rm_path)
    cases = [(label, THINK + text + end, 1.0) for label, text in RIGHT for end in ENDINGS]
    cases += [(label, THINK + text + end, 0.0) for label, text in WRONG for end in ENDINGS[:2]]
    samples = [SlimeSample(prompt=PROMPT, response=response, label=label)
               for label, response, _ in cases]

    async def run() -> list[float]:
        if group:
            return list(await fn(args, samples))
        return [await fn(args, s) for s in samples]

    scores = asyncio.run(run())
    wrong = [(c[1], s) for c, s in zip(cases, scores, strict=True) if s != c[2]]
    assert not wrong
    assert scores == [c[2] for c in cases]


def test_truncated_and_unfinished_raw_responses_score_zero(pool: Any) -> None:
    fn = load_function(rm.REWARD_PATH)
    args = SimpleNamespace(custom_rm_path=rm.REWARD_PATH)
    samples = [
        # hit the length limit mid-thought: no end token, thinking never closed
        SlimeSample(prompt=PROMPT, response="<think>\n1/2 + 1/4 = 3/4, so \\boxed{3/4}",
                    label="3/4", status=SlimeStatus.TRUNCATED),
        # a right answer, but slime marked it truncated: 0 (we do not train on cut responses)
        SlimeSample(prompt=PROMPT, response=THINK + "Answer: 3/4", label="3/4",
                    status=SlimeStatus.TRUNCATED),
        SlimeSample(prompt=PROMPT, response=THINK + "Answer: 3/4<|im_end|>", label="3/4",
                    status=SlimeStatus.ABORTED),
        # finished without ever closing the thinking: no final answer
        SlimeSample(prompt=PROMPT, response="<think>\nAnswer: 3/4<|im_end|>", label="3/4"),
        SlimeSample(prompt=PROMPT, response=THINK + "Answer: 3/4<|im_end|>", label="3/4"),
    ]

    async def run() -> list[float]:
        return [await fn(args, s) for s in samples]

    assert asyncio.run(run()) == [0.0, 0.0, 0.0, 0.0, 1.0]
