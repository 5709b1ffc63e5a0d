"""Reading local sources: a leading UTF-8 BOM and CRLF line ends are valid text; bytes that are
not UTF-8, a truncated or damaged gzip stream and a damaged Parquet file are DataErrors naming the
file (and line) and the fix.

    .venv/bin/python -m pytest tests/data/test_sources.py -q
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from swallow_train.data.sources import BOM, DataError, iter_file, read_text

ROWS = [{"text": "あ"}, {"text": "b"}, {"text": "c"}]


def _jsonl(rows: list[dict[str, str]], end: bytes = b"\n") -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + end for r in rows)


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz", "a.json"])
def test_bom_and_crlf_are_valid_text(tmp_path: Path, name: str) -> None:
    data = BOM + (json.dumps(ROWS).encode() if name == "a.json" else _jsonl(ROWS, b"\r\n"))
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert [r for _, r in iter_file(path)] == ROWS
    if name == "a.jsonl":
        assert [w for w, _ in iter_file(path)] == [f"{path}:{i}" for i in (1, 2, 3)]


def test_bom_after_the_first_line_is_a_broken_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(_jsonl(ROWS[:1]) + BOM + _jsonl(ROWS[1:]))
    with pytest.raises(DataError, match=rf"^{path}:2: broken JSON .*; fix or remove this line"):
        list(iter_file(path))


def test_not_utf8_names_line_column_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(_jsonl(ROWS[:2]) + '{"text": "xいy"}\n'.encode("euc_jp"))
    with pytest.raises(DataError) as err:
        list(iter_file(path))
    assert str(err.value) == (
        f"{path}:3: not UTF-8 text (byte 0xa4 at column 12); convert the file to UTF-8 (e.g. "
        "`iconv -f SHIFT_JIS -t UTF-8 IN > OUT` with its real encoding) or remove this line"
    )
    whole = tmp_path / "b.yaml"
    whole.write_bytes(b"a: 1\nb: \xff\n")
    with pytest.raises(DataError, match=rf"^{whole}:2: not UTF-8 text \(byte 0xff at column 4\)"):
        read_text(whole)


def test_truncated_and_damaged_gzip(tmp_path: Path) -> None:
    data = gzip.compress(_jsonl(ROWS * 2000))
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    seen = 0
    with pytest.raises(DataError) as err:
        for _ in iter_file(path):
            seen += 1
    assert str(err.value).startswith(
        f"{path}: truncated gzip file: the compressed data ends after line {seen} "
    )
    assert seen > 0 and f"copy or download it again (`gzip -t {path}` checks it)" in str(err.value)
    path.write_bytes(b"not gzip at all\n")
    with pytest.raises(DataError, match=rf"^{path}: cannot be read after line 0 \(.*\); .*copy "
                       "the file again"):
        list(iter_file(path))


def test_damaged_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert [r for _, r in iter_file(path)] == ROWS
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match=rf"^{path}: not a readable Parquet file .*; copy it again"):
        list(iter_file(path))
