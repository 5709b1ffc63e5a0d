"""`swallow-train prepare`: tokenize every corpus of a CPT manifest into megatron-core `.bin/.idx`
(the engine; `data/prepared.py` runs it from a recipe's data section).

    swallow-train prepare model=tiny_dense                  # tiny synthetic corpora, seconds
    swallow-train prepare data.num_workers=32 data.prepared_dir=/groups/x/prepared

Each corpus is streamed record by record, tokenized in `data.num_workers` processes with the
model's tokenizer (EOD after every document) and written as shards of `data.docs_per_shard`
documents: `{prepared_dir}/{manifest}/{corpus}/shard-00000.bin/.idx` + `.json` (its exact counts).
A shard is renamed into place when complete and its `.json` written last, so a re-run skips
finished shards and redoes a partial one; `{corpus}/done.json` marks a fully read corpus, which a
re-run does not read again. `stats.json` (exact documents and tokens per corpus) is rewritten at
the end. Manifest, files, hub reachability and (with `data.prevalidate`) every local record are
checked before anything is written; output prepared from a different source, text field or
tokenizer, or from an input file that changed since (size and mtime, or SHA-256 with
`data.fingerprint_content=true`), is never overwritten: the error names the files and the fix.

Split over array tasks (`swallow-train launch stage=prepare`), task t of N
(`data.task_index=t data.num_tasks=N`) tokenizes the shards (i + k) % N == t of corpus i and
records the corpus's shard count in `count.json`; the final run (N = 1) finds every shard
finished, checks them, writes `done.json` without reading the corpus again, and `stats.json`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from swallow_train.data.cpt_tokenize import document_of, init_worker
from swallow_train.data.decontam import DecontamConfig
from swallow_train.data.decontam_check import CPTCheck, cpt_task, init_checked, report
from swallow_train.data.manifest import CPTManifest
from swallow_train.data.shards import (
    check_existing,
    collect_stats,
    disk_full,
    fingerprint,
    input_identity,
    read_json,
    shard_name,
    tokenizer_identity,
    verify_shards,
    write_json,
)
from swallow_train.data.sources import DataError, iter_records, source_files
from swallow_train.data.workers import SMALL_INPUT_BYTES, effective_workers, ordered_map

MORE, END_SHARD, END_ALL, END_CORPUS = 0, 1, 2, 3


class ShardSink(Protocol):
    """One shard being written, committed atomically or aborted without a trace
    (`swallow_train.mcore.indexed.ShardWriter`: megatron-core's `.bin/.idx`)."""

    documents: int
    tokens: int

    def add_documents(self, tokens: np.ndarray, lengths: np.ndarray) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


ShardWriterFactory = Callable[[Path], ShardSink]
"""Opens the shard at a path prefix. The data layer does not import megatron-core: the caller
(`stages/prepare.py`, `mcore/data_cpt.py`) passes `mcore.indexed.ShardWriter`."""


@dataclass
class PrepareResult:
    stats: dict[str, Any]
    path: Path
    shards_written: int
    shards_skipped: int
    tokens_written: int
    seconds: float
    workers: int
    decontam: dict[str, Any] | None = None
    """Eval-set overlap counts of every shard (`decontam.json`), when `data.decontam` is on."""
    startup_seconds: float = 0.0
    """Until the first tokenized batch came back: checks, worker start, tokenizer loading."""
    first_batch_tokens: int = 0

    def steady_rate(self) -> float:
        """Tokens/s after the first batch came back (start-up excluded)."""
        busy = self.seconds - self.startup_seconds
        return (self.tokens_written - self.first_batch_tokens) / max(busy, 1e-9)

    def summary(self) -> str:
        rate = self.tokens_written / max(self.seconds, 1e-9)
        return (
            f"prepared {self.path}: {self.shards_written} shard(s) written, "
            f"{self.shards_skipped} already finished; {self.tokens_written:,} tokens in "
            f"{self.seconds:.1f} s ({rate:,.0f} tokens/s, "
            f"{rate / max(self.workers, 1):,.0f} tokens/s/worker; start-up "
            f"{self.startup_seconds:.1f} s)"
        ) + "".join("\n" + line for line in report(self.decontam))


def _preflight(
    manifest: CPTManifest, synth: Path, done: dict[int, bool], full: bool
) -> list[Path] | None:
    """Check every corpus still to do; its local files (None when one is on the hub)."""
    where, files = str(manifest.origin), []
    for i, corpus in enumerate(manifest.corpora):
        if done[i]:
            continue
        src = corpus.source
        if not src.hf:
            files += source_files(src, manifest.base, synth)  # missing files fail here
        if src.hf or full:
            count = 0
            for loc, record in iter_records(src, manifest.base, synth):
                document_of(record, corpus, loc, where)
                count += 1
                if src.hf:
                    break  # probe: reachable and first record valid
            if count == 0:
                raise DataError(f"corpus {corpus.name}: source {src.describe()} has no records")
    return None if any(c.source.hf for c in manifest.corpora) else files


def _tasks(
    manifest: CPTManifest,
    synth: Path,
    done: dict[int, bool],
    skip: Callable[[int, int], bool],
    docs_per_shard: int,
    batch_docs: int,
):
    """Batches of the shards still to do; `skip(i, k)`: shard k of corpus i is finished or
    belongs to another task."""
    where = str(manifest.origin)
    for i, corpus in enumerate(manifest.corpora):
        if done[i]:
            continue
        kind, shard, batch, skipped, seen, locs = corpus.kind.value, 0, [], 0, False, []
        for index, (loc, record) in enumerate(iter_records(corpus.source, manifest.base, synth)):
            seen, k = True, index // docs_per_shard
            if k != shard:
                if not skip(i, shard):
                    yield i, shard, END_SHARD, skipped, batch, kind, locs
                shard, batch, skipped, locs = k, [], 0, []
            if skip(i, k):
                continue
            doc = document_of(record, corpus, loc, where)
            if doc is None:
                skipped += 1
                continue
            batch.append(doc)
            locs.append(loc)
            if len(batch) >= batch_docs:
                yield i, k, MORE, skipped, batch, kind, locs
                batch, skipped, locs = [], 0, []
        if not seen:
            raise DataError(
                f"corpus {corpus.name}: source {corpus.source.describe()} has no records"
            )
        last = END_CORPUS if skip(i, shard) else END_ALL
        yield i, shard, last, skipped, batch, kind, locs


def _counted(cdir: Path, fp: str, finished: set[int]) -> int | None:
    """The shard count the array tasks recorded, when every shard of it is finished."""
    count = read_json(cdir / "count.json")
    if not count or count.get("fingerprint") != fp:
        return None
    shards = int(count["shards"])
    return shards if finished >= set(range(shards)) else None


def prepare(
    manifest: CPTManifest,
    root: Path,
    tokenizer: str,
    *,
    writer: ShardWriterFactory,
    workers: int = 2,
    docs_per_shard: int = 1_000_000,
    batch_docs: int = 256,
    prevalidate: bool = True,
    progress: bool = True,
    in_process_below: int = SMALL_INPUT_BYTES,
    fingerprint_content: bool = False,
    num_tasks: int = 1,
    task_index: int = 0,
    command: str = "swallow-train prepare",
    decontam: DecontamConfig | None = None,
) -> PrepareResult:
    """Tokenize every corpus of `manifest` into `root/{manifest.name}/` (see module docstring),
    each shard through `writer(prefix)`. Local input smaller than `in_process_below` bytes is
    tokenized in this process (starting workers would take longer than the work). With
    num_tasks > 1 only this task's shards are written (no done.json, no stats.json: the final
    run with num_tasks=1 writes them)."""
    from tqdm import tqdm

    if not 0 <= task_index < num_tasks:
        raise DataError(f"data.task_index={task_index} must be in [0, data.num_tasks="
                        f"{num_tasks})")
    start = time.time()
    out, synth = Path(root) / manifest.name, Path(root) / "synthetic"
    tok_id, eod, vocab, serialized = tokenizer_identity(tokenizer)
    check = CPTCheck(decontam, Path(root))  # eval-set index; with drop on, part of the inputs
    inputs = {i: {**input_identity(c.source, manifest.base, synth, fingerprint_content),
                  **check.identity} for i, c in enumerate(manifest.corpora)}
    fps = {
        i: fingerprint(manifest, i, tok_id, docs_per_shard, inputs[i])
        for i in range(len(manifest.corpora))
    }
    done, finished = {}, {}
    for i, c in enumerate(manifest.corpora):
        done[i], finished[i] = check_existing(out / c.name, fps[i], inputs[i], command)
        counted = None if done[i] else _counted(out / c.name, fps[i], finished[i])
        if counted is not None and num_tasks == 1:  # the array tasks did every shard
            verify_shards(out / c.name, counted, fps[i])
            write_json(out / c.name / "done.json",
                       {"fingerprint": fps[i], "shards": counted, "inputs": inputs[i]})
            done[i] = True
    files = _preflight(manifest, synth, done, prevalidate and num_tasks == 1)
    workers = effective_workers(workers, files, in_process_below)

    def skip(i: int, k: int) -> bool:
        return k in finished[i] or (i + k) % num_tasks != task_index

    written, tokens_written, first = 0, 0, (0.0, 0)
    skipped_before = sum(len(f) for f in finished.values())
    shard: ShardSink | None = None
    shard_skipped = 0
    bar = tqdm(desc=f"prepare {manifest.name}", unit="doc", disable=not progress, mininterval=1)
    tasks = _tasks(manifest, synth, done, skip, docs_per_shard, batch_docs)
    # worker processes rebuild the Rust tokenizer from its serialization (no transformers
    # import); in this process the tokenizer is already loaded
    init_args = (tokenizer, serialized, eod) if workers > 1 else (tokenizer,)
    try:
        for i, k, flag, skipped, toks, lengths, found in ordered_map(
            cpt_task, tasks, workers, init=init_checked,
            init_args=check.shard.init_args(init_worker, init_args),
        ):
            check.shard.batch(found)
            cdir = out / manifest.corpora[i].name
            if flag != END_CORPUS:
                if shard is None:
                    shard, shard_skipped = writer(cdir / shard_name(k)), 0
                shard.add_documents(toks, lengths)
                shard_skipped += skipped
                tokens_written += toks.size
                first = first if first[0] else (time.time() - start, tokens_written)
                bar.update(len(lengths))
                rate = tokens_written / (time.time() - start)
                bar.set_postfix_str(f"{rate:,.0f} tokens/s", refresh=False)
            if flag in (END_SHARD, END_ALL):
                assert shard is not None
                shard.commit()
                write_json(
                    cdir / f"{shard_name(k)}.json",
                    {
                        "fingerprint": fps[i],
                        "documents": shard.documents,
                        "tokens": shard.tokens,
                        "skipped_empty": shard_skipped,
                        "inputs": inputs[i],
                        **check.shard.take(),
                    },
                )
                shard, written = None, written + 1
            if flag in (END_ALL, END_CORPUS):
                marker = {"fingerprint": fps[i], "shards": k + 1, "inputs": inputs[i]}
                cdir.mkdir(parents=True, exist_ok=True)
                write_json(cdir / ("count.json" if num_tasks > 1 else "done.json"), marker)
        stats: dict[str, Any] = {}
        if num_tasks == 1:
            stats = collect_stats(manifest, out, tokenizer, eod, vocab, docs_per_shard)
            write_json(out / "stats.json", stats)
            check.collect(out, [c.name for c in manifest.corpora])  # -> decontam.json
    except OSError as exc:
        error = disk_full(exc, out, command)
        if error is None:
            raise
        raise error from None
    finally:
        bar.close()
        if shard is not None:
            shard.abort()
    return PrepareResult(
        stats,
        out,
        written,
        skipped_before,
        tokens_written,
        time.time() - start,
        max(workers, 1),
        check.total,
        first[0],
        first[1],
    )
