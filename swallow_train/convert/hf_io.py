"""Hugging Face checkpoint directories: write (atomic, deterministic) and read.

`write_hf_checkpoint` turns HF-named tensors into what `transformers` and vLLM load as it is:
sharded `model-0000x-of-0000y.safetensors` + `model.safetensors.index.json`, `config.json`,
`generation_config.json` (Qwen3's sampling defaults) and the tokenizer files with the chat
template. It writes to a temporary directory beside `out_dir` and renames it into place, so an
existing `out_dir` is replaced only once the new one is complete; the same tensors give
byte-identical files.

    from swallow_train.convert.hf_io import write_hf_checkpoint, read_hf_state_dict
    write_hf_checkpoint(state_dict, model_cfg, "runs/tiny/rl/hf", tokenizer="bundled:qwen3")
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from swallow_train.convert.hf_meta import (
    GENERATION_DEFAULTS,
    QWEN3_BOS,
    StartTokens,
    check_rope_and_window,
)
from swallow_train.convert.names import NameMap, Spec
from swallow_train.convert.shards import (
    INDEX_NAME,
    SafetensorsSource,
    plan_shards,
    shard_name,
    write_safetensors,
)
from swallow_train.convert.transforms import ConversionError
from swallow_train.models.config import ModelConfig

DEFAULT_MAX_SHARD_BYTES = 5 * 2**30
PARALLEL_SHARDS = 2
"""Shards written at the same time, one thread each (file writes release the GIL)."""
DTYPE_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}


def check_hf_shapes(actual: dict[str, tuple[int, ...]], model: ModelConfig, where: str) -> None:
    """Raise ConversionError naming every missing, unexpected or wrongly shaped tensor."""
    expected = NameMap(model, Spec.local).hf_shapes()
    problems = [f"missing tensor {n} (expected shape {tuple(s)})"
                for n, s in expected.items() if n not in actual]
    problems += [f"tensor {n} has shape {tuple(actual[n])}, model {model.name!r} expects "
                 f"{tuple(s)}" for n, s in expected.items() if n in actual
                 and tuple(actual[n]) != tuple(s)]
    problems += [f"unexpected tensor {n} (not part of a {model.hf_architecture} with this config)"
                 for n in actual if n not in expected]
    if problems:
        shown = problems[:8] + ([f"... and {len(problems) - 8} more"] if len(problems) > 8 else [])
        raise ConversionError(f"{where} does not match model {model.name!r}:\n  "
                              + "\n  ".join(shown))


def from_transformers_layout(state_dict: dict[str, torch.Tensor], model: ModelConfig
                             ) -> dict[str, torch.Tensor]:
    """The checkpoint layout of a live `transformers` model's `state_dict()`: transformers 5
    holds a MoE layer's experts as `mlp.experts.gate_up_proj` [E, 2I, H] (gate first) and
    `mlp.experts.down_proj` [E, H, I] -> per-expert tensors (views); a tied `lm_head.weight`
    is dropped. Anything else passes through unchanged."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        prefix, _, leaf = name.rpartition("mlp.experts.")
        if model.is_moe and leaf in ("gate_up_proj", "down_proj") and tensor.dim() == 3:
            for e in range(tensor.shape[0]):
                base = f"{prefix}mlp.experts.{e}."
                if leaf == "down_proj":
                    out[base + "down_proj.weight"] = tensor[e]
                else:
                    gate, up = tensor[e].chunk(2)
                    out[base + "gate_proj.weight"], out[base + "up_proj.weight"] = gate, up
        elif name == "lm_head.weight" and model.tie_word_embeddings:
            embedding = state_dict.get("model.embed_tokens.weight")
            if embedding is None or not torch.equal(tensor, embedding):
                raise ConversionError("model.tie_word_embeddings is true but lm_head.weight is not "
                                      "model.embed_tokens.weight")
        else:
            out[name] = tensor
    return out


def _dump_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def generation_config(tok: Any, start: StartTokens | None = None) -> dict[str, Any]:
    """generation_config.json: the start checkpoint's as it was; without one, Qwen3's model
    card sampling defaults, stopping on <|im_end|> and <|endoftext|>."""
    if start is not None and start.generation_config is not None:
        return dict(start.generation_config)
    stops = [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    eos = [int(i) for i in stops if i is not None and i != tok.unk_token_id]
    bos = QWEN3_BOS if start is None or start.bos_token_id is None else start.bos_token_id
    return {**GENERATION_DEFAULTS, "bos_token_id": bos,
            "eos_token_id": eos or [int(tok.eos_token_id)], "pad_token_id": int(tok.pad_token_id)}


def _write_tokenizer(spec: str, out: Path, start: StartTokens | None) -> None:
    from swallow_train.tokenizer import load_tokenizer

    tok = load_tokenizer(spec)
    if not getattr(tok, "chat_template", None):
        raise ConversionError(f"tokenizer {spec!r} has no chat template; use one that has "
                              "(bundled:qwen3, Qwen/Qwen3-8B)")
    tok.save_pretrained(str(out))
    _drop_load_time_keys(out / "tokenizer_config.json")
    _dump_json(out / "generation_config.json", generation_config(tok, start))


# transformers 5 saves how the tokenizer was loaded (offline or not, from a local directory) into
# tokenizer_config.json; they describe this machine, not the tokenizer, and made exports differ
# between an online and an offline (HF_HUB_OFFLINE=1) process
_LOAD_TIME_KEYS = ("is_local", "local_files_only")


def _drop_load_time_keys(path: Path) -> None:
    config = json.loads(path.read_text(encoding="utf-8"))
    if any(k in config for k in _LOAD_TIME_KEYS):
        for key in _LOAD_TIME_KEYS:
            config.pop(key, None)
        _dump_json(path, config)


def write_hf_checkpoint(state_dict: dict[str, torch.Tensor], model: ModelConfig,
                        out_dir: str | os.PathLike[str], *, tokenizer: str,
                        dtype: torch.dtype = torch.bfloat16,
                        max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                        progress: bool = True, start: StartTokens | None = None) -> Path:
    """Write HF-named tensors as a complete HF checkpoint directory at `out_dir` (atomically).
    A live `transformers` model's `state_dict()` is accepted as it is (fused MoE experts are
    split back, a tied lm_head dropped: `from_transformers_layout`). `start`: the bos/eos and
    generation_config.json carried over from the stage's start checkpoint (None: Qwen3's)."""
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"dtype {dtype} is not one of {sorted(DTYPE_NAMES.values())}")
    state_dict = from_transformers_layout(state_dict, model)
    check_hf_shapes({n: tuple(t.shape) for n, t in state_dict.items()}, model, "state dict")
    order = list(NameMap(model, Spec.local).hf_shapes())
    sizes = [(n, state_dict[n].numel() * dtype.itemsize) for n in order]
    shards = plan_shards(sizes, max_shard_bytes)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConversionError(f"{out} exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        files = [shard_name(i, len(shards)) for i in range(len(shards))]
        bar = _progress(sum(s for _, s in sizes), f"writing {out.name}", progress)
        with ThreadPoolExecutor(max(1, min(PARALLEL_SHARDS, len(shards)))) as pool:
            jobs = [pool.submit(write_safetensors, tmp / file,
                                [(n, state_dict[n]) for n in names], dtype, bar.update)
                    for file, names in zip(files, shards, strict=True)]
            for job in jobs:
                job.result()
        bar.close()
        weight_map = {n: file for file, names in zip(files, shards, strict=True) for n in names}
        total = sum(s for _, s in sizes)
        _dump_json(tmp / INDEX_NAME, {"metadata": {"total_size": total}, "weight_map": weight_map})
        config = model.to_hf_config(torch_dtype=DTYPE_NAMES[dtype])
        if start is not None:
            config.update(bos_token_id=start.bos_token_id, eos_token_id=start.eos_token_id)
        # transformers_version as save_pretrained writes it: without it, transformers 5 takes
        # the checkpoint for a pre-4.57 one and warns that its tokenizer regex may be wrong
        _dump_json(tmp / "config.json", {**config, "dtype": DTYPE_NAMES[dtype],
                                         "transformers_version": version("transformers")})
        _write_tokenizer(tokenizer, tmp, start)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not enabled,
                leave=False)


def _replace_dir(new: Path, out: Path) -> None:
    """Move the complete `new` to `out`; an existing `out` is removed only after that."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / out.name)
    os.rename(new, out)
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_hf_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Every tensor of an HF safetensors checkpoint directory, by name."""
    source = SafetensorsSource(path)
    return {name: source.read(name) for name in source.names()}


def read_hf_config_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The config.json of an HF checkpoint directory, refused unless it is a Qwen3 (MoE) one
    with the default RoPE and full attention (`ModelConfig.check_compatible` compares it)."""
    file = Path(path) / "config.json"
    if not file.is_file():
        raise ConversionError(f"{file} does not exist: not an HF checkpoint directory")
    hf = json.loads(file.read_text())
    if hf.get("model_type") not in ("qwen3", "qwen3_moe"):
        raise ConversionError(f"{file}: model_type {hf.get('model_type')!r} is not qwen3 or "
                              "qwen3_moe")
    check_rope_and_window(hf, file)
    return hf


def read_hf_config(path: str | os.PathLike[str], name: str = "hf") -> ModelConfig:
    """The `ModelConfig` of an HF checkpoint directory (its config.json)."""
    return ModelConfig.from_hf_config(read_hf_config_dict(path), name=name)


def resolve_hf_path(spec: str | os.PathLike[str]) -> Path:
    """A local HF directory as it is, or a hub id downloaded (cached) with huggingface_hub."""
    spec = str(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise ConversionError(f"HF checkpoint {spec!r}: no such directory (and not a hub id "
                              "such as Qwen/Qwen3-8B-Base)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec, allow_patterns=["*.json", "*.safetensors", "*.txt",
                                                            "*.jinja", "*.model"]))
    except Exception as exc:  # offline, unknown repo, gated repo: all need the same fix
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConversionError(
            f"HF checkpoint {spec!r} is no local directory and could not be fetched from the "
            f"Hugging Face hub ({exc.__class__.__name__}: {first}). Without hub access, download "
            f"it on a machine that has it (huggingface-cli download {spec} --local-dir DIR), "
            "copy DIR here and pass DIR"
        ) from exc
