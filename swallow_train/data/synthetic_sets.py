"""The named synthetic sets (`synthetic: <name>` in a manifest, the tiny CPU data), written once
to `<directory>/<name>.jsonl` and then read like a local file. Every set is seeded: the same name
always gives byte-identical JSONL.

    from swallow_train.data.synthetic_sets import materialize
    path = materialize("tiny_ja_text", Path("prepared/synthetic"))   # written once, then reused
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from swallow_train.data.synthetic import code, en_text, ja_text, math, parallel
from swallow_train.data.synthetic_chat import tiny_sft_chat
from swallow_train.data.tiny_math import HEDGED_SHARE, format_conversations, tiny_sft_rows


def _make(
    record: Callable[[random.Random], dict[str, Any]], count: int, seed: int
) -> Callable[[], Iterator[dict[str, Any]]]:
    def generate() -> Iterator[dict[str, Any]]:
        rng = random.Random(seed)
        for i in range(count):
            yield {"id": i, **record(rng)}

    return generate


def _chat() -> Iterator[dict[str, Any]]:
    return tiny_sft_chat()


def _math_chat() -> Iterator[dict[str, Any]]:
    """The tiny RL arithmetic problems of its train split, answered in the `\\boxed{}` format
    the reward reads, `HEDGED_SHARE` of them hedged (`7 or 8`: what RL has to unlearn)."""
    for i, messages in enumerate(format_conversations(tiny_sft_rows(), hedged=HEDGED_SHARE)):
        yield {"id": i, "messages": messages}


GENERATORS: dict[str, Callable[[], Iterator[dict[str, Any]]]] = {
    "tiny_ja_text": _make(ja_text, 160, 1),
    "tiny_en_text": _make(en_text, 160, 2),
    "tiny_parallel": _make(parallel, 120, 3),
    "tiny_math": _make(math, 200, 4),
    "tiny_code": _make(code, 120, 5),
    "tiny_sft_chat": _chat,
    "tiny_math_chat": _math_chat,
}


def materialize(name: str, directory: Path) -> Path:
    """`directory/<name>.jsonl`, generated (atomically) if it is not there yet. `name` is a key
    of GENERATORS (`sources.source_files` refuses any other with a DataError)."""
    path = Path(directory) / f"{name}.jsonl"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in GENERATORS[name]():
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path
