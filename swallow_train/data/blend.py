"""Manifest budgets + prepared token counts -> the weighted prefix list megatron-core blends.

A corpus's weight is its budget over the sum of budgets; megatron draws samples (sequences of
equal length) in proportion to the weights, so that is also its share of the training tokens.
Within a corpus each shard is weighted by its share of the corpus's tokens. The report gives,
per corpus, the tokens the run will take from it and the epochs that means: a corpus smaller
than its budget is repeated (megatron's GPTDataset builds as many shuffled epochs as needed) and
the report says how often.

    from swallow_train.data.blend import build_blend, load_stats
    blend = build_blend(manifest, load_stats(path), path, train_tokens=209_715_200_000)
    blend.megatron()        # (prefixes, weights) for GPTDatasetConfig.blend
    print(blend.report())
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swallow_train.data.manifest import CPTManifest
from swallow_train.data.sources import DataError


@dataclass
class CorpusShare:
    name: str
    language: str
    budget: int
    """Tokens the manifest gives this corpus."""
    weight: float
    """Share of every training sample drawn (budget / sum of budgets)."""
    tokens: int
    """Tokens the corpus has (prepared, EOD included)."""
    documents: int
    planned: int
    """Tokens the run takes from it: train_tokens x weight (the budget when no run is given)."""
    left_out: int = 0
    """Tokens of shards too small for the split (not in `tokens`, not drawn from)."""

    @property
    def epochs(self) -> float:
        return self.planned / self.tokens


@dataclass
class Blend:
    prefixes: list[str]
    """Absolute megatron path prefixes, one per shard."""
    weights: list[float]
    corpora: list[CorpusShare]
    train_tokens: int

    def megatron(self) -> tuple[list[str], list[float]]:
        """The `blend` argument of megatron's GPTDatasetConfig."""
        return list(self.prefixes), list(self.weights)

    def data_path_args(self) -> list[str]:
        """The same blend as Megatron-LM `--data-path w1 p1 w2 p2 ...` arguments."""
        return [
            x for w, p in zip(self.weights, self.prefixes, strict=True) for x in (f"{w:.10g}", p)
        ]

    def report(self) -> str:
        lines = [
            f"blend of {len(self.corpora)} corpora over {self.train_tokens:,} training tokens",
            f"{'corpus':<36}{'lang':<6}{'weight':>8}{'planned':>18}{'has':>18}  epochs",
        ]
        for c in self.corpora:
            note = f"  repeated {c.epochs:.2f}x" if c.epochs > 1 else ""
            if c.left_out:
                note += f"  ({c.left_out:,} tokens of a too-small last shard left out)"
            lines.append(
                f"{c.name:<36}{c.language:<6}{c.weight:>8.2%}{c.planned:>18,}"
                f"{c.tokens:>18,}  {c.epochs:6.3f}{note}"
            )
        lines.append(
            "(epochs are over the whole corpus; the train split holds ~all of it, e.g. "
            "99% with split 990,10,0)"
        )
        return "\n".join(lines)


def split_documents(split: str, documents: int) -> list[int | None]:
    """Documents megatron gives each split (train, valid, test) of a shard of `documents`
    documents; None for a split with weight 0 (same arithmetic as megatron-core's split matrix)."""
    parts = [float(x) for x in re.findall(r"[.0-9]+", split)]
    parts += [0.0] * (3 - len(parts))
    if len(parts) != 3 or sum(parts) <= 0:
        raise DataError(f"data.split={split!r}: give three non-negative weights like 990,10,0")
    fractions = (np.asarray(parts, dtype=np.float64) / np.sum(parts)).tolist()
    bounds = [0.0]
    for f in fractions:
        bounds.append(bounds[-1] + f)
    out: list[int | None] = []
    for lo, hi in itertools.pairwise(bounds):
        out.append(None if hi <= lo else round(hi * documents) - round(lo * documents))
    return out


def load_stats(prepared: Path) -> dict[str, Any]:
    path = Path(prepared) / "stats.json"
    if not path.is_file():
        raise DataError(f"{path} not found: run `swallow-train prepare` with this recipe first")
    return json.loads(path.read_text(encoding="utf-8"))


def build_blend(
    manifest: CPTManifest,
    stats: dict[str, Any],
    prepared: Path,
    train_tokens: int | None = None,
    split: str | None = None,
) -> Blend:
    """The blend of `manifest` over the prepared corpora described by `stats` (stats.json).

    With `split`, a shard too small to give every split with a non-zero weight at least one
    document (a short last shard) is left out of the blend -- megatron-core cannot build a split
    without documents -- and the corpus's other shards take its weight."""
    budgets = manifest.budget_tokens()
    total = sum(budgets.values())
    run_tokens = total if train_tokens is None else train_tokens
    root = Path(prepared).resolve()
    prefixes: list[str] = []
    weights: list[float] = []
    shares: list[CorpusShare] = []
    for corpus in manifest.corpora:
        info = stats["corpora"].get(corpus.name)
        if info is None:
            raise DataError(
                f"corpus {corpus.name} of {manifest.origin} is not in "
                f"{root / 'stats.json'}: run `swallow-train prepare` again"
            )
        if info["tokens"] <= 0:
            raise DataError(
                f"corpus {corpus.name} has no tokens in {root}; it cannot take a "
                "budget: remove it from the manifest or fix its source"
            )
        weight = budgets[corpus.name] / total
        usable = [
            s
            for s in info["shards"]
            if s["tokens"] > 0
            and (split is None or 0 not in split_documents(split, s["documents"]))
        ]
        if not usable:
            raise DataError(
                f"corpus {corpus.name} has {info['documents']} documents, too few to give every "
                f"split of data.split={split} a document: add documents or change the split"
            )
        tokens = sum(s["tokens"] for s in usable)
        for shard in usable:
            prefixes.append(str(root / shard["prefix"]))
            weights.append(weight * shard["tokens"] / tokens)
        shares.append(
            CorpusShare(
                name=corpus.name,
                language=corpus.language.value,
                budget=budgets[corpus.name],
                weight=weight,
                tokens=tokens,
                documents=sum(s["documents"] for s in usable),
                planned=round(run_tokens * weight),
                left_out=info["tokens"] - tokens,
            )
        )
    return Blend(prefixes, weights, shares, run_tokens)
