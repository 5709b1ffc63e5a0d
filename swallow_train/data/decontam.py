"""Decontamination: the eval-side n-gram index that `prepare`, `prepare-sft` and `prepare-rl`
check every training document, conversation and prompt against (`data/decontam_check.py`).

    swallow-train prepare data.decontam.eval_sets='[evals/*.jsonl]'               # report
    swallow-train prepare-sft data.decontam.eval_sets='[evals/*.jsonl]' data.decontam.drop=true

Every file an entry of `eval_sets` names (JSONL or Parquet; a directory or a glob) is one eval
set; every string value of a row (nested lists and objects too) is eval text. The index maps
the 64-bit hash of each n-gram (`data/ngrams.py`) to the rows that hold it, as two sorted numpy
arrays (12 bytes per (n-gram, row) pair), saved under `{prepared_dir}/decontam/` and memory-
mapped by the worker processes, so a machine holds one copy whatever the number of workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swallow_train.data.ngrams import ngram_hashes
from swallow_train.data.sources import DataError, iter_file, local_files


@dataclass(kw_only=True)
class DecontamConfig:
    eval_sets: list[str] = field(default_factory=list)
    """Evaluation data to keep out of training: JSONL/Parquet files, directories or globs (each
    file is one eval set; every string of a row is eval text). Empty: no check."""
    drop: bool = False
    """Leave out the training documents (conversations, prompts) that overlap an eval set, and
    count them; false: only report them."""
    ja_n: int = 20
    """Characters per n-gram in Japanese (CJK) text, after normalisation."""
    en_n: int = 13
    """Words per n-gram in other text (the GPT-3 / Llama practice)."""
    min_overlap: int = 1
    """A training text is contaminated by an eval row when they share at least this many
    distinct n-grams."""
    boilerplate_texts: int = 10
    """An n-gram found in more distinct eval texts than this, and a text repeated in more rows
    than this and in over 10% of its set's rows, are template text (instructions, answer
    formats): not indexed. Identical texts count once, so a passage shared by a few questions
    (SQuAD, JSQuAD) stays indexed."""

    @property
    def active(self) -> bool:
        return bool(self.eval_sets)


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value (dict values, list items), depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def text_hashes(value: Any, cfg: DecontamConfig) -> np.ndarray:
    """The distinct n-gram hashes of every string in `value` (each string on its own)."""
    parts = [ngram_hashes(s, cfg.ja_n, cfg.en_n) for s in strings(value)]
    parts = [p for p in parts if p.size]
    if not parts:
        return np.empty(0, np.uint64)
    return parts[0] if len(parts) == 1 else np.unique(np.concatenate(parts))


def eval_files(cfg: DecontamConfig, field_name: str) -> list[Path]:
    """The eval set files, in order, each once (DataError naming the field and the fix)."""
    files: list[Path] = []
    for entry in cfg.eval_sets:
        try:
            found = local_files(entry)
        except DataError as exc:
            raise DataError(f"{field_name}.eval_sets: {exc}; write the eval data first (e.g. "
                            "dump the suite's documents to JSONL), or remove the entry") from None
        files += [f for f in found if f not in files]
    return files


def _settings(cfg: DecontamConfig) -> dict[str, int]:
    return {k: v for k, v in asdict(cfg).items() if k not in ("eval_sets", "drop")}


def digest(cfg: DecontamConfig, files: list[Path]) -> str:
    """What decides the index: the settings and every eval file's bytes (SHA-256)."""
    h = hashlib.sha256(json.dumps(_settings(cfg), sort_keys=True).encode())
    for path in files:
        h.update(str(path).encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()[:16]


def identity(cfg: DecontamConfig, field_name: str) -> dict[str, str]:
    """Part of the prepared data's input identity: with `drop` on, the output depends on the
    eval sets ({"decontam <file>": digest of the settings and that file}); otherwise {}."""
    if not (cfg.active and cfg.drop):
        return {}
    return {f"decontam {f}": digest(cfg, [f]) for f in eval_files(cfg, field_name)}


FILTER_BITS_PER_KEY = 16
"""Bits of the in-memory prefilter per indexed pair: ~6% of the absent n-grams pass it to the
binary search (one hash, the top bits)."""
ARRAYS = ("hashes", "rows", "row_set", "bits")


def _host() -> str:
    """A temporary-name suffix unique to this process on a shared filesystem (the array tasks
    of `prepare` may build the same index at once; each renames complete files into place)."""
    return f"{socket.gethostname()}-{os.getpid()}"

TEMPLATE_SHARE = 0.1
"""A text repeated in more than this share of its eval set's rows (and in more than
`boilerplate_texts` rows) is an instruction, not a passage shared by a few questions."""


@dataclass
class Lookup:
    """The arrays a worker maps: what `match` needs."""

    hashes: np.ndarray
    """Sorted uint64 n-gram hashes, one entry per (n-gram, eval row) pair."""
    rows: np.ndarray
    """uint32 eval row of each entry."""
    row_set: np.ndarray
    """uint32 eval set (file) of each row."""
    bits: np.ndarray
    """Prefilter: bit `h >> (64 - k)` is set for every indexed hash h (uint8, 2^k bits)."""

    @classmethod
    def of(cls, hashes: np.ndarray, rows: np.ndarray, row_set: np.ndarray) -> Lookup:
        k = max(16, int(np.ceil(np.log2(max(hashes.size, 1) * FILTER_BITS_PER_KEY))))
        bits = np.zeros(1 << (k - 3), np.uint8)
        slots = np.unique(hashes >> np.uint64(64 - k))
        np.bitwise_or.at(bits, slots >> np.uint64(3), np.left_shift(1, slots & np.uint64(7))
                         .astype(np.uint8))
        return cls(hashes, rows, row_set, bits)

    @classmethod
    def load(cls, path: str) -> Lookup:
        """Memory-mapped (one copy in the page cache for every process of the machine)."""
        return cls(*(np.load(f"{path}.{k}.npy", mmap_mode="r").view(np.ndarray)
                     for k in ARRAYS))

    def save(self, path: str) -> None:
        for key in ARRAYS:
            tmp = f"{path}.{key}.tmp-{_host()}.npy"
            np.save(tmp, getattr(self, key))
            os.replace(tmp, f"{path}.{key}.npy")

    def match(self, hashes: np.ndarray, min_overlap: int) -> dict[int, int]:
        """{eval set: its first row sharing >= min_overlap n-grams} for a text's hashes."""
        keys = self.hashes
        if hashes.size == 0 or keys.size == 0:
            return {}
        slots = hashes >> np.uint64(64 - 3 - int(np.log2(self.bits.size)))
        maybe = hashes[(self.bits[slots >> np.uint64(3)] >> (slots & np.uint64(7))) & 1 == 1]
        lo = np.searchsorted(keys, maybe, "left")
        found = maybe[keys[np.minimum(lo, keys.size - 1)] == maybe]
        if found.size == 0:
            return {}
        lo = np.searchsorted(keys, found, "left")
        hi = np.searchsorted(keys, found, "right")
        hit_rows = np.concatenate([self.rows[a:b] for a, b in zip(lo, hi, strict=True)])
        ids, counts = np.unique(hit_rows, return_counts=True)
        out: dict[int, int] = {}
        for row in ids[counts >= min_overlap].tolist():  # ascending: each set's first row
            out.setdefault(int(self.row_set[row]), int(row))
        return out


@dataclass
class EvalIndex:
    lookup: Lookup
    sets: list[str]
    """Eval set names (their file paths)."""
    row_where: list[str]
    """file:line of each row."""
    info: dict[str, Any]
    """Per set: rows, rows without an n-gram (too short), n-grams; boilerplate dropped."""
    digest: str
    min_overlap: int = 1
    path: str = ""
    """`{root}/decontam/{digest}`: the saved arrays (`{path}.hashes.npy`, ...) workers map."""

    def match(self, hashes: np.ndarray) -> dict[int, int]:
        """{eval set: its first row sharing >= min_overlap n-grams} for a text's hashes."""
        return self.lookup.match(hashes, self.min_overlap)


def build(cfg: DecontamConfig, field_name: str) -> EvalIndex:
    """Read every eval file and index its rows' n-grams (in memory; eval sets are small). An
    identical text in several rows (a passage shared by questions) is indexed once, with the
    first row that holds it."""
    files = eval_files(cfg, field_name)
    sets = [str(f) for f in files]
    texts: list[list[str]] = []
    row_set, row_where = [], []
    for si, path in enumerate(files):
        for where, record in iter_file(path):
            texts.append(list(dict.fromkeys(strings(record))))
            row_set.append(si)
            row_where.append(where)
    repeats = Counter((row_set[r], text) for r, row in enumerate(texts) for text in row)
    set_rows = Counter(row_set)
    info: dict[str, Any] = {"sets": {name: {"rows": 0, "rows_without_ngrams": 0, "ngrams": 0}
                                     for name in sets}, "template_texts": 0,
                            "boilerplate_ngrams": 0}
    sizes: dict[str, int] = {}  # distinct text -> its n-grams
    parts, part_rows = [], []
    for r, row in enumerate(texts):
        grams = 0
        for text in row:
            if text not in sizes:
                h = ngram_hashes(text, cfg.ja_n, cfg.en_n)
                sizes[text] = h.size
                n = repeats[row_set[r], text]  # the same text in many rows of the set
                if n > cfg.boilerplate_texts and n > TEMPLATE_SHARE * set_rows[row_set[r]]:
                    info["template_texts"] += 1
                else:
                    parts.append(h)
                    part_rows.append(np.full(h.size, r, np.uint32))
            grams += sizes[text]
        entry = info["sets"][sets[row_set[r]]]
        entry["rows"] += 1
        entry["rows_without_ngrams"] += grams == 0
        entry["ngrams"] += grams
    hashes = np.concatenate(parts) if parts else np.empty(0, np.uint64)
    rows = np.concatenate(part_rows) if part_rows else np.empty(0, np.uint32)
    order = np.lexsort((rows, hashes))
    hashes, rows = hashes[order], rows[order]
    if hashes.size:  # an n-gram in more than boilerplate_texts distinct texts: template
        starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
        counts = np.diff(np.r_[starts, hashes.size])
        keep = np.repeat(counts <= cfg.boilerplate_texts, counts)
        keep[1:] &= (hashes[1:] != hashes[:-1]) | (rows[1:] != rows[:-1])  # one per row
        info["boilerplate_ngrams"] = int((counts > cfg.boilerplate_texts).sum())
        hashes, rows = hashes[keep], rows[keep]
    return EvalIndex(Lookup.of(hashes, rows, np.asarray(row_set, np.uint32)), sets, row_where,
                     info, digest(cfg, files), cfg.min_overlap)


def open_index(cfg: DecontamConfig, root: Path, field_name: str) -> EvalIndex | None:
    """The index of `cfg.eval_sets` (None when there are none): loaded from
    `{root}/decontam/{digest}.*` when built before, else built and saved there."""
    if not cfg.active:
        return None
    files = eval_files(cfg, field_name)
    base = Path(root) / "decontam" / digest(cfg, files)
    meta_path = base.with_suffix(".json")
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return EvalIndex(Lookup.load(str(base)), meta["sets"], meta["row_where"], meta["info"],
                         base.name, cfg.min_overlap, str(base))
    index = build(cfg, field_name)
    index.path = str(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    index.lookup.save(str(base))
    meta = {"sets": index.sets, "row_where": index.row_where,
            "info": index.info, "settings": _settings(cfg)}
    tmp = meta_path.with_name(f"{meta_path.name}.tmp-{_host()}")
    tmp.write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, meta_path)  # written last: its presence marks a complete index
    return index
