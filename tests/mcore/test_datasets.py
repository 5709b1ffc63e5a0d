"""megatron-core datasets over the prepared tiny corpora: the realized mix matches the manifest
weights, repeated corpora repeat as reported, and the order is a function of the seed."""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swallow_train.data import prepare as cpt_prepare
from swallow_train.data.blend import Blend, build_blend, split_documents
from swallow_train.data.manifest import load_manifest
from swallow_train.mcore.indexed import ShardWriter

prepare = partial(cpt_prepare.prepare, writer=ShardWriter)

REPO = Path(__file__).resolve().parents[2]
TINY_CPT = REPO / "data_manifests" / "tiny_cpt.yaml"
SEQ = 128
SPLIT = "990,10,0"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Blend, dict[str, Any]]:
    root = tmp_path_factory.mktemp("prepared")
    result = prepare(
        load_manifest(TINY_CPT),
        root,
        "bundled:qwen3",
        workers=1,
        docs_per_shard=100,
        progress=False,
    )
    blend = build_blend(load_manifest(TINY_CPT), result.stats, result.path, split=SPLIT)
    return root, blend, result.stats


def _build(blend: Blend, stats: dict[str, Any], n: int, seed: int, cache: Path) -> Any:
    from swallow_train.mcore.datasets import build_blended_datasets

    return build_blended_datasets(
        *blend.megatron(),
        (n, 8, 0),
        seq_length=SEQ,
        seed=seed,
        split=SPLIT,
        eod=stats["eod"],
        vocab_size=151_936,
        cache_dir=cache,
    )


def _corpus(path: str) -> str:
    return Path(path).parent.name


def test_realized_mix_matches_the_weights(prepared: Any, tmp_path: Path) -> None:
    _, blend, stats = prepared
    n = 2_000  # 256k tokens from an 87k-token mixture: every corpus is repeated
    train, valid, test = _build(blend, stats, n, 1234, tmp_path / "cache")
    assert len(train) >= n and len(valid) >= 8 and test is None
    ids = np.asarray(train.dataset_index[:n])
    names = [_corpus(d.dataset_path) for d in train.datasets]
    counts = Counter(names[i] for i in ids.tolist())
    shards = Counter(_corpus(p) for p in blend.prefixes)
    planned = build_blend(
        load_manifest(TINY_CPT),
        stats,
        Path(blend.prefixes[0]).parents[1],
        train_tokens=n * SEQ,
        split=SPLIT,
    )
    for share in blend.corpora:
        # megatron's blending index keeps every dataset within one sample of weight x n
        assert abs(counts[share.name] - share.weight * n) <= shards[share.name]
        # and the corpus is consumed as often as the report says (train split = ~99%)
        consumed = counts[share.name] * SEQ / share.tokens
        epochs = next(c.epochs for c in planned.corpora if c.name == share.name)
        assert consumed == pytest.approx(epochs, abs=(shards[share.name] * SEQ) / share.tokens)
        assert epochs > 1
    for d in train.datasets:  # megatron built enough shuffled epochs of every shard
        per_epoch = d._get_num_tokens_per_epoch()
        assert d._get_num_epochs(per_epoch) * per_epoch >= d.num_samples * SEQ


def test_same_seed_same_order(prepared: Any, tmp_path: Path) -> None:
    _, blend, stats = prepared
    a = _build(blend, stats, 400, 7, tmp_path / "a")[0]
    b = _build(blend, stats, 400, 7, tmp_path / "b")[0]  # fresh cache: rebuilt from scratch
    c = _build(blend, stats, 400, 8, tmp_path / "c")[0]
    first = [a[i]["tokens"] for i in range(100)]
    assert all(np.array_equal(x, b[i]["tokens"]) for i, x in enumerate(first))
    assert not all(np.array_equal(x, c[i]["tokens"]) for i, x in enumerate(first))


def test_samples_from_the_recipe(prepared: Any) -> None:
    from swallow_train.config import compose
    from swallow_train.data.prepared import cpt_manifest, open_corpus
    from swallow_train.mcore.datasets import build_gpt_datasets

    root, _, stats = prepared
    recipe = compose(
        "cpt", ["model=tiny_dense", f"data.prepared_dir={root}", "data.docs_per_shard=100"]
    )
    steps = recipe.train.train_steps * recipe.train.global_batch_size
    corpus = open_corpus(recipe.data, cpt_manifest(recipe.data))
    train, valid, _ = build_gpt_datasets(corpus, (steps, 16, 0), data=recipe.data,
                                         train=recipe.train, model=recipe.model)
    assert len(train) >= steps and len(valid) >= 16
    eod_seen = 0
    for i in range(0, steps, 37):
        s = train[i]
        assert s["tokens"].shape == (SEQ,) and s["labels"].shape == (SEQ,)
        assert np.array_equal(s["labels"][:-1], s["tokens"][1:])
        assert float(s["loss_mask"].min()) == 1.0  # EOD is trained on, nothing is padding
        assert np.array_equal(s["position_ids"], np.arange(SEQ))
        eod_seen += int((s["tokens"] == stats["eod"]).sum())
    assert eod_seen > 0


@pytest.mark.parametrize("split", ["990,10,0", "98,1,1", "90,5,5", "1,1,1"])
def test_split_documents_matches_megatron(split: str) -> None:
    from megatron.core.datasets.blended_megatron_dataset_config import (
        convert_split_vector_to_split_matrix,
        parse_and_normalize_split,
    )

    matrix = convert_split_vector_to_split_matrix(parse_and_normalize_split(split))
    for n in range(1, 400):
        expected = [None if m is None else round(m[1] * n) - round(m[0] * n) for m in matrix]
        assert split_documents(split, n) == expected
