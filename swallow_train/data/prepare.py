"""`swallow-train prepare`: tokenize every corpus of a CPT manifest into megatron-core `.bin/.idx`.

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
tokenizer is never overwritten.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swallow_train.data.cpt_tokenize import document_of, init_worker, tokenize_task
from swallow_train.data.manifest import CPTManifest, Stage, load_manifest, resolve_manifest_path
from swallow_train.data.shards import (
    check_existing,
    collect_stats,
    fingerprint,
    shard_name,
    tokenizer_identity,
    write_json,
)
from swallow_train.data.sources import DataError, iter_records, source_files
from swallow_train.data.workers import SMALL_INPUT_BYTES, effective_workers, ordered_map

MORE, END_SHARD, END_ALL, END_CORPUS = 0, 1, 2, 3


@dataclass
class PrepareResult:
    stats: dict[str, Any]
    path: Path
    shards_written: int
    shards_skipped: int
    tokens_written: int
    seconds: float
    workers: int
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
        )


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
    finished: dict[int, set[int]],
    docs_per_shard: int,
    batch_docs: int,
):
    where = str(manifest.origin)
    for i, corpus in enumerate(manifest.corpora):
        if done[i]:
            continue
        kind, shard, batch, skipped, seen = corpus.kind.value, 0, [], 0, False
        for index, (loc, record) in enumerate(iter_records(corpus.source, manifest.base, synth)):
            seen, k = True, index // docs_per_shard
            if k != shard:
                if shard not in finished[i]:
                    yield i, shard, END_SHARD, skipped, batch, kind
                shard, batch, skipped = k, [], 0
            if k in finished[i]:
                continue
            doc = document_of(record, corpus, loc, where)
            if doc is None:
                skipped += 1
                continue
            batch.append(doc)
            if len(batch) >= batch_docs:
                yield i, k, MORE, skipped, batch, kind
                batch, skipped = [], 0
        if not seen:
            raise DataError(
                f"corpus {corpus.name}: source {corpus.source.describe()} has no records"
            )
        last = END_CORPUS if shard in finished[i] else END_ALL
        yield i, shard, last, skipped, batch, kind


def prepare(
    manifest: CPTManifest,
    root: Path,
    tokenizer: str,
    *,
    workers: int = 2,
    docs_per_shard: int = 1_000_000,
    batch_docs: int = 256,
    prevalidate: bool = True,
    progress: bool = True,
    in_process_below: int = SMALL_INPUT_BYTES,
) -> PrepareResult:
    """Tokenize every corpus of `manifest` into `root/{manifest.name}/` (see module docstring).
    Local input smaller than `in_process_below` bytes is tokenized in this process (starting
    workers would take longer than the work)."""
    from tqdm import tqdm

    from swallow_train.mcore.indexed import ShardWriter

    start = time.time()
    out, synth = Path(root) / manifest.name, Path(root) / "synthetic"
    tok_id, eod, vocab, serialized = tokenizer_identity(tokenizer)
    fps = {
        i: fingerprint(manifest, i, tok_id, docs_per_shard) for i in range(len(manifest.corpora))
    }
    done, finished = {}, {}
    for i, c in enumerate(manifest.corpora):
        done[i], finished[i] = check_existing(out / c.name, fps[i])
    files = _preflight(manifest, synth, done, prevalidate)
    workers = effective_workers(workers, files, in_process_below)

    written, tokens_written, first = 0, 0, (0.0, 0)
    skipped_before = sum(len(f) for f in finished.values())
    writer: ShardWriter | None = None
    shard_skipped = 0
    bar = tqdm(desc=f"prepare {manifest.name}", unit="doc", disable=not progress, mininterval=1)
    tasks = _tasks(manifest, synth, done, finished, docs_per_shard, batch_docs)
    # worker processes rebuild the Rust tokenizer from its serialization (no transformers
    # import); in this process the tokenizer is already loaded
    init_args = (tokenizer, serialized, eod) if workers > 1 else (tokenizer,)
    try:
        for i, k, flag, skipped, toks, lengths in ordered_map(
            tokenize_task, tasks, workers, init=init_worker, init_args=init_args
        ):
            cdir = out / manifest.corpora[i].name
            if flag != END_CORPUS:
                if writer is None:
                    writer, shard_skipped = ShardWriter(cdir / shard_name(k)), 0
                writer.add_documents(toks, lengths)
                shard_skipped += skipped
                tokens_written += toks.size
                first = first if first[0] else (time.time() - start, tokens_written)
                bar.update(len(lengths))
                rate = tokens_written / (time.time() - start)
                bar.set_postfix_str(f"{rate:,.0f} tokens/s", refresh=False)
            if flag in (END_SHARD, END_ALL):
                assert writer is not None
                writer.commit()
                write_json(
                    cdir / f"{shard_name(k)}.json",
                    {
                        "fingerprint": fps[i],
                        "documents": writer.documents,
                        "tokens": writer.tokens,
                        "skipped_empty": shard_skipped,
                    },
                )
                writer, written = None, written + 1
            if flag in (END_ALL, END_CORPUS):
                write_json(cdir / "done.json", {"fingerprint": fps[i], "shards": k + 1})
    finally:
        bar.close()
        if writer is not None:
            writer.abort()
    stats = collect_stats(manifest, out, tokenizer, eod, vocab, docs_per_shard)
    write_json(out / "stats.json", stats)
    return PrepareResult(
        stats,
        out,
        written,
        skipped_before,
        tokens_written,
        time.time() - start,
        max(workers, 1),
        first[0],
        first[1],
    )


def load_cpt_manifest(recipe: Any) -> CPTManifest:
    manifest = load_manifest(resolve_manifest_path(recipe.data.manifest), Stage.cpt)
    assert isinstance(manifest, CPTManifest)
    return manifest


def prepared_path(recipe: Any) -> Path:
    """`{data.prepared_dir}/{manifest name}`: where `prepare` writes and training reads."""
    return Path(recipe.data.prepared_dir) / load_cpt_manifest(recipe).name


def main(recipe: Any) -> int:
    from swallow_train.data.blend import build_blend

    d, t = recipe.data, recipe.train
    manifest = load_cpt_manifest(recipe)
    result = prepare(
        manifest,
        Path(d.prepared_dir),
        recipe.model.tokenizer,
        workers=d.num_workers,
        docs_per_shard=d.docs_per_shard,
        batch_docs=d.batch_docs,
        prevalidate=d.prevalidate,
    )
    print(result.summary())
    train_tokens = t.train_steps * t.global_batch_size * t.seq_length
    blend = build_blend(manifest, result.stats, result.path, train_tokens, split=d.split)
    print(blend.report())
    return 0
