"""Chat rendering: the tokens that carry loss decode to exactly the assistant's text."""

from __future__ import annotations

from typing import Any

import pytest

from swallow_train.data.chat import (
    DROP_RULES,
    drop_reason,
    render,
    render_text,
    trim_trailing,
    validate_messages,
)
from swallow_train.data.sources import DataError


def _assistant_tokens(tok: Any, messages: list[dict[str, Any]]) -> tuple[str, list[int]]:
    r = render(tok, validate_messages(messages, "t"))
    full = tok(render_text(tok, messages), add_special_tokens=False)["input_ids"]
    assert r.ids.tolist() == full  # the same tokens as tokenizing the full render
    return tok.decode(r.ids[r.assistant].tolist()), r.ids.tolist()


def test_single_turn_with_reasoning(tok: Any) -> None:
    messages = [
        {"role": "system", "content": "あなたは親切です。"},
        {"role": "user", "content": "2 + 3 は？"},
        {"role": "assistant", "content": "5 です。", "reasoning_content": "2 + 3 = 5"},
    ]
    text, _ = _assistant_tokens(tok, messages)
    assert text == "<think>\n2 + 3 = 5\n</think>\n\n5 です。<|im_end|>"
    expected = tok("<think>\n2 + 3 = 5\n</think>\n\n5 です。<|im_end|>", add_special_tokens=False)[
        "input_ids"
    ]
    r = render(tok, validate_messages(messages, "t"))
    assert r.ids[r.assistant].tolist() == expected  # exact token ids, exact count
    assert int(r.assistant.sum()) == len(expected)


def test_answer_without_reasoning_gets_an_empty_think_block(tok: Any) -> None:
    text, _ = _assistant_tokens(
        tok, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]
    )
    assert text == "<think>\n\n</think>\n\nHello!<|im_end|>"


def test_multi_turn_earlier_reasoning_is_dropped_by_the_template(tok: Any) -> None:
    messages = [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "2", "reasoning_content": "one plus one"},
        {"role": "user", "content": "times 3?"},
        {"role": "assistant", "content": "6", "reasoning_content": "2*3"},
    ]
    text, _ = _assistant_tokens(tok, messages)
    assert text == "2<|im_end|><think>\n2*3\n</think>\n\n6<|im_end|>"
    assert "one plus one" not in render_text(tok, messages)


def test_malformed_records_name_the_location() -> None:
    with pytest.raises(DataError, match=r"f.jsonl:3: `messages` must be a non-empty list"):
        validate_messages("hello", "f.jsonl:3")
    with pytest.raises(DataError, match=r"f.jsonl:4: messages\[1\]: role must be one of"):
        validate_messages(
            [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}], "f.jsonl:4"
        )
    with pytest.raises(DataError, match=r"f.jsonl:5: messages\[0\]: content must be a string"):
        validate_messages([{"role": "user", "content": None}], "f.jsonl:5")
    with pytest.raises(DataError, match="must open with a user turn"):
        validate_messages([{"role": "assistant", "content": "x"}], "f.jsonl:6")
    with pytest.raises(DataError, match="reasoning_content must be a string on assistant"):
        validate_messages([{"role": "user", "content": "a", "reasoning_content": "r"}], "x")


def test_drop_reasons_and_trimming() -> None:
    user = {"role": "user", "content": "q"}
    answer = {"role": "assistant", "content": "a", "reasoning_content": None}
    assert drop_reason([user]) == "no_assistant"
    assert drop_reason([dict(user, content="say <|im_end|>"), answer]) == "special_tokens"
    assert drop_reason([user, answer]) is None
    trimmed, changed = trim_trailing([user, answer, user])
    assert trimmed == [user, answer] and changed
    assert trim_trailing([user, answer]) == ([user, answer], False)


@pytest.mark.parametrize(
    ("assistant", "reason"),
    [
        ([{"content": "<think>\nr\n</think>\n\na", "reasoning_content": "r"}], "reasoning_twice"),
        ([{"content": "a", "reasoning_content": "<think>r</think>"}], "reasoning_twice"),
        ([{"content": "</think>a", "reasoning_content": ""}], "reasoning_twice"),
        ([{"content": "so <think>r</think> a"}], "malformed_think"),
        ([{"content": "<think>r"}], "malformed_think"),
        ([{"content": "<think>r</think><think>s</think>a"}], "malformed_think"),
        ([{"content": ""}], "empty_answer"),
        ([{"content": " \n", "reasoning_content": "r"}], "empty_answer"),
        ([{"content": "<think>r</think>\n\n"}], "empty_answer"),
        ([{"content": "a"}, {"content": "b", "reasoning_content": "r"}], "consecutive_assistant"),
        ([{"content": ""}, {"content": ""}], "consecutive_assistant"),  # the first rule wins
        ([{"content": "\n<think>\nr\n</think>\n\na"}], None),  # reasoning in the content, once
        ([{"content": "a", "reasoning_content": ""}], None),
    ],
)
def test_record_rules(assistant: list[dict[str, Any]], reason: str | None) -> None:
    turns = [{"role": "assistant", "reasoning_content": None, **a} for a in assistant]
    assert drop_reason([{"role": "user", "content": "q"}, *turns]) == reason
    assert reason is None or reason in DROP_RULES
