"""pass@1 of k with the RL verifier on crafted lm-eval samples: exact values, groups, labels."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from swallow_train.evaluation.math_score import EvalDataError, math_key, score_math
from swallow_train.rl.verify import score_response


def in_process(items: Sequence[tuple[str, str]]) -> list[float]:
    """The verifier's own check, here (the stage runs it in PooledVerifier's processes)."""
    return [score_response(response, label) for response, label in items]


def sample(doc_id: int, doc: dict, *responses: str) -> dict:
    return {"doc_id": doc_id, "doc": doc, "resps": [list(responses)], "filtered_resps": ["x"]}


RIGHT = "<think>\n3+4=7\n</think>\n\n\\boxed{7}"
UNCLOSED = "<think>\n3+4=7 so \\boxed{7}"  # thinking never closed: no final answer
IN_THOUGHT = "<think>\\boxed{7}</think>\n\nI am not sure."  # an answer only while thinking
WRONG = "<think>\n</think>\n\n\\boxed{8}"
JA_WIDE = "<think>\n</think>\n\n答え：７個"  # full-width digit and a counter: 7


def test_pass_at_1_of_k_is_the_mean_over_prompts_of_correct_over_k() -> None:
    samples = {"tiny_math": [
        sample(0, {"label": "7"}, RIGHT, UNCLOSED, IN_THOUGHT, WRONG),     # 1/4
        sample(1, {"label": "7"}, RIGHT, JA_WIDE, RIGHT, "\\boxed{7}"),   # 4/4 (no think: ok)
        sample(2, {"label": "7"}, WRONG, WRONG, UNCLOSED, ""),            # 0/4
    ], "tiny_mc_en": [sample(0, {"gold": 1}, "ignored")]}
    scores = score_math(samples, {"tiny_math": "label"}, in_process)
    assert [r["scores"] for r in scores.rows["tiny_math"]] == [
        [1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
    assert scores.metrics == {
        "tiny_math/pass@1": pytest.approx((0.25 + 1.0 + 0.0) / 3),
        "tiny_math/pass@4": pytest.approx(2 / 3),
        # well formed (closed thinking, then \boxed{}): RIGHT, WRONG | RIGHT x2, bare | WRONG x2
        "tiny_math/boxed": pytest.approx(7 / 12)}
    assert "tiny_mc_en" not in scores.rows  # not a math task


def test_groups_are_scored_per_subtask_and_micro_averaged() -> None:
    samples = {
        "minerva_math_algebra": [sample(0, {"answer": "\\frac{1}{2}"}, "The answer is $0.5$."),
                                 sample(1, {"answer": "3"}, "\\boxed{4}")],
        "minerva_math_geometry": [sample(0, {"answer": "\\sqrt{2}"}, "\\boxed{\\sqrt 2}")],
        "minerva_math500": [sample(0, {"answer": "1"}, "\\boxed{2}")],  # not the group's
    }
    scores = score_math(samples, {"minerva_math": "answer"}, in_process)
    assert scores.metrics["minerva_math_algebra/pass@1"] == 0.5
    assert scores.metrics["minerva_math_geometry/pass@1"] == 1.0
    assert scores.metrics["minerva_math/pass@1"] == pytest.approx(2 / 3)  # 3 prompts
    assert "minerva_math500/pass@1" not in scores.metrics
    assert math_key("minerva_math500", {"minerva_math": "a", "minerva_math500": "a"}) == (
        "minerva_math500")


def test_gsm8k_reference_is_the_number_after_hashes() -> None:
    doc = {"answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"}
    scores = score_math({"gsm8k": [sample(0, doc, "The answer is 72.", "The answer is 24.")]},
                        {"gsm8k": "answer"}, in_process)
    assert scores.rows["gsm8k"][0]["label"] == "72"
    assert scores.metrics["gsm8k/pass@1"] == 0.5 and scores.metrics["gsm8k/pass@2"] == 1.0


def test_a_doc_without_the_answer_field_names_the_field_and_the_fix() -> None:
    with pytest.raises(EvalDataError) as err:
        score_math({"aime24": [sample(0, {"Answer": "42"}, "\\boxed{42}")]},
                   {"aime24": "answer"}, in_process)
    assert "'answer'" in str(err.value) and "Answer" in str(err.value)
    assert "eval_suite.math" in str(err.value)


def test_the_stage_checks_in_the_rl_verifier_process_pool() -> None:
    from swallow_train.evaluation.config import VerifyConfig
    from swallow_train.evaluation.math_score import verify_pooled

    check = verify_pooled(VerifyConfig(workers=1, timeout_s=30.0))
    assert check([(RIGHT, "7"), (WRONG, "7"), (JA_WIDE, "7"), (UNCLOSED, "7")]) == [
        1.0, 0.0, 1.0, 0.0]
