"""AWQ W4A16 with llm-compressor: a compressed-tensors checkpoint vLLM serves as it is, with
the source export's tokenizer, chat template and generation_config.json copied in.

    quantize_awq(rl_hf, calibration_texts, tok, recipe.awq, max_seq_length=2048, out=quant_hf)

MoE (Qwen3-MoE): transformers 5 keeps a layer's experts fused (3D tensors); llm-compressor's
`linearize_moe` splits them into one `gate_proj`/`up_proj`/`down_proj` Linear per expert, so
AWQ smooths and quantizes every expert's Linears (its Qwen3-MoE mappings balance
`post_attention_layernorm` against the router and all experts' gate/up projections, and each
expert's `up_proj` against its `down_proj`), with every expert calibrated on every token
(`moe_calibrate_all_experts`); the routers (`mlp.gate`) stay bf16 (`awq.ignore`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from swallow_train.errors import SwallowError
from swallow_train.quant.config import AWQConfig

LLMCOMPRESSOR_SERIES = "0.14."
"""The llm-compressor series whose `IntermediatesCache.pin_memory` `no_pin_memory` replaces."""
SOURCE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
                "chat_template.json", "generation_config.json")
"""What an export holds besides its weights and config.json, copied into the quantized one."""


class QuantizeError(SwallowError):
    """llm-compressor cannot be used as this module expects."""


@contextlib.contextmanager
def no_pin_memory() -> Iterator[None]:
    """While active, and only without an accelerator: llm-compressor's AWQ does not pin its
    cached activations (`IntermediatesCache.pin_memory`, which raises "Cannot access
    accelerator device when none is available" on CPU). Restored on exit, error or not."""
    import llmcompressor
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available():
        yield
        return
    version = llmcompressor.__version__
    if not version.startswith(LLMCOMPRESSOR_SERIES):
        raise QuantizeError(
            f"llmcompressor {version}: swallow_train/quant/awq.py:no_pin_memory was written for "
            f"{LLMCOMPRESSOR_SERIES}*; check that IntermediatesCache.pin_memory(batch_index, "
            "input_names) is still the only pinning, then update LLMCOMPRESSOR_SERIES (or "
            "install llmcompressor 0.14.*)")
    original = IntermediatesCache.__dict__["pin_memory"]

    def skip(self: Any, batch_index: int, input_names: list[str] | None = None) -> None:
        return None

    IntermediatesCache.pin_memory = skip  # type: ignore[method-assign]
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original  # type: ignore[method-assign]


def scheme(cfg: AWQConfig) -> dict[str, Any]:
    """The compressed-tensors config group: INT weights in groups, activations unquantized."""
    return {"group_0": {"targets": ["Linear"], "weights": {
        "num_bits": cfg.num_bits, "type": "int", "symmetric": cfg.symmetric,
        "strategy": "group", "group_size": cfg.group_size}}}


def calibration_dataset(texts: list[str], tok: Any, max_seq_length: int) -> Any:
    """A `datasets.Dataset` of token ids (cut at `max_seq_length`) of the calibration texts."""
    import datasets

    rows = []
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"][:max_seq_length]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
    return datasets.Dataset.from_list(rows)


def quantize_awq(source: Path, texts: list[str], tok: Any, cfg: AWQConfig, *,
                 max_seq_length: int, out: Path) -> Path:
    """Quantize the HF checkpoint at `source` into `out` (written to a temporary directory
    first, then renamed; an existing `out` is replaced only then)."""
    import torch
    from llmcompressor import oneshot
    from llmcompressor.modeling.moe.linearize import linearize_moe
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
    linearize_moe(model)  # a no-op for dense models
    recipe = [AWQModifier(duo_scaling=cfg.duo_scaling, n_grid=cfg.n_grid),
              QuantizationModifier(config_groups=scheme(cfg), ignore=list(cfg.ignore))]
    dataset = calibration_dataset(texts, tok, max_seq_length)
    with no_pin_memory():
        oneshot(model=model, dataset=dataset, recipe=recipe, num_calibration_samples=len(texts),
                max_seq_length=max_seq_length, shuffle_calibration_samples=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        model.save_pretrained(tmp, save_compressed=True)
        for name in SOURCE_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, tmp / name)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_dir(new: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / out.name)
    os.rename(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def dir_bytes(path: Path) -> int:
    """Bytes of the weight files (`*.safetensors`) under `path`."""
    return sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))
