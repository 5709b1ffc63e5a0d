"""`prepare` / `prepare-sft` on a full disk, and over inputs edited after they were prepared:
a clear error naming the directory (or the changed file) and the fix, no temporary file left,
and everything finished before kept.

    .venv/bin/python -m pytest tests/reliability/test_prepare_faults.py -q
"""

from __future__ import annotations

import errno
import json
import os
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from swallow_train.data import prepare as cpt_prepare
from swallow_train.data.config import SFTDataConfig
from swallow_train.data.manifest import load_manifest
from swallow_train.data.sft_prepare import prepare_sft
from swallow_train.data.sources import DataError
from swallow_train.mcore.indexed import ShardWriter

prepare = partial(cpt_prepare.prepare, writer=ShardWriter)

TOKENIZER = "bundled:qwen3"
DOCS = [json.dumps({"text": f"文書その{i}。Document number {i}."}, ensure_ascii=False)
        for i in range(10)]


def _cpt_manifest(tmp: Path, lines: list[str]) -> Path:
    (tmp / "a.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    (tmp / "b.jsonl").write_text("".join(x + "\n" for x in lines[:4]), encoding="utf-8")
    path = tmp / "m.yaml"
    path.write_text("name: small\nstage: cpt\ncorpora:\n"
                    "  - {name: b, language: en, source: {path: b.jsonl}, budget: 50}\n"
                    "  - {name: a, language: ja, source: {path: a.jsonl}, budget: 50}\n")
    return path


def _run(manifest: Path, root: Path, **kw: Any) -> Any:
    return prepare(load_manifest(manifest), root, TOKENIZER, workers=1, docs_per_shard=4,
                   batch_docs=2, progress=False, **kw)


class _FullFile:
    """A file whose device fills after `room` bytes: write() and the flush in close() raise
    ENOSPC, as a buffered file on a full filesystem does."""

    def __init__(self, real: Any, room: int) -> None:
        self.real, self.room, self.name = real, room, real.name

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)
        self.room -= len(data)
        return self.real.write(data)

    def close(self) -> None:
        self.real.close()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)


def test_full_disk_removes_the_partial_shard_and_keeps_finished_corpora(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swallow_train.mcore import indexed

    manifest, root = _cpt_manifest(tmp_path, DOCS), tmp_path / "out"
    real_builder = indexed.IndexedDatasetBuilder

    def filling(path: str, dtype: Any) -> Any:
        builder = real_builder(path, dtype=dtype)
        if "/a/" in path:  # corpus b (first) fits; corpus a's first shard fills the disk
            builder.data_file = _FullFile(builder.data_file, room=40)
        return builder

    monkeypatch.setattr(indexed, "IndexedDatasetBuilder", filling)
    with pytest.raises(DataError) as err:
        _run(manifest, root)
    text = str(err.value)
    assert f"{root / 'small'}: no space left on the device" in text
    assert "free space there (df -h" in text and "data.prepared_dir" in text
    assert "run `swallow-train prepare` again (it resumes)" in text
    # no temporary shard (shard-*.tmp-<pid>.bin) is left; corpus b is finished and kept
    assert sorted(p.name for p in (root / "small" / "a").iterdir()) == []
    kept = {p.name: p.read_bytes() for p in (root / "small" / "b").iterdir()}
    assert sorted(kept) == ["done.json", "shard-00000.bin", "shard-00000.idx",
                            "shard-00000.json"]
    assert not (root / "small" / "stats.json").exists()
    # with space again, the re-run resumes: b is not rewritten, a is prepared
    monkeypatch.setattr(indexed, "IndexedDatasetBuilder", real_builder)
    again = _run(manifest, root)
    assert again.stats["corpora"]["a"]["documents"] == 10
    assert {p.name: p.read_bytes() for p in (root / "small" / "b").iterdir()} == kept


def test_full_disk_via_the_cli_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from swallow_train import cli
    from swallow_train.data import shards

    manifest = _cpt_manifest(tmp_path, DOCS)
    real = shards.write_json

    def full(path: Path, data: Any) -> None:
        if path.name == "stats.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr("swallow_train.data.prepare.write_json", full)
    code = cli.main(["prepare", f"data.manifest={manifest}",
                     f"data.prepared_dir={tmp_path / 'out'}", "model=tiny_dense",
                     "data.docs_per_shard=4", "data.num_workers=1"])
    err = capsys.readouterr().err.rsplit("\r", 1)[-1].split("\n", 1)[-1]  # after the bar
    assert code == 2
    assert err.startswith("swallow-train prepare: error: ") and "Traceback" not in err
    assert "no space left on the device while writing" in err and "stats.json" in err
    assert f"swallow-train prepare data.manifest={manifest}" in err
    assert (tmp_path / "out" / "small" / "a" / "done.json").is_file()


def test_write_json_leaves_no_temporary_file(tmp_path: Path, monkeypatch: Any) -> None:
    from swallow_train.data import shards

    def full(self: Path, *args: Any, **kw: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError):
        shards.write_json(tmp_path / "x.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def _sft_data(manifest: Path, root: Path) -> SFTDataConfig:
    return SFTDataConfig(manifest=str(manifest), prepared_dir=str(root), num_workers=1)


def test_full_disk_in_prepare_sft_removes_the_staging_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swallow_train.data import sft_prepare

    manifest = Path(__file__).resolve().parents[2] / "data_manifests" / "tiny_sft.yaml"

    def full(*args: Any, **kw: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "tokens.npy")

    monkeypatch.setattr(sft_prepare, "write_packs", full)
    root = tmp_path / "out"
    with pytest.raises(DataError, match=r"tiny_sft: no space left on the device while writing "
                                        r"tokens.npy.*run `swallow-train prepare-sft` again"):
        prepare_sft(load_manifest(manifest), _sft_data(manifest, root), TOKENIZER, 256,
                    progress=False)
    assert [p.name for p in (root / "tiny_sft").iterdir()] == []  # no .seq256.tmp-* left


def _touch(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_an_edited_cpt_input_is_refused_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    manifest, root = _cpt_manifest(tmp_path, DOCS), tmp_path / "out"
    _run(manifest, root)
    shard = root / "small" / "a" / "shard-00000.bin"
    before = shard.read_bytes()
    _touch(tmp_path / "a.jsonl", "".join(x + "\n" for x in DOCS[::-1]))  # same size, new text
    with pytest.raises(DataError) as err:
        _run(manifest, root)
    text = str(err.value)
    assert "the input changed since these shards were prepared (they are stale)" in text
    assert "a.jsonl: size " in text and "mtime_ns" in text
    assert f"remove {root / 'small' / 'a'} and run `swallow-train prepare` again" in text
    assert shard.read_bytes() == before  # nothing overwritten
    # the fix works: the corpus is prepared again from the new input, b is untouched
    import shutil

    shutil.rmtree(root / "small" / "a")
    again = _run(manifest, root)
    assert again.shards_written == 3 and again.shards_skipped == 1


def test_content_hash_notices_an_edit_that_keeps_size_and_mtime(tmp_path: Path) -> None:
    manifest, root = _cpt_manifest(tmp_path, DOCS), tmp_path / "out"
    _run(manifest, root, fingerprint_content=True)
    path = tmp_path / "a.jsonl"
    stat = path.stat()
    path.write_text("".join(x + "\n" for x in DOCS[::-1]), encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    with pytest.raises(DataError, match=r"b.jsonl: prepared with data.fingerprint_content=true; "
                                        r"set it so again"):
        _run(manifest, root)
    with pytest.raises(DataError, match=r"a.jsonl: content changed \(sha256 "):
        _run(manifest, root, fingerprint_content=True)


def test_an_edited_sft_input_is_refused_naming_the_file(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parents[2] / "data_manifests" / "tiny_sft.yaml"
    rows = [json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                     {"role": "assistant", "content": f"a{i}"}]})
            for i in range(6)]
    (tmp_path / "chat.jsonl").write_text("\n".join(rows) + "\n")
    manifest = tmp_path / "sft.yaml"
    manifest.write_text("name: chat\nstage: sft\nsources:\n"
                        "  - {name: c, language: en, source: {path: chat.jsonl}}\n")
    assert source.exists()
    data = _sft_data(manifest, tmp_path / "out")
    stats, out, existed = prepare_sft(load_manifest(manifest), data, TOKENIZER, 64,
                                      progress=False)
    assert not existed and stats["inputs"]
    assert prepare_sft(load_manifest(manifest), data, TOKENIZER, 64,
                       progress=False)[2]  # unchanged input: already prepared
    before = (out / "tokens.npy").read_bytes()
    _touch(tmp_path / "chat.jsonl", "\n".join(rows[:3]) + "\n")
    with pytest.raises(DataError, match=r"an input changed since these packs were prepared"
                                        r"(.|\n)*chat.jsonl: size \d+ -> \d+ bytes(.|\n)*"
                                        rf"remove {out}"):
        prepare_sft(load_manifest(manifest), data, TOKENIZER, 64, progress=False)
    assert (out / "tokens.npy").read_bytes() == before
