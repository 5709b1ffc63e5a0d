"""The calibration filter on crafted responses: what is kept, and the reason each reject gets.

    /tmp/vq/bin/python -m pytest tests/quant/test_filter.py -q
"""

from __future__ import annotations

import pytest

from swallow_train.quant.filter import Generation, Reason, form_problem, judge, reject_counts

IM_END, EOT = "<|im_end|>", "<|endoftext|>"
GOOD = "<think>\n3と4を足す。\n</think>\n\n答えは \\boxed{7} です。"


def gen(text: str, stop: str | None = IM_END) -> Generation:
    return Generation(0, text, (1, 2, 3), stop)


CASES = [  # (name, generation, label, expected verdict)
    ("kept", gen(GOOD), "7", None),
    ("full-width Japanese answer", gen("<think>\n３＋４＝７\n</think>\n\n答え：\\boxed{７}"), "7",
     None),
    ("full-width with a counter", gen("<think>\n数える\n</think>\n\n答えは１２個です。\n"
                                      "**答え**：１２個"), "12", None),
    ("empty thinking", gen("<think>\n\n</think>\n\n\\boxed{7}"), "7", None),
    ("truncated", gen("<think>\n3と4を足すと", stop=None), "7", Reason.truncated),
    ("truncated with an answer", gen(GOOD, stop=None), "7", Reason.truncated),
    ("stopped on endoftext", gen(GOOD, stop=EOT), "7", Reason.no_end_of_turn),
    ("no closing think", gen("<think>\n3+4=7 so \\boxed{7}"), "7", Reason.unclosed_think),
    ("two think blocks", gen("<think>a</think>\n<think>b</think>\n\\boxed{7}"), "7",
     Reason.several_think),
    ("two closings", gen("<think>a</think>b</think>\\boxed{7}"), "7", Reason.several_think),
    ("no think", gen("The answer is \\boxed{7}."), "7", Reason.no_think),
    ("text before think", gen("Sure. <think>a</think>\\boxed{7}"), "7", Reason.no_think),
    ("empty answer", gen("<think>\n3+4=7\n</think>\n\n  "), "7", Reason.empty_answer),
    ("no final answer", gen("<think>\nhmm\n</think>\n\nseven, I think"), "7", Reason.no_answer),
    ("wrong answer", gen("<think>\n3+4=8\n</think>\n\n\\boxed{8}"), "7", Reason.wrong_answer),
    ("wrong full-width answer", gen("<think>\nx\n</think>\n\\boxed{８}"), "7",
     Reason.wrong_answer),
]


@pytest.fixture(scope="module")
def verdicts() -> list[Reason | None]:
    """All cases judged in one call (the RL reward's verifier pool: one worker)."""
    from swallow_train.rl import reward as rm

    rm.configure(rm.RewardConfig(workers=1, timeout_s=30.0))
    try:
        return judge([c[1] for c in CASES], [c[2] for c in CASES])
    finally:
        rm.shutdown()


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c[0] for c in CASES])
def test_each_crafted_response_gets_its_verdict(verdicts, index: int) -> None:
    name, _, _, expected = CASES[index]
    assert verdicts[index] == expected, name


def test_the_counts_name_every_reason_and_the_kept(verdicts) -> None:
    counts = reject_counts(verdicts)
    assert counts == {"truncated": 2, "no_end_of_turn": 1, "no_think": 2, "unclosed_think": 1,
                      "several_think": 2, "empty_answer": 1, "no_answer": 1, "wrong_answer": 2,
                      "kept": 4}


def test_form_is_checked_before_the_verifier_is_asked() -> None:
    """A malformed or incomplete response never reaches the verifier (no pool is started)."""
    assert form_problem(gen(GOOD)) is None
    assert judge([gen(GOOD, stop=None), gen("no think")], ["7", "7"]) == [
        Reason.truncated, Reason.no_think]


def test_thinking_off_prompts_end_in_the_empty_think_block_judged_as_the_response_start(
        tmp_path) -> None:
    """calibration.enable_thinking=false (the tiny recipes): the template prefills the empty
    think block, so the response is the answer alone and is judged with the block in front."""
    import json

    from swallow_train.quant.calibrate import EMPTY_THINK, load_prompts
    from swallow_train.tokenizer import load_tokenizer

    tok = load_tokenizer("bundled:qwen3")
    row = {"prompt": [{"role": "user", "content": "What is 3 + 4?"}], "label": "7",
           "metadata": {"source_name": "tiny_math_en", "id": "x"}}
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (_, [off]), (_, [on]) = (load_prompts(path, tok, 128, thinking) for thinking in (False, True))
    assert off["templated"] == on["templated"] + EMPTY_THINK
    assert form_problem(gen("\\boxed{7}")) is Reason.no_think
    assert form_problem(gen(EMPTY_THINK + "\\boxed{7}")) is None
