"""SFT record rules through `swallow-train prepare-sft`: reasoning given twice, malformed <think>
tags, an empty answer and two assistant turns in a row are dropped and counted per reason in
stats.json and in the report (first file:line and the fix); the packs carry exactly the kept
conversations, each with one think block; a manifest with nothing left fails with exit 2 naming
the reasons; what was prepared before stays byte-identical.

    .venv/bin/python -m pytest tests/reliability/test_sft_records.py -q
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from swallow_train.cli import main
from swallow_train.data.chat import DROP_REASONS, DROP_RULES
from swallow_train.data.packed import PackedSFTDataset

U = {"role": "user", "content": "2+2?"}


def _a(content: str, reasoning: str | None = None) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "reasoning_content": reasoning}


OK = [U, _a("4", "2+2=4")]
RECORDS: list[tuple[list[dict[str, Any]], str | None]] = [  # (messages, drop reason)
    (OK, None),
    ([U, _a("<think>\nadd\n</think>\n\n4", "2+2=4")], "reasoning_twice"),
    ([U, _a("4", "<think>2+2=4</think>")], "reasoning_twice"),
    ([U, _a("<think>\n2+2=4\n</think>\n\n4")], None),  # reasoning in the content: one block
    ([U, _a("", "2+2=4")], "empty_answer"),
    ([U, _a("<think>\n2+2=4\n</think>\n\n  \n")], "empty_answer"),
    ([U, _a("4"), _a("four", "again")], "consecutive_assistant"),
    ([U, _a("Sure. <think>2+2=4</think> 4")], "malformed_think"),
    ([U, _a("<think>2+2=4")], "malformed_think"),
    ([U, _a("4"), {"role": "user", "content": "times 2?"}, _a("8", "4*2=8")], None),
]


def _expected(messages: list[dict[str, Any]]) -> str:
    """The loss text of a kept conversation: one think block, on the last turn only."""
    out = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        reasoning, answer = m["reasoning_content"], m["content"]
        if "</think>" in answer:
            reasoning, answer = answer.split("</think>")
            reasoning, answer = reasoning.split("<think>")[1].strip("\n"), answer.lstrip("\n")
        if i == len(messages) - 1:
            out += f"<think>\n{(reasoning or '').strip()}\n</think>\n\n"
        out += answer + "<|im_end|>"
    return out


def _manifest(tmp: Path, name: str, records: list[list[dict[str, Any]]]) -> Path:
    lines = "".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for m in records)
    (tmp / f"{name}.jsonl").write_text(lines, encoding="utf-8")
    path = tmp / f"{name}.yaml"
    path.write_text(f"name: {name}\nstage: sft\nsources:\n"
                    f"  - {{name: c, language: en, source: {{path: {name}.jsonl}}}}\n")
    return path


def _cli(capsys: pytest.CaptureFixture[str], manifest: Path, root: Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["prepare-sft", "model=tiny_dense", f"data.manifest={manifest}",
                 f"data.prepared_dir={root}", "train.seq_length=128", "data.num_workers=1"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, dict[str, str]]:
    """A prepared_dir holding a finished preparation, and its snapshot."""
    out = tmp_path / "prepared"
    assert _cli(capsys, _manifest(tmp_path, "done", [OK, OK]), out)[0] == 0
    return out, _snapshot(out)


def test_rules_drop_and_count_each_reason(
    tmp_path: Path, root: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    from swallow_train.tokenizer import load_tokenizer

    tok, (prepared, before) = load_tokenizer("bundled:qwen3"), root
    code, out, err = _cli(capsys, _manifest(tmp_path, "rules", [m for m, _ in RECORDS]), prepared)
    assert code == 0, err
    file = tmp_path / "rules.jsonl"
    stats = json.loads((prepared / "rules" / "seq128" / "stats.json").read_text())
    c = stats["sources"]["c"]
    where = {r: [f"{file}:{i + 1}" for i, (_, why) in enumerate(RECORDS) if why == r]
             for r in DROP_REASONS}
    assert c["dropped"] == {**{r: len(w) for r, w in where.items()}, "pii": 0, "too_long": 0,
                           "contaminated": 0}
    assert c["examples"] == {r: w for r, w in where.items() if w}
    assert (c["read"], c["kept"]) == (len(RECORDS), 3)
    for reason in ("reasoning_twice", "empty_answer", "consecutive_assistant", "malformed_think"):
        line = f"    dropped {reason}: {len(where[reason])} (first at {where[reason][0]}): "
        assert line + DROP_RULES[reason] in out.splitlines()
    # the packs hold exactly the kept conversations, each with a single think block
    ds, texts = PackedSFTDataset(prepared / "rules" / "seq128"), []
    for i in range(len(ds)):
        item, start = ds[i], 0
        for n in item["seq_lens"].tolist():
            mask = item["loss_mask"][start:start + n] == 1
            if mask.any():
                texts.append(tok.decode(item["labels"][start:start + n][mask].tolist()))
            start += n
    assert sorted(texts) == sorted(_expected(m) for m, why in RECORDS if why is None)
    assert all(t.count("<think>") == 1 for t in texts)
    assert {k: v for k, v in _snapshot(prepared).items() if k in before} == before


def test_nothing_left_fails_naming_the_reasons(
    tmp_path: Path, root: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    prepared, before = root
    bad = [m for m, why in RECORDS if why in ("reasoning_twice", "consecutive_assistant")]
    manifest = _manifest(tmp_path, "none_left", bad)
    code, _, err = _cli(capsys, manifest, prepared)
    assert code == 2
    file = tmp_path / "none_left.jsonl"
    assert f"{manifest}: no conversation is left after filtering (dropped: " \
        f"consecutive_assistant 1, first at {file}:3: {DROP_RULES['consecutive_assistant']}; " \
        f"reasoning_twice 2, first at {file}:1: {DROP_RULES['reasoning_twice']})" in err
    assert "Traceback" not in err
    assert _snapshot(prepared) == before
