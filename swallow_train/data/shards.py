"""Bookkeeping of prepared CPT corpora: shard names, atomic JSON markers, the fingerprint that
ties a corpus directory to the inputs it was made from, and `stats.json`.

    {prepared}/{manifest}/{corpus}/shard-00000.bin/.idx   megatron indexed dataset
    {prepared}/{manifest}/{corpus}/shard-00000.json       its fingerprint and exact counts
    {prepared}/{manifest}/{corpus}/done.json              the corpus was read to the end
    {prepared}/{manifest}/stats.json                      documents and tokens per corpus

    from swallow_train.data.shards import read_json
    read_json(Path("prepared/tiny_cpt/stats.json"))["corpora"]["ja_text"]["tokens"]

Every local input file is part of the fingerprint by size and modification time (with
`data.fingerprint_content=true` by SHA-256 of its bytes instead), so an edited input is noticed:
the markers record each file's identity and the refusal names the files that changed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from swallow_train.data.manifest import CPTManifest
from swallow_train.data.sources import DataError, SourceConfig, source_files

_FULL = (errno.ENOSPC, errno.EDQUOT)


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary name, then rename); no temporary file is left behind."""
    tmp = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def disk_full(exc: BaseException, directory: Path, command: str) -> DataError | None:
    """The DataError for a write that failed on a full disk or quota (None for other errors):
    it names the directory and the fix; what was finished before is kept."""
    if not isinstance(exc, OSError) or exc.errno not in _FULL:
        return None
    what = "quota exceeded" if exc.errno == errno.EDQUOT else "no space left on the device"
    return DataError(
        f"{directory}: {what} while writing {exc.filename or 'prepared data'}; the partial "
        f"output was removed and finished work is kept: free space there (df -h {directory}) "
        f"or set data.prepared_dir to a larger filesystem, then run `{command}` again (it "
        "resumes)"
    )


def input_identity(
    src: SourceConfig, base: Path | None, synth: Path, content: bool = False
) -> dict[str, list[int] | str]:
    """{file: [size, mtime_ns]} (or {file: sha256} with `content`) of a local source's files;
    {} for hub sources (identified by their id) and synthetic ones (a function of the code)."""
    if src.hf or src.synthetic:
        return {}
    out: dict[str, list[int] | str] = {}
    for path in source_files(src, base, synth):
        if content:
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
            out[_name(path, base)] = digest.hexdigest()
        else:
            st = path.stat()
            out[_name(path, base)] = [st.st_size, st.st_mtime_ns]
    return out


def _name(path: Path, base: Path | None) -> str:
    """A file's name relative to the manifest's directory (the same from any working directory
    and on every node)."""
    return os.path.relpath(Path(path).resolve(), Path(base or ".").resolve())


def changed_inputs(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """One line per input file that differs between two `input_identity` results."""
    if not isinstance(old, dict):
        return []
    lines = []
    for name in sorted(set(old) | set(new)):
        before, now = old.get(name), new.get(name)
        if before == now:
            continue
        if before is None or now is None:
            lines.append(f"{name}: {'added' if before is None else 'removed'}")
        elif isinstance(now, list) != isinstance(before, list):
            was = "false" if isinstance(before, list) else "true"
            lines.append(f"{name}: prepared with data.fingerprint_content={was}; set it so "
                         "again, or prepare anew")
        elif isinstance(now, list) and isinstance(before, list):
            lines.append(f"{name}: size {before[0]} -> {now[0]} bytes, mtime_ns {before[1]} -> "
                         f"{now[1]}")
        else:
            lines.append(f"{name}: content changed (sha256 {str(before)[:12]} -> {str(now)[:12]})")
    return lines


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


@lru_cache(maxsize=4)
def tokenizer_identity(spec: str) -> tuple[str, int, int, str]:
    """(spec + hash of the tokenizer's vocabulary and rules, eod id, vocabulary size, the
    serialized Rust tokenizer)."""
    from swallow_train.tokenizer import eod_id, load_tokenizer

    tok = load_tokenizer(spec)
    serialized = tok.backend_tokenizer.to_str()
    digest = hashlib.sha256(serialized.encode()).hexdigest()[:16]
    return f"{spec}#{digest}", eod_id(tok), len(tok), serialized


def fingerprint(
    manifest: CPTManifest, i: int, tokenizer_id: str, docs_per_shard: int,
    inputs: dict[str, Any] | None = None,
) -> str:
    """Hash of what decides corpus `i`'s shards: source, fields, tokenizer, shard size and the
    identity of its input files (`input_identity`)."""
    c = manifest.corpora[i]
    key = {
        **({"inputs": inputs} if inputs else {}),
        "source": asdict(c.source),
        "text_field": c.text_field,
        "kind": c.kind.value,
        "skip_empty": c.skip_empty,
        "tokenizer": tokenizer_id,
        "docs_per_shard": docs_per_shard,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def check_existing(
    cdir: Path, fp: str, inputs: dict[str, Any] | None = None,
    command: str = "swallow-train prepare",
) -> tuple[bool, set[int]]:
    """(corpus fully done, finished shard numbers); DataError if written from other inputs."""
    done, finished = read_json(cdir / "done.json"), set()
    for marker in sorted(cdir.glob("shard-*.json")) + ([cdir / "done.json"] if done else []):
        meta = read_json(marker)
        changed = changed_inputs(meta.get("inputs"), inputs or {})
        if meta.get("fingerprint") != fp and changed:
            raise DataError(
                f"{marker}: the input changed since these shards were prepared (they are "
                "stale):\n  " + "\n  ".join(changed) + f"\nremove {cdir} and run `{command}` "
                "again to prepare that corpus from the new input"
            )
        if meta.get("fingerprint") != fp:
            raise DataError(
                f"{marker}: prepared from a different source, text field, tokenizer or "
                f"docs_per_shard ({meta.get('fingerprint')} != {fp}); it is not overwritten: "
                "remove that corpus directory, or set data.prepared_dir elsewhere"
            )
        if marker.name != "done.json":
            finished.add(int(marker.stem.split("-")[1]))
    return done is not None, finished


def verify_shards(cdir: Path, shards: int, fp: str) -> None:
    """Every shard 0..shards-1 of a corpus is complete: its marker carries `fp` and its
    `.bin` holds exactly the marker's tokens (int32) next to an `.idx`; DataError otherwise."""
    problems = []
    for k in range(shards):
        prefix = cdir / shard_name(k)
        meta = read_json(prefix.with_suffix(".json")) or {}
        binary, index = prefix.with_suffix(".bin"), prefix.with_suffix(".idx")
        if meta.get("fingerprint") != fp:
            problems.append(f"{prefix}.json: missing or from other inputs")
        elif not index.is_file() or not binary.is_file():
            problems.append(f"{prefix}: .bin or .idx missing")
        elif binary.stat().st_size != 4 * int(meta["tokens"]):
            problems.append(f"{binary}: {binary.stat().st_size} bytes, expected "
                            f"4 x {meta['tokens']} tokens")
    if problems:
        raise DataError(
            f"{cdir}: {len(problems)} shard(s) incomplete:\n  " + "\n  ".join(problems[:10])
            + "\nremove those files and run the prepare tasks (or `swallow-train prepare`) again"
        )


def collect_stats(
    manifest: CPTManifest, out: Path, tokenizer: str, eod: int, vocab: int, docs_per_shard: int
) -> dict[str, Any]:
    corpora: dict[str, Any] = {}
    for c in manifest.corpora:
        cdir, shards = out / c.name, []
        for k in range(read_json(cdir / "done.json")["shards"]):
            meta = read_json(cdir / f"{shard_name(k)}.json")
            shards.append(
                {
                    "prefix": f"{c.name}/{shard_name(k)}",
                    "documents": meta["documents"],
                    "tokens": meta["tokens"],
                    "skipped_empty": meta["skipped_empty"],
                }
            )
        corpora[c.name] = {
            "language": c.language.value,
            "kind": c.kind.value,
            "source": c.source.describe(),
            "documents": sum(s["documents"] for s in shards),
            "tokens": sum(s["tokens"] for s in shards),
            "skipped_empty": sum(s["skipped_empty"] for s in shards),
            "shards": shards,
        }
    return {
        "manifest": manifest.name,
        "manifest_file": str(manifest.origin),
        "tokenizer": tokenizer,
        "eod": eod,
        "vocab_size": vocab,
        "dtype": "int32",
        "docs_per_shard": docs_per_shard,
        "corpora": corpora,
    }
