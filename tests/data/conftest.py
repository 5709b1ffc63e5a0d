"""Shared fixtures of the data tests: the real Qwen3 tokenizer and the tiny CPT / SFT data
prepared once per session (in temporary directories)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swallow_train.data.manifest import load_manifest

REPO = Path(__file__).resolve().parents[2]
TINY_CPT = REPO / "data_manifests" / "tiny_cpt.yaml"
TINY_SFT = REPO / "data_manifests" / "tiny_sft.yaml"
TOKENIZER = "bundled:qwen3"


@pytest.fixture(scope="session")
def tok() -> Any:
    from swallow_train.tokenizer import load_tokenizer

    return load_tokenizer(TOKENIZER)


@pytest.fixture(scope="session")
def cpt_prepared(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny CPT mixture tokenized with 64 documents per shard (several shards per corpus)."""
    from swallow_train.data.prepare import prepare
    from swallow_train.mcore.indexed import ShardWriter

    root = tmp_path_factory.mktemp("cpt")
    return prepare(load_manifest(TINY_CPT), root, TOKENIZER, writer=ShardWriter, workers=1,
                   docs_per_shard=64, progress=False)


@pytest.fixture(scope="session")
def sft_prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The tiny SFT set packed into 256-token sequences."""
    from swallow_train.data.config import SFTDataConfig
    from swallow_train.data.sft_prepare import prepare_sft

    root = tmp_path_factory.mktemp("sft")
    data = SFTDataConfig(manifest=str(TINY_SFT), prepared_dir=str(root), num_workers=1)
    stats, out, _ = prepare_sft(load_manifest(TINY_SFT), data, TOKENIZER, 256, progress=False)
    return stats, out
