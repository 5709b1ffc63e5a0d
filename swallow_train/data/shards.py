"""Bookkeeping of prepared CPT corpora: shard names, atomic JSON markers, the fingerprint that
ties a corpus directory to the inputs it was made from, and `stats.json`.

    {prepared}/{manifest}/{corpus}/shard-00000.bin/.idx   megatron indexed dataset
    {prepared}/{manifest}/{corpus}/shard-00000.json       its fingerprint and exact counts
    {prepared}/{manifest}/{corpus}/done.json              the corpus was read to the end
    {prepared}/{manifest}/stats.json                      documents and tokens per corpus

    from swallow_train.data.shards import read_json
    read_json(Path("prepared/tiny_cpt/stats.json"))["corpora"]["ja_text"]["tokens"]
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from swallow_train.data.manifest import CPTManifest
from swallow_train.data.sources import DataError


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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


def fingerprint(manifest: CPTManifest, i: int, tokenizer_id: str, docs_per_shard: int) -> str:
    c = manifest.corpora[i]
    key = {
        "source": asdict(c.source),
        "text_field": c.text_field,
        "kind": c.kind.value,
        "skip_empty": c.skip_empty,
        "tokenizer": tokenizer_id,
        "docs_per_shard": docs_per_shard,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def check_existing(cdir: Path, fp: str) -> tuple[bool, set[int]]:
    """(corpus fully done, finished shard numbers); DataError if written from other inputs."""
    done, finished = read_json(cdir / "done.json"), set()
    for marker in sorted(cdir.glob("shard-*.json")) + ([cdir / "done.json"] if done else []):
        meta = read_json(marker)
        if meta.get("fingerprint") != fp:
            raise DataError(
                f"{marker}: prepared from a different source, text field, tokenizer or "
                f"docs_per_shard ({meta.get('fingerprint')} != {fp}); it is not overwritten: "
                "remove that corpus directory, or set data.prepared_dir elsewhere"
            )
        if marker.name != "done.json":
            finished.add(int(marker.stem.split("-")[1]))
    return done is not None, finished


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
