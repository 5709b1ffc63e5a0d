"""The environment checks of `swallow-train doctor`: package versions, GPUs, the parallel layout,
writable run and data directories, and the tokenizer. None of them imports megatron or slime
(versions are read from package metadata).

    swallow-train doctor cpt model=qwen3_8b cluster=abci3
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from swallow_train.check_report import Check, failed, passed, skipped
from swallow_train.models.config import ModelConfig
from swallow_train.training import TrainRecipe

TRAIN_STAGES = ("cpt", "sft")
MEGATRON_CORE_RANGE = ("0.15", "0.20")  # pyproject: megatron-core>=0.15,<0.20
PROBE_BYTES = 32 * 2**20
JA_EN = "Qwen3-Swallowは日本語と英語を学びます。東京科学大学 The quick brown fox, 13 dogs."


@dataclass(frozen=True)
class Package:
    label: str
    module: str
    dists: tuple[str, ...]
    install: str


PACKAGES = (
    Package("megatron-core", "megatron.core", ("megatron-core",),
            "pip install 'megatron-core>=0.15,<0.20'"),
    Package("transformer-engine", "transformer_engine",
            ("transformer-engine", "transformer_engine_torch", "transformer-engine-cu12"),
            "pip install --no-build-isolation 'transformer-engine[pytorch]', or use an NGC "
            "PyTorch container"),
    Package("flash-attn", "flash_attn", ("flash-attn", "flash_attn_3"), "pip install flash-attn"),
    Package("transformers", "transformers", ("transformers",), "pip install transformers"),
    Package("slime", "slime", ("slime",), "run in slime's venv or container (cluster.venv, "
            "cluster.container)"),
    Package("sglang", "sglang", ("sglang",), "run in slime's venv or container (it ships sglang)"),
)


def host() -> str:
    return socket.gethostname()


def _installed(package: Package) -> tuple[str | None, str | None]:
    """(version, where) without importing the package: metadata first, then the module spec
    (a source checkout on PYTHONPATH, as slime often is, has a spec but no metadata)."""
    for dist in package.dists:
        try:
            return metadata.version(dist), None
        except metadata.PackageNotFoundError:
            continue
    top = package.module.split(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is None:
        return None, None
    where = next(iter(spec.submodule_search_locations or []), spec.origin)
    return "source", str(where)


def _needed_for(package: Package, stage: str, cuda: bool, slime_backend: bool) -> str | None:
    """Why this run needs the package here, or None when it is optional."""
    if package.label == "transformers":
        return "the tokenizer and the HF export"
    if package.label == "megatron-core" and stage in TRAIN_STAGES:
        return f"the {stage} training loop"
    if package.label == "transformer-engine" and stage in TRAIN_STAGES and cuda:
        return "the GPU layers (fused attention, THD packing, context parallelism)"
    if package.label in ("slime", "sglang") and stage == "rl" and slime_backend and cuda:
        return "RL with backend=slime"
    return None


def _version_tuple(text: str) -> tuple[int, ...]:
    """The release numbers of a version string (`0.16.1rc2` -> (0, 16, 1)); () if unparsable."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text).release
    except InvalidVersion:
        return ()


def versions(stage: str, slime_backend: bool) -> list[Check]:
    """torch, CUDA, NCCL and the packages the stage runs on; FAIL only for one it needs here."""
    cuda = torch.cuda.is_available()
    rows = [passed("torch", torch.__version__, detail="CUDA build" if torch.version.cuda
                   else "CPU build")]
    if cuda:
        cap = ".".join(map(str, torch.cuda.get_device_capability(0)))
        rows.append(passed("CUDA", torch.version.cuda, detail=f"compute capability {cap}"))
        nccl = torch.cuda.nccl.version()
        nccl_text = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
        rows.append(passed("NCCL", nccl_text, detail="as torch loads it"))
    else:
        reason = ("no CUDA device visible" if torch.version.cuda
                  else f"torch {torch.__version__} is a CPU build")
        rows += [skipped("CUDA", reason), skipped("NCCL", reason)]
    for package in PACKAGES:
        version, where = _installed(package)
        need = _needed_for(package, stage, cuda, slime_backend)
        if version is None:
            if need:
                rows.append(failed(package.label, f"not installed; needed for {need}: "
                                   f"{package.install}"))
            else:
                rows.append(skipped(package.label, "not installed (not needed here)"))
            continue
        detail = f"from {where}" if where else ""
        if package.label == "megatron-core" and version != "source":
            low, high = (_version_tuple(v) for v in MEGATRON_CORE_RANGE)
            if not low <= _version_tuple(version) < high:
                rows.append(failed(package.label, f"swallow-train runs megatron-core "
                                   f"{MEGATRON_CORE_RANGE[0]}-0.19: {package.install}",
                                   value=version))
                continue
        rows.append(passed(package.label, version, detail=detail))
    return rows


def gpus(gpus_per_node: int) -> Check:
    """The node's GPUs and their memory: as many as cluster.gpus_per_node, each (nearly) free."""
    if not torch.cuda.is_available():
        return skipped("GPUs", "no CUDA device")
    count = torch.cuda.device_count()
    devices: list[dict[str, Any]] = []
    for index in range(count):
        free, total = torch.cuda.mem_get_info(index)
        devices.append({"index": index, "name": torch.cuda.get_device_name(index),
                        "total_gib": round(total / 2**30, 1), "free_gib": round(free / 2**30, 1)})
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    if count < gpus_per_node:
        return failed("GPUs", f"the recipe runs cluster.gpus_per_node={gpus_per_node} ranks per "
                      f"node but this node shows {count} (CUDA_VISIBLE_DEVICES={visible}): "
                      "allocate a full node or lower cluster.gpus_per_node",
                      value=count, unit="GPU", devices=devices)
    busy = [d for d in devices if d["free_gib"] < 0.9 * d["total_gib"]]
    if busy:
        names = ", ".join(f"GPU {d['index']} ({d['free_gib']} of {d['total_gib']} GiB free)"
                          for d in busy)
        return failed("GPUs", f"{names}: another process holds memory (see nvidia-smi); "
                      "start on a clean node", value=count, unit="GPU", devices=devices)
    first = devices[0]
    return passed("GPUs", count, "GPU", f"{count} x {first['name']}, {first['total_gib']} GiB "
                  f"each, min free {min(d['free_gib'] for d in devices)} GiB", devices=devices)


def layout(recipe: object) -> Check:
    """The parallel layout of a CPT/SFT recipe (`TrainRecipe.layout`) for cluster.nodes x
    cluster.gpus_per_node. `object`: doctor runs for every stage's recipe; any other (RL) is
    skipped, as slime checks its layout."""
    if not isinstance(recipe, TrainRecipe):
        return skipped("parallel layout", "checked by slime when the RL job starts "
                       "(swallow-train rl --dry-run renders its arguments)")
    result = recipe.layout()
    return passed("parallel layout", result.world_size, "ranks", result.describe())


def checkpoint_bytes(model: ModelConfig, keep_last: int) -> int:
    """Disk for `keep_last` checkpoints plus the one being written: bf16 weights, fp32 main
    weights and two fp32 Adam moments per parameter (14 bytes)."""
    return model.num_params() * 14 * (keep_last + 1)


def _missing_parents(path: Path) -> list[Path]:
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def writable(label: str, key: str, directory: str, need_bytes: int = 0) -> Check:
    """Create, fsync, read back and remove a probe file of 32 MiB in `directory` (created if
    missing, and removed again if this check created it): write MB/s and free space."""
    path = Path(directory).expanduser()
    created = _missing_parents(path.absolute())
    probe = path / f".doctor-probe-{host()}-{os.getpid()}"
    fix = f"fix its permissions or set {key}=<a writable directory>"
    try:
        path.mkdir(parents=True, exist_ok=True)
        block = os.urandom(PROBE_BYTES)
        start = time.perf_counter()
        with probe.open("wb") as fh:
            fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())
        seconds = max(time.perf_counter() - start, 1e-9)
        if probe.read_bytes() != block:
            return failed(f"{label} writable", f"{path}: the probe file read back differently "
                          "from what was written: the filesystem is unhealthy")
        probe.unlink()
        free = shutil.disk_usage(path).free
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        return failed(f"{label} writable", f"{path} ({key}) is not writable ({reason}): {fix}")
    finally:
        with contextlib.suppress(OSError):  # nothing to remove where nothing could be written
            probe.unlink(missing_ok=True)
        for made in created:  # deepest first: leave no directory this check created
            try:
                made.rmdir()
            except OSError:
                break
    detail = f"{path}: {free / 2**30:,.0f} GiB free"
    if need_bytes and free < need_bytes:
        return failed(f"{label} writable", f"{detail}, but the checkpoints need "
                      f"~{need_bytes / 2**30:,.0f} GiB (checkpoint.keep_last + 1 of 14 bytes per "
                      f"parameter): free space or lower checkpoint.keep_last",
                      value=round(PROBE_BYTES / seconds / 1e6, 1), unit="MB/s")
    return passed(f"{label} writable", round(PROBE_BYTES / seconds / 1e6, 1), "MB/s", detail,
                  free_bytes=free)


def tokenizer(spec: str, vocab_size: int) -> Check:
    """The model's tokenizer loads, round-trips Japanese + English exactly, fits the embedding
    and has a chat template that renders a Qwen3 turn."""
    from swallow_train.tokenizer import load_tokenizer

    tok = load_tokenizer(spec)
    ids = tok.encode(JA_EN, add_special_tokens=False)
    back = tok.decode(ids)
    if back != JA_EN:
        return failed("tokenizer", f"model.tokenizer={spec!r} does not round-trip {JA_EN!r} "
                      f"(got {back!r}): use Qwen3's tokenizer", value=len(ids), unit="tokens")
    if len(tok) > vocab_size:
        return failed("tokenizer", f"model.tokenizer={spec!r} has {len(tok):,} tokens, more than "
                      f"model.vocab_size={vocab_size:,}: pick the tokenizer of this model")
    if not getattr(tok, "chat_template", None):
        return failed("tokenizer", f"model.tokenizer={spec!r} has no chat template: SFT "
                      "rendering and the HF export need Qwen3's (tokenizer_config.json)")
    turn = tok.apply_chat_template([{"role": "user", "content": "こんにちは"}], tokenize=False,
                                   add_generation_prompt=True)
    if "<|im_start|>assistant" not in turn:
        return failed("tokenizer", f"model.tokenizer={spec!r}: its chat template does not render "
                      f"a Qwen3 assistant turn (got {turn[-60:]!r})")
    return passed("tokenizer", len(ids), "tokens", f"{spec}: {len(tok):,}-token vocabulary, "
                  "ja+en round-trip exact, chat template renders")
