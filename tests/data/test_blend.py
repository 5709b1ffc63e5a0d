"""Blending: weights from budgets and prepared token counts, epochs per corpus reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swallow_train.data.blend import build_blend, split_documents
from swallow_train.data.manifest import load_manifest
from swallow_train.data.sources import DataError

from .conftest import TINY_CPT


def test_weights_follow_budgets_and_shard_tokens(cpt_prepared: Any) -> None:
    manifest, stats = load_manifest(TINY_CPT), cpt_prepared.stats
    budgets = manifest.budget_tokens()
    blend = build_blend(manifest, stats, cpt_prepared.path, train_tokens=61_440)
    assert sum(blend.weights) == pytest.approx(1.0)
    assert len(blend.prefixes) == sum(len(c["shards"]) for c in stats["corpora"].values())
    for corpus in manifest.corpora:
        info = stats["corpora"][corpus.name]
        share = budgets[corpus.name] / sum(budgets.values())
        got = [
            w
            for w, p in zip(blend.weights, blend.prefixes, strict=True)
            if Path(p).parent.name == corpus.name
        ]
        assert sum(got) == pytest.approx(share)
        for w, shard in zip(got, info["shards"], strict=True):
            assert w == pytest.approx(share * shard["tokens"] / info["tokens"])
    assert all(Path(p + ".bin").is_file() and Path(p).is_absolute() for p in blend.prefixes)


def test_epochs_report(cpt_prepared: Any) -> None:
    manifest, stats = load_manifest(TINY_CPT), cpt_prepared.stats
    blend = build_blend(manifest, stats, cpt_prepared.path, train_tokens=61_440)
    code = next(c for c in blend.corpora if c.name == "code")
    assert code.planned == 15_360
    assert code.epochs == pytest.approx(15_360 / stats["corpora"]["code"]["tokens"])
    assert code.epochs > 1 and f"repeated {code.epochs:.2f}x" in blend.report()
    # four times the steps: every corpus repeats, each by its own factor
    bigger = build_blend(manifest, stats, cpt_prepared.path, train_tokens=4 * 61_440)
    assert all(
        c.epochs == pytest.approx(4 * s.epochs)
        for c, s in zip(bigger.corpora, blend.corpora, strict=True)
    )
    args = blend.data_path_args()
    assert len(args) == 2 * len(blend.prefixes) and float(args[0]) == pytest.approx(
        blend.weights[0]
    )


def test_too_small_last_shards_leave_the_blend(cpt_prepared: Any) -> None:
    manifest, stats = load_manifest(TINY_CPT), cpt_prepared.stats
    blend = build_blend(manifest, stats, cpt_prepared.path, split="990,10,0")
    for corpus in blend.corpora:
        shards = stats["corpora"][corpus.name]["shards"]
        small = [s for s in shards if 0 in split_documents("990,10,0", s["documents"])]
        assert corpus.left_out == sum(s["tokens"] for s in small)
    assert sum(blend.weights) == pytest.approx(1.0)


def test_split_documents() -> None:
    assert split_documents("990,10,0", 1000) == [990, 10, None]
    assert split_documents("990,10,0", 50) == [50, 0, None]
    assert split_documents("98,1,1", 100) == [98, 1, 1]
    with pytest.raises(DataError, match=r"data\.split"):
        split_documents("0,0,0", 10)


def test_unprepared_corpus_is_an_error(cpt_prepared: Any) -> None:
    stats = dict(cpt_prepared.stats, corpora=dict(cpt_prepared.stats["corpora"]))
    del stats["corpora"]["math"]
    with pytest.raises(DataError, match=r"corpus math .* run `swallow-train prepare` again"):
        build_blend(load_manifest(TINY_CPT), stats, cpt_prepared.path)
