"""The reward's answer extraction and matching on real answer forms (math-verify, in-process)."""

from __future__ import annotations

import pytest

from swallow_train.rl.answer import answer_region, extract_answer, last_boxed, normalize_answer
from swallow_train.rl.verify import check_response, score_response

T = "<think>\nLet me work it out.\n</think>\n\n"

# (label, response): the final answer must match the label
MATCH = [
    ("\\frac{1}{2}", T + "So the answer is \\boxed{0.5}."),
    ("0.5", T + "\\boxed{\\frac{1}{2}}"),
    ("1/2", T + "\\boxed{\\dfrac{1}{2}}"),
    ("0.25", "The final answer is $\\frac14$. I hope it is correct."),
    ("3.5", T + "\\boxed{\\frac{7}{2}}"),
    ("2\\sqrt{3}", T + "\\boxed{\\sqrt{12}}"),
    ("\\frac{\\pi}{2}", T + "\\boxed{\\pi/2}"),
    ("x^2+1", T + "\\boxed{1 + x^2}"),
    ("[1,2)", T + "\\boxed{[1, 2)}"),
    ("(0,\\infty)", T + "\\boxed{(0, \\infty)}"),
    ("\\{1,2\\}", T + "\\boxed{\\{2, 1\\}}"),
    ("5", T + "\\boxed{5\\text{ cm}}"),
    ("36", T + "\\boxed{36\\text{ cm}^2}"),
    ("90", T + "\\boxed{90^\\circ}"),
    ("1000", T + "\\boxed{1{,}000}"),
    ("3", T + "\\boxed{x = 3}"),
    ("12", T + "\\boxed{１２}"),
    ("3/4", T + "\\boxed{３／４}"),
    ("1.5", T + "\\boxed{１．５}"),
    ("12", T + "答え：１２"),
    ("12", T + "答えは１２個です。"),
    ("500", T + "\\boxed{500円}"),
    ("-3", T + "\\boxed{−3}"),
    ("36", T + "Answer: $36$"),
    ("12", T + "The answer is 12."),
    ("12", "<think>\n3 x 4 = 12\n</think>\n\n答えは 12 です。"),
    ("7", "<think>maybe \\boxed{5}?</think>\n\n\\boxed{7}"),
    ("7", T + "First \\boxed{3}, no: the answer is \\boxed{7}"),
    ("7", "\\boxed{7}"),
    ("7", T + "\\boxed 7"),
    (["8", "7"], T + "\\boxed{7}"),
]

NO_MATCH = [
    ("3", T + "\\boxed{4}"),
    ("\\frac{1}{3}", T + "\\boxed{0.33}"),
    ("[1,2]", T + "\\boxed{[1,2)}"),
    ("(1,2)", T + "\\boxed{[1,2]}"),
    ("x^2", T + "\\boxed{2x}"),
    ("7", T + "\\boxed{7.01}"),
    ("\\frac{\\pi}{2}", T + "\\boxed{\\pi}"),
    ("12", T + "\\boxed{１３}"),
    ("12", T + "答えは１３個です。"),
    ("7", "<think>so it is \\boxed{7}"),  # thinking never closed: no final answer
    ("7", "<think>\\boxed{7}</think>\n\nI am not sure."),  # the answer was only thought
    ("42", T + "The result is 42"),  # a bare number is not an answer
    ("7", T + "\\boxed{}"),
    ("7", ""),
]


@pytest.mark.parametrize(("label", "response"), MATCH)
def test_real_answer_forms_match(label: str, response: str) -> None:
    assert score_response(response, label) == 1.0, (label, extract_answer(response))


@pytest.mark.parametrize(("label", "response"), NO_MATCH)
def test_wrong_or_missing_answers_do_not_match(label: str, response: str) -> None:
    assert score_response(response, label) == 0.0, (label, extract_answer(response))


def test_answer_region_is_after_the_last_think_close() -> None:
    assert answer_region("<think>a</think>b</think>c") == "c"
    assert answer_region("<think>never closed") is None
    assert answer_region("no thinking at all") == "no thinking at all"


def test_extraction_order_and_nesting() -> None:
    assert last_boxed("\\boxed{\\frac{1}{2}} and \\fbox{\\{1, 2\\}}") == "\\{1, 2\\}"
    assert last_boxed("\\boxed{\\frac{1}{2}") is None  # unbalanced
    assert extract_answer(T + "Answer: 3\n\\boxed{4}") == "4"  # a box beats an answer line
    assert extract_answer(T + "we get $x=2$ and then $y = 5$") == "y = 5"
    assert extract_answer(T + "The final answer is $\\frac{1}{2}$. I hope it is correct.") == (
        "\\frac{1}{2}")


def test_normalize_full_width_and_counters() -> None:
    assert normalize_answer("１２個") == "12"
    assert normalize_answer("－３") == "-3"
    assert normalize_answer("$１，０００$。") == "1,000"
    assert normalize_answer("x²") == "x^2"
    assert normalize_answer("\\frac{１}{２}") == "\\frac{1}{2}"


@pytest.mark.parametrize("hedge", ["8 または 7", "７または８", "8か7", "8と7", "8、7", "8 or 7"])
def test_a_hedged_answer_scores_zero_in_either_order_and_language(hedge: str) -> None:
    """Two numbers joined by "or"/"または" are a set, not an answer: scored 0 against 7 whichever
    comes last (math-verify alone read "8 または 7" as 7)."""
    assert score_response(T + f"\\boxed{{{hedge}}}", "7") == 0.0
    assert score_response(T + "\\boxed{7 または 7}", "7") == 1.0  # the set {7}
    assert normalize_answer("8 または 7") == "8, 7"


def test_soft_timeout_scores_zero_in_the_main_thread() -> None:
    from tests.rl.scorers import mixed

    assert check_response("SPIN", "1", 0.3, mixed) == 0.0
    assert check_response(T + "\\boxed{1}", "1", 5.0, mixed) == 1.0
