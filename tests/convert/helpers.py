"""Tiny Qwen3 / Qwen3-MoE configs and randomly initialised `transformers` models for the
conversion tests (no hub access: configs come from `recipes/model/`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from swallow_train.config import recipes_dir
from swallow_train.models.config import ModelConfig

SMALL_VOCAB = 1024


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A model preset of recipes/model/ with overrides (vocab shrunk unless given)."""
    fields = yaml.safe_load((recipes_dir() / "model" / f"{name}.yaml").read_text())
    return replace(ModelConfig(**fields), **{"vocab_size": SMALL_VOCAB, **overrides})


def random_hf_model(model: ModelConfig, seed: int = 0) -> Any:
    """A float32 `transformers` model of `model` with every weight random, norms included
    (1 + noise), so that a tensor loaded into the wrong place changes the logits."""
    from transformers import AutoConfig, AutoModelForCausalLM

    hf = model.to_hf_config(torch_dtype="float32")
    config = AutoConfig.for_model(hf.pop("model_type"), **hf)
    net = AutoModelForCausalLM.from_config(config, attn_implementation="eager").float().eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in net.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if "norm" in name:
                param.copy_(1 + 0.2 * noise)
            else:
                param.copy_(noise * (0.5 if name.endswith("mlp.gate.weight") else 0.08))
    return net


def save_random_hf(model: ModelConfig, path: Path, seed: int = 0) -> Path:
    random_hf_model(model, seed).save_pretrained(path)
    return path


def random_hf_state_dict(model: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """HF-named random tensors of the right shapes, without building a model."""
    from swallow_train.convert.names import NameMap, Spec

    gen = torch.Generator().manual_seed(seed)
    shapes = NameMap(model, Spec.local).hf_shapes()
    return {name: torch.randn(shape, generator=gen) for name, shape in shapes.items()}
