"""The worker of `swallow-train prepare-sft`: PII filter and chat-template rendering of a batch of
validated conversations (see chat.py and pii.py).

    from swallow_train.data.sft_render import init_worker, render_task
    init_worker("bundled:qwen3")
    render_task((0, True, [("f.jsonl:1", messages, None, False)]))
    # -> (0, [("ok", "f.jsonl:1", ids, assistant_mask, False)])
"""

from __future__ import annotations

import os
from typing import Any

from swallow_train.data.chat import render
from swallow_train.data.pii import conversation_pii
from swallow_train.data.sources import DataError

_TOK: dict[str, Any] = {}


def init_worker(tokenizer: str) -> None:
    from swallow_train.tokenizer import load_tokenizer

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _TOK["tok"] = load_tokenizer(tokenizer)


Item = tuple[str, list[dict[str, Any]], str | None, bool]


def render_task(task: tuple[int, bool, list[Item]]) -> tuple[int, list[tuple[Any, ...]]]:
    """(source, pii_filter, [(where, messages, drop reason or None, trimmed)]) -> (source,
    [result per conversation]): ("drop", where, reason), ("pii", where, categories) or
    ("ok", where, ids int32, assistant bool, trimmed)."""
    source, pii_filter, items = task
    out: list[tuple[Any, ...]] = []
    for where, messages, reason, trimmed in items:
        if reason is not None:
            out.append(("drop", where, reason))
            continue
        found = conversation_pii(messages) if pii_filter else set()
        if found:
            out.append(("pii", where, sorted(found)))
            continue
        try:
            r = render(_TOK["tok"], messages)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        out.append(("ok", where, r.ids, r.assistant, trimmed))
    return source, out
