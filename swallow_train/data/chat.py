"""Render one conversation with the tokenizer's own chat template (Qwen3: thinking inside
`<think>...</think>`) into token ids and an assistant mask: True on every token the assistant
produces (its reasoning, its answer and its closing `<|im_end|>`), False on the system and user
turns and on the `<|im_start|>assistant\\n` header, which the prompt supplies at inference.

How the mask is derived: the full conversation is rendered once; each assistant turn starts where
the template's rendering of the preceding messages with the generation prompt ends (checked to be
an exact prefix of the full render) and ends after its `<|im_end|>`. The full text is tokenized
once with character offsets and a token is an assistant token when it lies inside such a span.
Finally the ids must decode back to exactly the full render.

Multi-turn records: the Qwen3 template keeps `reasoning_content` only for assistant turns after
the last user turn; earlier assistant turns are rendered (and trained) as bare answers without a
<think> block, exactly as the model later sees its own history at inference. Their reasoning is
not trained on. Trailing user turns after the last assistant turn carry no loss and would make
the template drop the last turn's reasoning too, so they are trimmed (and counted).

Record rules (`drop_reason`; each dropped conversation is counted under its first reason): an
assistant turn must follow a user turn (`consecutive_assistant`); reasoning is given once, either
in `reasoning_content` or as one leading `<think>...</think>` block of the content
(`reasoning_twice`, `malformed_think`); every assistant turn has a non-blank answer
(`empty_answer`).

    from swallow_train.data.chat import render
    r = render(tok, [{"role": "user", "content": "1+1?"},
                     {"role": "assistant", "content": "2", "reasoning_content": "1+1=2"}])
    tok.decode(r.ids[r.assistant])  # '<think>\\n1+1=2\\n</think>\\n\\n2<|im_end|>'
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from swallow_train.data.sources import DataError

IM_END = "<|im_end|>"
RESERVED = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
ROLES = ("system", "user", "assistant")


def validate_messages(value: Any, where: str, field: str = "messages") -> list[dict[str, Any]]:
    """The messages of a record, reduced to role/content/reasoning_content; DataError naming
    `where` (file:line) when the record is structurally malformed."""
    if not isinstance(value, list) or not value:
        raise DataError(
            f"{where}: `{field}` must be a non-empty list of messages, got {type(value).__name__}"
        )
    out: list[dict[str, Any]] = []
    for i, m in enumerate(value):
        at = f"{where}: {field}[{i}]"
        if not isinstance(m, dict):
            raise DataError(f"{at}: a message must be an object with role and content")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise DataError(f"{at}: role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise DataError(f"{at}: content must be a string, got {type(content).__name__}")
        if m.get("tool_calls"):
            raise DataError(f"{at}: tool calls are not supported in SFT data")
        reasoning = m.get("reasoning_content")
        if reasoning is not None and (role != "assistant" or not isinstance(reasoning, str)):
            raise DataError(f"{at}: reasoning_content must be a string on assistant turns only")
        if role == "system" and i != 0:
            raise DataError(f"{at}: a system message may only come first")
        msg: dict[str, Any] = {"role": role, "content": content}
        if role == "assistant":
            msg["reasoning_content"] = reasoning
        out.append(msg)
    first = out[1] if out[0]["role"] == "system" and len(out) > 1 else out[0]
    if first["role"] != "user":
        raise DataError(
            f"{where}: `{field}`: the conversation must open with a user turn "
            "(after an optional system message)"
        )
    return out


DROP_RULES = {
    "no_assistant": "no assistant turn to train on",
    "special_tokens": "a text contains <|im_start|>, <|im_end|> or <|endoftext|>; remove them",
    "consecutive_assistant": "two assistant turns in a row; merge them into one turn or put "
    "the user turn between them",
    "reasoning_twice": "reasoning given twice; keep it in reasoning_content or as a leading "
    "<think>...</think> in content, not both",
    "malformed_think": "the <think> tags of a content must form one leading "
    "<think>...</think> block",
    "empty_answer": "an assistant turn with an empty answer; write the answer or drop the turn",
}
"""Each record rule and how to fix a record that breaks it, in the order they are checked (a
dropped conversation is counted under the first rule it breaks)."""
DROP_REASONS = tuple(DROP_RULES)
THINK = ("<think>", "</think>")


def _think_problem(m: dict[str, Any]) -> str | None:
    """`reasoning_twice` when an assistant turn sets `reasoning_content` and also has think tags
    (in its content or inside the reasoning); `malformed_think` when its content's tags are not
    exactly one leading `<think>...</think>` block (the template would silently drop the text
    before `<think>` or between blocks, or train a lone tag as answer text)."""
    content, reasoning = m["content"], m.get("reasoning_content")
    tags = any(t in content for t in THINK)
    if reasoning is not None and (tags or any(t in reasoning for t in THINK)):
        return "reasoning_twice"
    if tags and not (
        content.lstrip().startswith("<think>")
        and content.count("<think>") == content.count("</think>") == 1
    ):
        return "malformed_think"
    return None


def answer_text(content: str) -> str:
    """The answer of an assistant turn: its content after a `</think>` block, if any."""
    return content.split("</think>")[-1]


def drop_reason(messages: list[dict[str, Any]]) -> str | None:
    """Why a (valid) conversation is not trained on, or None; the first of `DROP_REASONS`:
    `no_assistant` (no assistant turn), `special_tokens` (a chat control token in a text),
    `consecutive_assistant` (an assistant turn that does not follow a user turn),
    `reasoning_twice` / `malformed_think` (see `_think_problem`), `empty_answer` (an assistant
    turn whose answer is empty or whitespace, with or without reasoning)."""
    assistant = [m for m in messages if m["role"] == "assistant"]
    if not assistant:
        return "no_assistant"
    for m in messages:
        for text in (m["content"], m.get("reasoning_content") or ""):
            if any(tok in text for tok in RESERVED):
                return "special_tokens"
    if any(a["role"] == b["role"] == "assistant" for a, b in pairwise(messages)):
        return "consecutive_assistant"
    for m in assistant:
        problem = _think_problem(m)
        if problem is not None:
            return problem
    if any(not answer_text(m["content"]).strip() for m in assistant):
        return "empty_answer"
    return None


def trim_trailing(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """Drop the turns after the last assistant turn; (messages, whether any were dropped)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[: last + 1], last + 1 < len(messages)


@dataclass
class Rendered:
    ids: np.ndarray
    """int32 token ids of the full render."""
    assistant: np.ndarray
    """bool, True on tokens the assistant produces."""


def render_text(tok: Any, messages: list[dict[str, Any]]) -> str:
    return tok.apply_chat_template(messages, tokenize=False)


def assistant_spans(tok: Any, messages: list[dict[str, Any]], full: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of every assistant turn in the full render."""
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        if not full.startswith(prefix):
            raise DataError(
                f"chat template: the render of messages[:{i}] with the generation "
                "prompt is not a prefix of the full render, so the turn cannot be located; "
                "remove this record, or use a tokenizer whose chat template renders a "
                "conversation's history unchanged"
            )
        end = full.find(IM_END, len(prefix))
        if end < 0:
            raise DataError(f"chat template: assistant turn {i} has no {IM_END}")
        spans.append((len(prefix), end + len(IM_END)))
    return spans


def render(tok: Any, messages: list[dict[str, Any]]) -> Rendered:
    """Token ids and assistant mask of a validated conversation (see the module docstring)."""
    full = render_text(tok, messages)
    spans = assistant_spans(tok, messages, full)
    enc = tok.backend_tokenizer.encode(full, add_special_tokens=False)
    ids = np.asarray(enc.ids, dtype=np.int32)
    offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
    mask = np.zeros(len(ids), dtype=bool)
    for start, end in spans:
        # a token straddling `start` (template newline + leading content whitespace) stays prompt
        inside = (offsets[:, 0] >= start) & (offsets[:, 1] <= end)
        if not inside.any():
            raise DataError(f"chat template: assistant span {start}:{end} holds no token")
        mask |= inside
    if tok.backend_tokenizer.decode(ids.tolist(), skip_special_tokens=False) != full:
        raise DataError("chat template: the token ids do not decode back to the rendered text")
    return Rendered(ids=ids, assistant=mask)
