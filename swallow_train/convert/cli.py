"""`swallow-train export`: a megatron torch_dist checkpoint on disk -> a Hugging Face directory,
in one process, without the training job.

    swallow-train export checkpoint=runs/tiny/cpt/checkpoints model=tiny_dense out=out/hf
    swallow-train export checkpoint=runs/x/cpt/checkpoints config=runs/x/cpt/config.yaml \\
        iteration=2000 out=/data/x-cpt-2000 tokenizer=Qwen/Qwen3-8B
    swallow-train export ... --dry-run     # resolve and print the plan, load nothing

Keys: checkpoint (a stage's checkpoints/ or one iter_NNNNNNN directory), out (the HF directory,
replaced atomically), model (a preset of recipes/model/) or config (a stage's config.yaml),
iteration (default: the latest), tokenizer (default: model.tokenizer), dtype (bf16 or fp32).
`key=value` as every other command (swallow_train/overrides.py); the old `--key value` flags
still work and print a deprecation warning.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import yaml

from swallow_train.convert.checkpoint_dir import resolve_iteration_dir
from swallow_train.convert.common_pt import COMMON_FILE, read_common_pt
from swallow_train.convert.names import NameMap, Spec
from swallow_train.convert.transforms import ConversionError
from swallow_train.models.config import ModelConfig
from swallow_train.overrides import OverrideError, parse
from swallow_train.tokenizer import TokenizerError

DTYPES = ("bf16", "fp32")
KEYS = ("checkpoint", "out", "model", "config", "iteration", "tokenizer", "dtype")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="swallow-train export", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True,
                   help="checkpoints/ directory of a stage (with latest_checkpointed_iteration.txt)"
                   " or one iter_NNNNNNN directory")
    p.add_argument("--iteration", type=int, default=None, help="step to export (default: latest)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="model preset of recipes/model/ (tiny_dense, qwen3_8b, ...)")
    which.add_argument("--config", help="a stage's resolved config.yaml (its model: section)")
    p.add_argument("--out", required=True, help="HF output directory (replaced atomically)")
    p.add_argument("--tokenizer", default=None, help="tokenizer spec (default: model.tokenizer)")
    p.add_argument("--dtype", choices=DTYPES, default="bf16", help="safetensors dtype")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """`key=value` arguments (or, deprecated, the `--key value` flags) as the flags' Namespace;
    ConversionError / OverrideError name the argument and the fix."""
    if any(a.startswith("--") and a != "--dry-run" for a in argv):
        print("swallow-train export: warning: --key value flags are deprecated; give key=value, "
              "e.g. checkpoint=runs/x/cpt/checkpoints model=qwen3_8b out=/data/hf",
              file=sys.stderr)
        return parser().parse_args(argv)
    values: dict[str, str | None] = dict.fromkeys(KEYS)
    for o in parse([a for a in argv if a != "--dry-run"], scopes=()):
        if o.key not in KEYS or o.prefix or not o.value:
            raise ConversionError(f"{o.arg}: export takes {'=, '.join(KEYS)}= (one value each)")
        values[o.key] = o.value
    missing = [k + "=" for k in ("checkpoint", "out") if not values[k]]
    if missing or (values["model"] is None) == (values["config"] is None):
        raise ConversionError(f"give {' and '.join(missing) or 'the model'}"
                              f"{' and ' if missing else ''}exactly one of model=<preset> or "
                              "config=<a stage's config.yaml>: e.g. swallow-train export "
                              "checkpoint=runs/x/cpt/checkpoints model=qwen3_8b out=/data/hf")
    iteration = values.pop("iteration")
    if iteration is not None and not iteration.isdigit():
        raise ConversionError(f"iteration={iteration} must be a step number (default: latest)")
    values["dtype"] = values["dtype"] or "bf16"
    if values["dtype"] not in DTYPES:
        raise ConversionError(f"dtype={values['dtype']} must be one of {', '.join(DTYPES)}")
    return argparse.Namespace(**values, iteration=None if iteration is None else int(iteration),
                              dry_run="--dry-run" in argv)


def _model_from_mapping(data: object, where: str) -> ModelConfig:
    if not isinstance(data, dict):
        raise ConversionError(f"{where}: expected a mapping of model fields")
    try:
        model = ModelConfig(**data)
    except TypeError as exc:
        raise ConversionError(f"{where}: {exc} (fields of swallow_train.models.config."
                              "ModelConfig)") from None
    try:
        model.validate()
    except ValueError as exc:
        raise ConversionError(f"{where}: {exc}") from None
    return model


def load_model_config(preset: str | None, config: str | None) -> ModelConfig:
    """The model of a preset name (`recipes/model/{preset}.yaml`) or of a stage's config.yaml."""
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ConversionError(f"config={path}: no such file")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict) or "model" not in data:
            raise ConversionError(f"{path} has no model: section (pass a stage's config.yaml)")
        return _model_from_mapping(data["model"], f"{path} (model:)")
    from swallow_train.config import recipes_dir

    directory = recipes_dir() / "model"
    path = directory / f"{preset}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.yaml")))
        raise ConversionError(f"model={preset}: no preset {path} (known: {known})")
    return _model_from_mapping(yaml.safe_load(path.read_text()), str(path))


def plan(args: argparse.Namespace, model: ModelConfig) -> str:
    iter_dir = resolve_iteration_dir(args.checkpoint, args.iteration)
    tensors = NameMap(model, Spec.local).hf_shapes()
    params = sum(math.prod(s) for s in tensors.values())
    size = params * (2 if args.dtype == "bf16" else 4)
    return (f"export {iter_dir}\n  model {model.name}: {model.hf_architecture}, {params:,} "
            f"parameters in {len(tensors)} tensors ({size / 1e9:.2f} GB {args.dtype})\n"
            f"{_common_line(iter_dir)}"
            f"  -> {args.out} (tokenizer {args.tokenizer or model.tokenizer})")


def _common_line(iter_dir: Path) -> str:
    """What the checkpoint's common.pt says (Megatron-LM / slime: iteration, args), read with
    the restricted reader; the weights never need it, so an unreadable one is only reported."""
    path = iter_dir / COMMON_FILE
    if not path.is_file():
        return ""
    try:
        return f"  {COMMON_FILE}: {read_common_pt(path).describe()}\n"
    except ConversionError as exc:
        return f"  {COMMON_FILE}: {exc} (not needed for the weights)\n"


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    try:
        args = parse_args(argv)
        model = load_model_config(args.model, args.config)
        print(plan(args, model))
        if args.dry_run:
            return 0
        import torch

        from swallow_train.mcore.hf_export import export_checkpoint

        dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
        out = export_checkpoint(args.checkpoint, model, args.out, iteration=args.iteration,
                                tokenizer=args.tokenizer or model.tokenizer, dtype=dtype)
    except (ConversionError, TokenizerError, OverrideError) as exc:
        print(f"swallow-train export: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
