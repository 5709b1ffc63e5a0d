"""What vLLM reads from a Hugging Face export, checked before a server is started (and by the
tests, on every stage's export): config.json (architecture, dtype, shapes), the safetensors
shards named by the index, the tokenizer with its chat template and the `<think>` tokens that
`--reasoning-parser qwen3` looks up, and generation_config.json, whose sampling keys vLLM
makes the server's defaults and whose eos ids become stop tokens.

    from swallow_train.serve.export_check import check_export
    info = check_export("runs/tiny/rl/hf", cpu=True)   # ServeError listing every problem
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swallow_train.errors import SwallowError

SERVABLE = {"Qwen3ForCausalLM": "qwen3", "Qwen3MoeForCausalLM": "qwen3_moe"}
"""Architectures this project exports, with the model_type transformers' AutoConfig needs."""
DTYPES = ("bfloat16", "float16", "float32")
CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
"""head_dim values vLLM's CPU attention kernel implements (others load, then fail)."""
SAMPLING_KEYS = ("repetition_penalty", "temperature", "top_k", "top_p", "min_p",
                 "max_new_tokens")
"""The generation_config.json keys vLLM turns into the server's default sampling parameters
(`ModelConfig.get_diff_sampling_param`)."""
THINK_TOKENS = ("<think>", "</think>")
"""Looked up in the vocabulary by vLLM's qwen3 reasoning parser."""
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
"""An unsharded checkpoint's one weights file (no index): vLLM and transformers read it."""


class ServeError(SwallowError, ValueError):
    """An export vLLM would not load or serve as intended; the message says what to fix."""


@dataclass(frozen=True)
class ExportInfo:
    """What a server started on the export will use."""

    path: Path
    architecture: str
    dtype: str
    max_model_len: int
    sampling: dict[str, Any]
    """generation_config.json's keys among SAMPLING_KEYS: the server's sampling defaults."""
    stop_ids: list[int]
    """generation_config.json's eos_token_id(s): generation stops on each of them."""


def _json(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.is_file():
        problems.append(f"{path} is missing")
        return {}
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        problems.append(f"{path} is not valid JSON ({exc})")
        return {}
    if not isinstance(value, dict):
        problems.append(f"{path} holds a {type(value).__name__}, not an object")
        return {}
    return value


def _ids(value: Any) -> list[int]:
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def _check_config(path: Path, config: dict[str, Any], cpu: bool, problems: list[str]) -> None:
    file = path / "config.json"
    archs = config.get("architectures") or []
    if len(archs) != 1 or archs[0] not in SERVABLE:
        problems.append(f"{file}: architectures {archs} is not one of {sorted(SERVABLE)}")
    elif config.get("model_type") != SERVABLE[archs[0]]:
        problems.append(f"{file}: model_type {config.get('model_type')!r} does not match "
                        f"{archs[0]} (expected {SERVABLE[archs[0]]!r})")
    dtype = config.get("dtype", config.get("torch_dtype"))
    if dtype not in DTYPES:
        problems.append(f"{file}: dtype {dtype!r} is not one of {list(DTYPES)}")
    vocab = config.get("vocab_size")
    for key in ("bos_token_id", "eos_token_id"):
        bad = [i for i in _ids(config.get(key)) if not isinstance(vocab, int) or i >= vocab]
        if bad:
            problems.append(f"{file}: {key} {bad} is outside the vocabulary ({vocab})")
    head_dim = config.get("head_dim")
    if cpu and head_dim not in CPU_HEAD_DIMS:
        problems.append(f"{file}: head_dim {head_dim} is not served by vLLM's CPU attention "
                        f"(it implements {', '.join(map(str, CPU_HEAD_DIMS))}): serve this "
                        "model on a GPU (cluster=...)")


def _check_weights(path: Path, problems: list[str]) -> None:
    if not (path / INDEX).is_file() and (path / SINGLE).is_file():
        return  # one unsharded file (the quantize stage's save of a small model): read as is
    index = _json(path / INDEX, problems)
    weight_map = index.get("weight_map")
    if index and not isinstance(weight_map, dict):
        problems.append(f"{path / INDEX} has no weight_map")
        return
    from safetensors import safe_open

    for file in sorted(set((weight_map or {}).values())):
        shard = path / file
        if not shard.is_file():
            problems.append(f"{shard} is missing (named by {INDEX})")
            continue
        with safe_open(str(shard), framework="pt") as handle:
            held = set(handle.keys())
        absent = sorted(n for n, f in weight_map.items() if f == file and n not in held)
        if absent:
            problems.append(f"{shard} lacks {len(absent)} tensor(s) the index puts there, "
                            f"e.g. {absent[0]}")


def _check_tokenizer(path: Path, problems: list[str]) -> None:
    tok_config = _json(path / "tokenizer_config.json", problems)
    vocab = _json(path / "tokenizer.json", problems)
    template = path / "chat_template.jinja"
    if tok_config and not tok_config.get("chat_template") and not template.is_file():
        problems.append(f"{path} has no chat template (chat_template.jinja or chat_template in "
                        "tokenizer_config.json): export with a tokenizer that has one "
                        "(bundled:qwen3, Qwen/Qwen3-8B)")
    if vocab:
        known = {t.get("content") for t in vocab.get("added_tokens", [])}
        known |= set((vocab.get("model") or {}).get("vocab") or {})
        missing = [t for t in THINK_TOKENS if t not in known]
        if missing:
            problems.append(f"{path / 'tokenizer.json'} lacks {missing}, which "
                            "--reasoning-parser qwen3 needs")


def _check_generation(file: Path, gen: dict[str, Any], vocab: Any,
                      problems: list[str]) -> None:
    ranges = {"temperature": (0.0, None), "top_p": (0.0, 1.0), "min_p": (0.0, 1.0),
              "repetition_penalty": (0.0, None)}
    for key, (low, high) in ranges.items():
        value = gen.get(key)
        if value is None:
            continue
        if not isinstance(value, int | float) or value < low or (high is not None
                                                                 and value > high):
            problems.append(f"{file}: {key} {value!r} must be a number in [{low}, {high or 'inf'}]")
    top_k = gen.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or top_k < -1):
        problems.append(f"{file}: top_k {top_k!r} must be an integer >= -1 (0 or -1: off)")
    stops = _ids(gen.get("eos_token_id"))
    if not stops:
        problems.append(f"{file}: eos_token_id {gen.get('eos_token_id')!r} names no token id")
    elif isinstance(vocab, int) and any(i >= vocab for i in stops):
        problems.append(f"{file}: eos_token_id {stops} is outside the vocabulary ({vocab})")


def check_export(path: str | Path, *, cpu: bool = False) -> ExportInfo:
    """Raise ServeError listing every file or field of `path` that vLLM would refuse or
    misread; `cpu`: also what vLLM's CPU build cannot run."""
    root = Path(path)
    if not root.is_dir():
        raise ServeError(f"{root} is not a directory: pass a stage's export, "
                         "runs/<name>/<stage>/hf")
    problems: list[str] = []
    config = _json(root / "config.json", problems)
    if config:
        _check_config(root, config, cpu, problems)
    _check_weights(root, problems)
    _check_tokenizer(root, problems)
    gen = _json(root / "generation_config.json", problems)
    if gen:
        _check_generation(root / "generation_config.json", gen, config.get("vocab_size"),
                          problems)
    if problems:
        raise ServeError(f"{root} cannot be served by vLLM as it is:\n  - "
                         + "\n  - ".join(problems))
    archs = config["architectures"]
    return ExportInfo(path=root, architecture=archs[0],
                      dtype=config.get("dtype", config.get("torch_dtype")),
                      max_model_len=int(config.get("max_position_embeddings", 0)),
                      sampling={k: gen[k] for k in SAMPLING_KEYS if k in gen},
                      stop_ids=_ids(gen.get("eos_token_id")))
