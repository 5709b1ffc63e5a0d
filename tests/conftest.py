"""Shared fixtures: the tiny corpus tokenized once per session, CPU-only test settings."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def hub_offline(monkeypatch):
    """The Hugging Face hub as unreachable at once: `datasets` and `huggingface_hub` read the
    offline flags when imported, so the environment alone comes too late (they would retry
    the network first)."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> str:
    """`swallow-train prepare model=tiny_dense` into a session directory; returns it."""
    from tests.distributed import run_cli

    path = tmp_path_factory.mktemp("prepared")
    run_cli(["prepare", "model=tiny_dense", f"data.prepared_dir={path}"])
    return str(path)


@pytest.fixture(scope="session")
def tiny_hf_init(tmp_path_factory) -> str:
    """A seeded random tiny_dense Qwen3 saved by `transformers` (float32): a common starting
    point for runs at different parallel layouts."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from swallow_train.config import compose

    path = tmp_path_factory.mktemp("tiny_hf")
    torch.manual_seed(0)
    config = Qwen3Config(**compose("cpt", ["model=tiny_dense"]).model.to_hf_config("float32"))
    Qwen3ForCausalLM(config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_sft_packs(tmp_path_factory) -> str:
    """`swallow-train prepare-sft model=tiny_dense` (256-token packs); returns the packs dir."""
    from swallow_train.config import compose
    from swallow_train.data.sft_prepare import packs_path, sft_manifest
    from tests.distributed import run_cli

    path = tmp_path_factory.mktemp("prepared_sft")
    run_cli(["prepare-sft", "model=tiny_dense", f"data.prepared_dir={path}"])
    recipe = compose("sft", ["model=tiny_dense", f"data.prepared_dir={path}"])
    return str(packs_path(recipe.data, recipe.train.seq_length, sft_manifest(recipe.data)))
