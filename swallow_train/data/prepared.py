"""The prepared data of a stage, from its typed data section: the manifest is parsed once, then
prepared (`prepare_cpt` / `prepare_packs`, on rank 0; both skip what is already done) and opened
(`open_corpus` / `packs_path`). The `prepare` / `prepare-sft` commands
(`swallow_train/stages/prepare.py`) and the training stages' data sources
(`mcore/data_cpt.py`, `mcore/data_sft.py`) call the same functions.

    manifest = cpt_manifest(recipe.data)
    prepare_cpt(recipe.data, recipe.model.tokenizer, manifest, writer=ShardWriter, command=...)
    corpus = open_corpus(recipe.data, manifest)        # stats.json of every corpus
    blend = corpus.blend(train_tokens, recipe.data.split)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swallow_train.data.blend import Blend, build_blend, load_stats
from swallow_train.data.config import CPTDataConfig, SFTDataConfig
from swallow_train.data.manifest import (
    CPTManifest,
    SFTManifest,
    Stage,
    load_manifest,
    resolve_manifest_path,
)
from swallow_train.data.prepare import PrepareResult, ShardWriterFactory, prepare
from swallow_train.data.sft_prepare import packs_path, prepare_sft, sft_manifest

__all__ = ["PreparedCorpus", "PreparedPacks", "cpt_manifest", "open_corpus", "packs_path",
           "prepare_cpt", "prepare_packs", "sft_manifest"]


def cpt_manifest(data: CPTDataConfig) -> CPTManifest:
    """`data.manifest`, parsed and checked (DataError names the file, line and fix)."""
    manifest = load_manifest(resolve_manifest_path(data.manifest), Stage.cpt)
    assert isinstance(manifest, CPTManifest)
    return manifest


def prepare_cpt(data: CPTDataConfig, tokenizer: str, manifest: CPTManifest, *,
                writer: ShardWriterFactory, command: str, progress: bool = True) -> PrepareResult:
    """Tokenize `manifest`'s corpora into `{data.prepared_dir}/{manifest.name}/` as `data` asks
    (workers, shards, array task); finished shards are skipped. `writer` opens one shard (the
    megatron `.bin/.idx` writer, `swallow_train.mcore.indexed.ShardWriter`)."""
    return prepare(
        manifest,
        Path(data.prepared_dir),
        tokenizer,
        writer=writer,
        workers=data.num_workers,
        docs_per_shard=data.docs_per_shard,
        batch_docs=data.batch_docs,
        prevalidate=data.prevalidate,
        progress=progress,
        fingerprint_content=data.fingerprint_content,
        num_tasks=data.num_tasks,
        task_index=data.task_index,
        command=command,
        decontam=data.decontam,
    )


@dataclass(frozen=True, kw_only=True)
class PreparedCorpus:
    """The tokenized corpora of a CPT manifest, as training reads them."""

    manifest: CPTManifest
    path: Path
    """`{data.prepared_dir}/{manifest name}`."""
    stats: dict[str, Any]
    """Its `stats.json`: exact documents and tokens of every shard, the tokenizer's eod."""

    def blend(self, train_tokens: int | None, split: str) -> Blend:
        """The manifest's token budgets as megatron blend weights over the shards."""
        return build_blend(self.manifest, self.stats, self.path, train_tokens=train_tokens,
                           split=split)


def open_corpus(data: CPTDataConfig, manifest: CPTManifest) -> PreparedCorpus:
    """The prepared corpora of `manifest` (DataError naming the command when not prepared)."""
    path = Path(data.prepared_dir) / manifest.name
    return PreparedCorpus(manifest=manifest, path=path, stats=load_stats(path))


@dataclass(frozen=True, kw_only=True)
class PreparedPacks:
    path: Path
    """`{data.prepared_dir}/{manifest name}/seq{L}[-pad{M}]`: what PackedSFTDataset reads."""
    stats: dict[str, Any]
    """Its `stats.json`: conversations read / kept / dropped, packs, efficiency."""
    existed: bool
    """Already prepared from the same inputs: nothing was done."""


def prepare_packs(data: SFTDataConfig, tokenizer: str, seq_length: int, manifest: SFTManifest,
                  *, command: str, progress: bool = True) -> PreparedPacks:
    """Filter, render and pack `manifest`'s conversations into `seq_length`-token packs as
    `data` asks; returns at once when they are already there."""
    stats, out, existed = prepare_sft(manifest, data, tokenizer, seq_length, progress=progress,
                                      command=command)
    return PreparedPacks(path=out, stats=stats, existed=existed)
