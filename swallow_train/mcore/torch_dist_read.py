"""Read the model weights of a torch_dist checkpoint on disk, whoever wrote it: this project's
training loop, or Megatron-LM as slime runs it (`runs/<name>/rl/slime/iter_NNNNNNN`).

    load_model_tensors(request, iter_dir)      # {"model": {...}} of the requested ShardedTensors
    common = read_common(iter_dir)             # common.pt through the restricted reader, or None
    check_args_match(common, model, iter_dir)  # Megatron-LM args vs the model preset

megatron-core's `dist_checkpointing.load` first reads `common.pt` with `torch.load` in
weights-only mode. Megatron-LM pickles its whole `args` namespace there (slime's classes
included), so that load raises `UnpicklingError`. The weights live in the `.distcp` files and
never need `common.pt`: `load_model_tensors` skips it. What `common.pt` says (the iteration, the
`args` model shape, megatron's `content_metadata`) is read by `swallow_train.convert.common_pt`,
which imports and runs nothing it names.

What Megatron-LM writes (`megatron/training/checkpointing.py`, the commit slime pins): `{save}/
iter_{step:07d}/` (`release/` from slime's HF converter) with `metadata.json`, `.metadata`,
`__*_*.distcp` and `common.pt` (`args`, `checkpoint_version` 3.0, `iteration`, scheduler and
rerun state, `content_metadata`), and `{save}/latest_checkpointed_iteration.txt` written last.
The model is under "model" ("model0", "model1", ... with VPP), its sharded keys global and
without a `module.` prefix; the vocabulary may be padded (152,064 rows for 8B at TP2), which
megatron-core narrows to the model's 151,936 rows on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.strategies.common import TorchCommonLoadStrategy

from swallow_train.convert.common_pt import COMMON_FILE, CommonState, read_common_pt
from swallow_train.convert.transforms import ConversionError
from swallow_train.models.config import ModelConfig


class WeightsOnlyCommonLoad(TorchCommonLoadStrategy):
    """megatron's common-state strategy without reading `common.pt`: the model weights need
    nothing from it, and its pickled `args` may name classes that cannot be imported here."""

    def load_common(self, checkpoint_dir: str | Path) -> dict[str, Any]:
        return {}


def load_model_tensors(request: dict[str, Any], iter_dir: Path) -> dict[str, Any]:
    """`{"model": {name: tensor}}` of the ShardedTensors in `request` (a model's sharded state
    dict), read from `iter_dir` without `common.pt`."""
    return dist_checkpointing.load({"model": request}, str(iter_dir),
                                   common_strategy=WeightsOnlyCommonLoad())


def read_common(iter_dir: Path) -> CommonState | None:
    """`common.pt` of `iter_dir` through the restricted reader; None when it is missing or
    unreadable (the weights do not need it)."""
    try:
        return read_common_pt(Path(iter_dir) / COMMON_FILE)
    except ConversionError:
        return None


def sharded_metadata(common: CommonState | None) -> dict[str, Any]:
    """The `metadata` to build the model's sharded state dict with, as the checkpoint was saved
    (`singleton_local_shards` changes expert and SwiGLU keys; megatron-core >= 0.14 saves False)."""
    content = common.content_metadata if common is not None else {}
    return {"singleton_local_shards": bool(content.get("singleton_local_shards", False))}


# Megatron-LM argument -> (ModelConfig field, when it applies)
_ARGS_FIELDS = (
    ("num_layers", "num_layers", "always"),
    ("hidden_size", "hidden_size", "always"),
    ("num_attention_heads", "num_attention_heads", "always"),
    ("num_query_groups", "num_key_value_heads", "always"),
    ("kv_channels", "head_dim", "always"),
    ("ffn_hidden_size", "ffn_hidden_size", "dense"),
    ("num_experts", "num_experts", "always"),
    ("moe_router_topk", "moe_router_topk", "moe"),
    ("moe_ffn_hidden_size", "moe_ffn_hidden_size", "moe"),
)


def check_args_match(common: CommonState | None, model: ModelConfig, iter_dir: Path) -> None:
    """ConversionError naming every architecture field where the checkpoint's Megatron-LM
    `args` differ from `model` (nothing to check for checkpoints without `args`)."""
    args = common.args if common is not None else None
    if args is None:
        return
    wrong = []
    for arg, name, when in _ARGS_FIELDS:
        if (when == "dense" and model.num_experts) or (when == "moe" and not model.num_experts):
            continue
        value = getattr(args, arg, None)
        if value is None and arg == "num_experts":
            value = 0
        if value is None or (arg == "num_query_groups"
                             and not getattr(args, "group_query_attention", True)):
            continue
        if value != getattr(model, name):
            wrong.append(f"{arg}={value} (model.{name}={getattr(model, name)})")
    if wrong:
        raise ConversionError(
            f"{iter_dir} was saved by Megatron-LM with {', '.join(wrong)}: it is not a model "
            f"{model.name!r}. Pick the preset or config.yaml the run was trained with")
