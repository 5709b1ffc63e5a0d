"""Where a corpus comes from, and reading its records with errors that name file and line.

A source is a local file, directory or glob of `.jsonl` / `.jsonl.gz` / `.json` / `.parquet`, a
Hugging Face hub dataset (id, config, split; streamed by default, so nothing is downloaded
whole), or one of the project's synthetic generators (`synthetic: <name>`, the tiny CPU data,
written as JSONL on first use). Used by CPT and SFT manifests and by the RL prompt preparation.
Files are UTF-8 (a leading byte order mark is accepted); a byte that is not UTF-8, a truncated
or damaged `.gz` or Parquet file is a DataError naming the file (and line) and the fix.

    from swallow_train.data.sources import SourceConfig, iter_records
    for where, record in iter_records(SourceConfig(path="data/ja/*.jsonl")):
        ...   # where = "data/ja/a.jsonl:12"
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swallow_train.errors import SwallowError


class DataError(SwallowError, ValueError):
    """Bad input data or manifest; the message names the file, line or field and the fix."""


@dataclass(kw_only=True)
class SourceConfig:
    """Exactly one of `path` (local), `hf` (hub dataset id) or `synthetic` (generator name)."""

    path: str | None = None
    """Local file, directory or glob of .jsonl/.jsonl.gz/.json/.parquet files."""
    hf: str | None = None
    """Hub dataset id, e.g. tokyotech-llm/swallow-corpus-v3.2 (loaded with `datasets`)."""
    hf_config: str | None = None
    split: str = "train"
    streaming: bool = True
    data_files: str | None = None
    """Optional `data_files` pattern inside the hub repository."""
    synthetic: str | None = None
    """A set of `swallow_train.data.synthetic_sets.GENERATORS` (the tiny CPU data): written once,
    deterministically, to `<synthetic_dir>/<name>.jsonl` and then read like a local file."""

    def describe(self) -> str:
        if self.path:
            return self.path
        if self.synthetic:
            return f"synthetic:{self.synthetic}"
        cfg = f" ({self.hf_config})" if self.hf_config else ""
        return f"hf:{self.hf}{cfg} split={self.split}"

    def check(self, field: str) -> None:
        """Raise DataError unless exactly one of path / hf / synthetic is set (`field` names it)."""
        if sum(map(bool, (self.path, self.hf, self.synthetic))) != 1:
            raise DataError(
                f"{field}: set exactly one of `path` (local files), `hf` (hub id) or `synthetic` "
                "(a set of swallow_train.data.synthetic_sets)"
            )


_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")


def local_files(path: str, base: Path | None = None) -> list[Path]:
    """Files a local source names, sorted; DataError if there are none."""
    full = Path(path) if base is None or os.path.isabs(path) else base / path
    if full.is_dir():
        files = sorted(p for p in full.rglob("*") if p.name.endswith(_SUFFIXES))
    elif any(ch in str(full) for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(full), recursive=True))
    else:
        files = [full] if full.exists() else []
    if not files:
        raise DataError(f"{full}: no such file (or no .jsonl/.json/.parquet files match)")
    bad = [p for p in files if not p.name.endswith(_SUFFIXES)]
    if bad:
        raise DataError(
            f"{bad[0]}: unsupported file type; use .jsonl, .jsonl.gz, .json or .parquet"
        )
    return files


BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark some Windows tools write first: valid text, dropped on reading."""


def not_utf8(where: str, raw: bytes, offset: int) -> DataError:
    """The DataError for a line `raw` (at `where`, file:line) whose byte `offset` is not UTF-8."""
    column = len(raw[:offset].decode("utf-8", errors="replace")) + 1
    return DataError(
        f"{where}: not UTF-8 text (byte 0x{raw[offset]:02x} at column {column}); convert the "
        "file to UTF-8 (e.g. `iconv -f SHIFT_JIS -t UTF-8 IN > OUT` with its real encoding) or "
        "remove this line"
    )


def read_text(path: Path) -> str:
    """The whole file as UTF-8 text without a leading BOM; DataError naming file:line when a
    byte is not UTF-8 or the file cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}); check the path "
                        "and its permissions") from None
    data = data.removeprefix(BOM)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        end = data.find(b"\n", exc.start)
        line = data[start : end if end >= 0 else len(data)]
        lineno = data.count(b"\n", 0, exc.start) + 1
        raise not_utf8(f"{path}:{lineno}", line, exc.start - start) from None


def _iter_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Read as bytes and decode each line, so that a bad byte is reported with its line."""
    lineno = 0
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                where = f"{path}:{lineno}"
                if lineno == 1:
                    raw = raw.removeprefix(BOM)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise not_utf8(where, raw, exc.start) from None
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"{where}: broken JSON ({exc.msg} at column {exc.colno}); fix or remove "
                        "this line"
                    ) from None
                if not isinstance(record, dict):
                    raise DataError(
                        f"{where}: expected a JSON object, got {type(record).__name__}"
                    )
                yield where, record
    except EOFError:
        raise DataError(
            f"{path}: truncated gzip file: the compressed data ends after line {lineno} (an "
            f"interrupted copy or download); copy or download it again (`gzip -t {path}` checks "
            "it), or drop it from the manifest"
        ) from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DataError(
            f"{path}: cannot be read after line {lineno} ({why}); check the path and its "
            "permissions, or copy the file again if it is damaged"
        ) from None


def _iter_json(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: broken JSON ({exc.msg}); fix the file") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: a .json source must hold a list of objects")
    for i, record in enumerate(data):
        if not isinstance(record, dict):
            raise DataError(f"{path}[{i}]: expected a JSON object")
        yield f"{path}[{i}]", record


def _iter_parquet(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({exc}); copy it again") from None
    row, batches = 0, pf.iter_batches(batch_size=1024)
    while True:
        try:
            batch = next(batches, None)
        except Exception as exc:  # a damaged row group (OSError, ArrowInvalid, ...)
            raise DataError(f"{path}[row {row}]: damaged Parquet data ({exc}); copy the file "
                            "again") from None
        if batch is None:
            return
        for record in batch.to_pylist():
            yield f"{path}[row {row}]", record
            row += 1


def iter_file(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return _iter_jsonl(path)
    if path.name.endswith(".json"):
        return _iter_json(path)
    return _iter_parquet(path)


def iter_hub(src: SourceConfig) -> Iterator[tuple[str, dict[str, Any]]]:
    """Stream a hub dataset; DataError with the fix when the hub cannot be reached."""
    import datasets

    try:
        ds = datasets.load_dataset(
            src.hf,
            src.hf_config,
            split=src.split,
            streaming=src.streaming,
            data_files=src.data_files,
        )
    except Exception as exc:  # ConnectionError, OfflineModeIsEnabled, FileNotFoundError, ...
        offline = (
            os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        )
        why = "offline mode is on" if offline else f"{exc.__class__.__name__}: {exc}"
        raise DataError(
            f"hub dataset {src.describe()} cannot be reached ({why}). Download it on a machine "
            f"with access (huggingface-cli download --repo-type dataset {src.hf} --local-dir "
            "DIR) and point the source at it with `path: DIR`"
        ) from None
    for i, record in enumerate(ds):
        yield f"hf:{src.hf}[{i}]", record


def source_files(
    src: SourceConfig, base: Path | None = None, synthetic_dir: Path | None = None
) -> list[Path]:
    """The local files of a local or synthetic source (generating synthetic data if missing);
    DataError for a hub source, a missing file, or a synthetic source without `synthetic_dir`."""
    if src.synthetic:
        if synthetic_dir is None:
            raise DataError(f"source {src.describe()}: no directory given for synthetic data")
        from swallow_train.data.synthetic_sets import GENERATORS, materialize

        if src.synthetic not in GENERATORS:
            raise DataError(f"synthetic: {src.synthetic!r} is not a generator; one of "
                            f"{', '.join(GENERATORS)}")
        return [materialize(src.synthetic, synthetic_dir)]
    if not src.path:
        raise DataError(f"source {src.describe()} is a hub dataset, not local files")
    return local_files(src.path, base)


def iter_records(
    src: SourceConfig, base: Path | None = None, synthetic_dir: Path | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, record) for every record of a source; local paths resolve against `base`,
    synthetic data lives in (and is generated into) `synthetic_dir`."""
    if src.hf:
        yield from iter_hub(src)
        return
    for path in source_files(src, base, synthetic_dir):
        yield from iter_file(path)
