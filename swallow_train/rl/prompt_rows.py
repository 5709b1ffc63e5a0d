"""Validate RL prompt rows and labels (slime's JSONL: `prompt`, `label`, `metadata`) and count
every reject by reason. `prepare-rl` drops bad source rows and counts them in `stats.json`; the
local backend's loader refuses a prompt file with any bad row, naming `file:line`, the field, the
fix and the count of each reason (slime reads the same file and would train on it as it is).

    row = clean_row(json.loads(line))        # or raises Rejected(reason, detail)
    rows = read_prompt_file(Path("prepared/rl/tiny_math/train.jsonl"))   # or DataError

Rules: `prompt` is a non-empty message list ending in a user turn, or a string (one user turn,
as slime's `--apply-chat-template` reads it); `metadata` is an object or absent; `label` is one
answer that math-verify parses: a string or a number, or a list holding exactly one distinct
answer. `null`, several answers, other types, text math-verify cannot parse and prose (which it
reads as a product of letters) are rejected. Blank lines (and a UTF-8 BOM) are accepted.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from swallow_train.data.sources import DataError

ROLES = ("system", "user", "assistant")
EXAMPLES = 5


class Reject(Enum):
    """Why a prompt row is rejected (the keys of the counts)."""

    not_json = "not_json"
    not_object = "not_object"
    prompt_missing = "prompt_missing"
    prompt_type = "prompt_type"
    label_missing = "label_missing"
    label_several = "label_several"
    label_type = "label_type"
    label_unparseable = "label_unparseable"
    metadata_type = "metadata_type"


FIX = {
    Reject.not_json: "write one JSON object per line",
    Reject.not_object: "write one JSON object per line",
    Reject.prompt_missing: 'give the row a "prompt": [{"role": "user", "content": "..."}]',
    Reject.prompt_type: 'write "prompt" as a list of {"role", "content"} messages ending in a '
                        'user turn, or as the user text',
    Reject.label_missing: 'give the row its reference answer, e.g. "label": "3/4"',
    Reject.label_several: 'keep one answer: "label": "3" (several solutions in one string: '
                          '"3, 4")',
    Reject.label_type: 'write the label as a string, e.g. "label": "3/4"',
    Reject.label_unparseable: "write the label as a math answer math-verify parses (a number, "
                              "\\frac{3}{4}, x^2+1, (1, 2)), or remove the row",
    Reject.metadata_type: 'write "metadata" as a JSON object ({"source_name": "..."}) or leave '
                          "it out (slime ignores metadata that is not an object)",
}


class Rejected(Exception):
    """A row that fails a rule: the reason and what was wrong (names the field)."""

    def __init__(self, reason: Reject, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Rejected(Reject.label_type, f"label is a {type(value).__name__} ({value!r})")
    if isinstance(value, float) and not math.isfinite(value):
        raise Rejected(Reject.label_unparseable, f"label is {value}")
    return str(value).strip()


def clean_label(value: Any) -> str:
    """The label as the string the reward compares with, or Rejected."""
    from swallow_train.rl.verify import label_problem

    if value is None:
        raise Rejected(Reject.label_missing, "label is null")
    if isinstance(value, list | tuple):
        answers = list(dict.fromkeys(a for a in (_scalar(v) for v in value if v is not None)
                                     if a))
        if len(answers) > 1:
            raise Rejected(Reject.label_several, f"label holds {len(answers)} answers {answers}")
        if not answers:
            raise Rejected(Reject.label_missing, f"label {value!r} holds no answer")
        value = answers[0]
    text = _scalar(value)
    if not text:
        raise Rejected(Reject.label_missing, "label is empty")
    problem = label_problem(text)
    if problem:
        raise Rejected(Reject.label_unparseable, f"label {text!r}: {problem}")
    return text


def clean_prompt(value: Any) -> list[dict[str, str]]:
    if isinstance(value, str):
        if not value.strip():
            raise Rejected(Reject.prompt_type, "prompt is an empty string")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        kind = "an empty list" if isinstance(value, list) else f"a {type(value).__name__}"
        raise Rejected(Reject.prompt_type, f"prompt is {kind}")
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES \
                or not isinstance(msg.get("content"), str):
            raise Rejected(Reject.prompt_type, f"prompt[{i}] is not a message with a role "
                           f"({', '.join(ROLES)}) and a string content: {msg!r:.80}")
    if value[-1]["role"] != "user":
        raise Rejected(Reject.prompt_type, f"prompt ends in a {value[-1]['role']} turn")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def clean_row(row: Any) -> dict[str, Any]:
    """A valid slime row (`prompt` a message list, `label` a string, `metadata` a dict), or
    Rejected naming the field."""
    if not isinstance(row, dict):
        raise Rejected(Reject.not_object, f"the line holds a {type(row).__name__}, not an object")
    if "prompt" not in row:
        raise Rejected(Reject.prompt_missing, "no prompt field")
    prompt = clean_prompt(row["prompt"])
    metadata = row.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise Rejected(Reject.metadata_type, f"metadata is a {type(metadata).__name__} "
                       f"({metadata!r:.60})")
    if "label" not in row:
        raise Rejected(Reject.label_missing, "no label field")
    return {"prompt": prompt, "label": clean_label(row["label"]), "metadata": metadata or {}}


@dataclass
class RejectCounts:
    """Rejects per reason, with the first few locations of each."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, exc: Rejected, where: str) -> None:
        key = exc.reason.value
        self.counts[key] += 1
        if len(self.examples.setdefault(key, [])) < EXAMPLES:
            self.examples[key].append(f"{where}: {exc.detail}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(self) -> list[str]:
        """One line per reason: the count, the first location and the fix."""
        return [f"{key}: {n} (first {self.examples[key][0]}); fix: {FIX[Reject(key)]}"
                for key, n in sorted(self.counts.items())]


def read_prompt_file(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, clean row) of every row of a prompt JSONL; blank lines are skipped. Any
    rejected row: DataError with every reason's count, first `file:line`, field and fix."""
    rows: list[tuple[int, dict[str, Any]]] = []
    rejects = RejectCounts()
    with Path(path).open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise Rejected(Reject.not_json, f"not JSON ({exc.msg})") from None
                rows.append((lineno, clean_row(row)))
            except Rejected as exc:
                rejects.add(exc, f"{path}:{lineno}")
    if rejects.total:
        raise DataError(
            f"{path}: {rejects.total} of {rejects.total + len(rows)} prompt rows rejected:\n  "
            + "\n  ".join(rejects.report())
            + "\nfix or remove these lines (swallow-train prepare-rl writes only valid rows and "
              "counts what it drops in stats.json)")
    if not rows:
        raise DataError(f"{path}: no prompt rows; run swallow-train prepare-rl")
    return rows
