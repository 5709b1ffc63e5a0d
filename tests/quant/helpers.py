"""Tiny checkpoints and calibration texts for the quantization tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from swallow_train.data.tiny_math import tiny_problems


def random_policy(out: Path, *, moe: bool, seed: int = 0) -> Path:
    """A seeded random-init tiny Qwen3 (dense or MoE) written as the stages write exports
    (bf16, tokenizer, chat template, generation_config.json)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from swallow_train.config import compose
    from swallow_train.convert.hf_io import write_hf_checkpoint

    cfg = compose("rl", ["model=tiny_moe" if moe else "model=tiny_dense"]).model
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(
        AutoConfig.for_model(**cfg.to_hf_config(torch_dtype="float32")), dtype=torch.float32)
    return write_hf_checkpoint(dict(model.state_dict()), cfg, out, tokenizer=cfg.tokenizer,
                               dtype=torch.bfloat16, progress=False)


def calibration_texts(tok: Any, n: int) -> list[str]:
    """`n` tiny problems answered in the validated form (chat template, thinking, \\boxed{})."""
    texts = []
    for row in tiny_problems(seed=0)[:n]:
        prompt = tok.apply_chat_template(row["prompt"], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=True)
        texts.append(f"{prompt}<think>\nI add the numbers.\n</think>\n\n"
                     f"\\boxed{{{row['label']}}}<|im_end|>")
    return texts
