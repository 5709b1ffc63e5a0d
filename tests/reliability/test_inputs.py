"""Unreadable and unusual inputs through the CLI (`swallow-train prepare` / `prepare-sft`): a
truncated `.jsonl.gz`, a byte that is not UTF-8 and a damaged tokenizer directory end in exit 2
with one message naming the file (and line) and the fix, and leave what was prepared before
byte-identical with no stray file; a UTF-8 byte order mark is accepted.

    .venv/bin/python -m pytest tests/reliability/test_inputs.py -q
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from swallow_train.cli import main
from swallow_train.tokenizer import bundled_qwen3_dir

BOM = b"\xef\xbb\xbf"
CHAT = [
    {"messages": [{"role": "user", "content": f"{i}+{i}?"},
                  {"role": "assistant", "content": str(2 * i), "reasoning_content": "add"}]}
    for i in range(4)
]
TEXT = [{"text": f"文書その{i}。Document number {i}."} for i in range(4)]
COMMANDS = {"prepare": ("cpt", "corpora", TEXT), "prepare-sft": ("sft", "sources", CHAT)}
SETTINGS = {"prepare": ["data.split='1,1,0'", "train.train_steps=1"], "prepare-sft": []}


def _dump(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode()


def _lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(_dump(r) + b"\n" for r in records)


def _manifest(tmp: Path, command: str, file: str, data: bytes, name: str = "in") -> Path:
    """A one-source manifest `{name}_{stage}` of `command`'s stage over `tmp/file` (`data`)."""
    stage, key, _ = COMMANDS[command]
    (tmp / file).write_bytes(data)
    extra = ", budget: 50" if stage == "cpt" else ""
    path = tmp / f"{stage}.yaml"
    path.write_text(f"name: {name}_{stage}\nstage: {stage}\n{key}:\n"
                    f"  - {{name: c, language: en, source: {{path: {file}}}{extra}}}\n")
    return path


def _cli(capsys: pytest.CaptureFixture[str], command: str, manifest: Path, root: Path,
         *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main([command, "model=tiny_dense", f"data.manifest={manifest}",
                 f"data.prepared_dir={root}", "train.seq_length=64", "data.num_workers=1",
                 *SETTINGS[command], *extra])
    return code, capsys.readouterr().err


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared_dir that already holds a finished SFT and CPT preparation."""
    tmp = tmp_path_factory.mktemp("finished")
    root = tmp / "prepared"
    for command, (_, _, records) in COMMANDS.items():
        manifest = _manifest(tmp, command, f"{command}.jsonl", _lines(records), "done")
        assert main([command, "model=tiny_dense", f"data.manifest={manifest}",
                     f"data.prepared_dir={root}", "train.seq_length=64",
                     "data.num_workers=1", *SETTINGS[command]]) == 0
    return root


@pytest.fixture
def root(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "prepared"
    shutil.copytree(finished, out)
    return out


@pytest.mark.parametrize("command", list(COMMANDS))
def test_truncated_gzip(command: str, tmp_path: Path, root: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    records = COMMANDS[command][2] * 200
    data = gzip.compress(_lines(records))
    manifest = _manifest(tmp_path, command, "c.jsonl.gz", data[: len(data) // 2])
    before = _snapshot(root)
    code, err = _cli(capsys, command, manifest, root)
    assert code == 2
    assert f"{tmp_path / 'c.jsonl.gz'}: truncated gzip file: the compressed data ends after " \
        "line " in err
    assert "copy or download it again" in err and "Traceback" not in err
    assert _snapshot(root) == before


@pytest.mark.parametrize(("command", "file"), [("prepare", "c.jsonl"),
                                               ("prepare-sft", "c.jsonl.gz"),
                                               ("prepare-sft", "c.json")])
def test_byte_that_is_not_utf8(command: str, file: str, tmp_path: Path, root: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    records = COMMANDS[command][2]
    if file == "c.json":  # one record per line: line 3 holds the second record
        text = b"[\n" + b",\n".join(_dump(r) for r in records) + b"\n]\n"
        line = 3
    else:
        text, line = _lines(records), 2
    good = _dump(records[1])
    bad = good.replace(b'"}', '\u3042"}'.encode("shift_jis"), 1)  # あ in Shift-JIS: 82 a0
    assert bad != good and text.count(good) == 1
    text = text.replace(good, bad)
    manifest = _manifest(tmp_path, command, file, gzip.compress(text) if ".gz" in file else text)
    before = _snapshot(root)
    code, err = _cli(capsys, command, manifest, root)
    assert code == 2
    column = len(good.split(b'"}')[0].decode()) + 1  # where あ starts
    assert f"{tmp_path / file}:{line}: not UTF-8 text (byte 0x82 at column {column}); convert " \
        "the file to UTF-8" in err
    assert "Traceback" not in err
    assert _snapshot(root) == before


def test_manifest_that_is_not_utf8(tmp_path: Path, root: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest(tmp_path, "prepare-sft", "c.jsonl", _lines(CHAT))
    line = manifest.read_text().count("\n") + 1
    manifest.write_bytes(manifest.read_bytes() + "# 説明\n".encode("shift_jis"))  # 90 e0 ...
    before = _snapshot(root)
    code, err = _cli(capsys, "prepare-sft", manifest, root)
    assert code == 2
    assert f"{manifest}:{line}: not UTF-8 text (byte 0x90 at column 3); convert the file" in err
    assert _snapshot(root) == before


@pytest.mark.parametrize(("command", "file"), [("prepare-sft", "c.jsonl"),
                                               ("prepare", "c.jsonl.gz"),
                                               ("prepare", "c.json")])
def test_byte_order_mark_is_accepted(command: str, file: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The same records with and without a BOM (in the data and in the manifest) prepare to
    the same tokens."""
    records = COMMANDS[command][2]
    text = json.dumps(records, ensure_ascii=False).encode() if file == "c.json" else _lines(records)
    totals = []
    for name, prefix in (("plain", b""), ("bom", BOM)):
        tmp = tmp_path / name
        tmp.mkdir()
        data = prefix + text
        manifest = _manifest(tmp, command, file, gzip.compress(data) if ".gz" in file else data)
        manifest.write_bytes(prefix + manifest.read_bytes())
        code, err = _cli(capsys, command, manifest, tmp / "out")
        assert code == 0, err
        stage = COMMANDS[command][0]
        stats = json.loads(next((tmp / "out").rglob("stats.json")).read_text())
        if stage == "sft":
            totals.append((stats["total"]["read"], stats["total"]["kept"], stats["tokens"]))
            assert stats["total"]["read"] == stats["total"]["kept"] == len(records)
        else:
            totals.append((stats["corpora"]["c"]["documents"], stats["corpora"]["c"]["tokens"]))
            assert stats["corpora"]["c"]["documents"] == len(records)
    assert totals[0] == totals[1]


def _damage(directory: Path, how: str) -> None:
    file = directory / "tokenizer.json"
    if how == "truncated":
        file.write_bytes(file.read_bytes()[:4096])
    elif how == "no_model":
        file.write_text('{"version": "1.0", "added_tokens": []}')
    else:
        file.write_text("[]")


@pytest.mark.parametrize(
    ("how", "what"),
    [
        ("truncated", "broken JSON"),
        ("no_model", "not a tokenizer the `tokenizers` library can read (Model missing."),
        ("list", "a JSON object is expected, got list"),
    ],
)
def test_damaged_tokenizer_directory(how: str, what: str, tmp_path: Path, root: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    tok = tmp_path / "tok"
    shutil.copytree(bundled_qwen3_dir(), tok)
    _damage(tok, how)
    manifest = _manifest(tmp_path, "prepare-sft", "c.jsonl", _lines(CHAT))
    before = _snapshot(root)
    code, err = _cli(capsys, "prepare-sft", manifest, root, f"model.tokenizer={tok}")
    assert code == 2
    assert f"{tok / 'tokenizer.json'}: " in err and what in err
    assert f"copy its files again from the model repository (e.g. huggingface-cli download " \
        f"Qwen/Qwen3-8B --include 'tokenizer*' 'vocab.json' 'merges.txt' --local-dir {tok})" in err
    assert "Traceback" not in err
    assert _snapshot(root) == before
