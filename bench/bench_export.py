"""Export throughput: swallow-train's megatron -> HF export against `transformers`'
`save_pretrained` of the same weights, in the same run.

    .venv/bin/python bench/bench_export.py                    # Qwen3-1.7B shape, 3.4 GB bf16
    .venv/bin/python bench/bench_export.py --arch moe         # 3 layers of 30B-A3B, 5.0 GB
    .venv/bin/python bench/bench_export.py --dir /tmp         # through the disk

Ours: megatron-named bf16 tensors -> `mcore_to_hf` (QKV de-interleave, gate/up split) ->
`write_hf_checkpoint` (sharded safetensors + index + config + generation config + tokenizer,
fsync'ed, atomic rename). Baseline: `save_pretrained` of a `transformers` model holding the same
bf16 tensors (QKV/gate/up already split), timed as it is and with an fsync of its files after
(ours always fsyncs). "ours (HF tensors)" is `write_hf_checkpoint` of the very tensors the
baseline saves. GB/s counts the safetensors bytes. Runs alternate and medians are reported: the
machine is shared, so single runs are noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from swallow_train.convert.hf_io import write_hf_checkpoint
from swallow_train.convert.names import NameMap, Spec
from swallow_train.convert.transforms import mcore_to_hf
from swallow_train.models.config import ModelConfig
from swallow_train.tokenizer import load_tokenizer

ARCHS = {
    # Qwen3-1.7B's architecture (tied embeddings): 1.72e9 parameters, 3.4 GB in bf16.
    "dense": ModelConfig(
        name="qwen3_1_7b_shape",
        hidden_size=2048,
        num_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        ffn_hidden_size=6144,
        tie_word_embeddings=True,
    ),
    # 3 layers of Qwen3-30B-A3B (128 experts): 2.5e9 parameters, 5.0 GB in bf16.
    "moe": ModelConfig(
        name="qwen3_30b_a3b_3_layers",
        hidden_size=2048,
        num_layers=3,
        num_attention_heads=32,
        num_key_value_heads=4,
        head_dim=128,
        ffn_hidden_size=6144,
        num_experts=128,
        moe_router_topk=8,
        moe_ffn_hidden_size=768,
    ),
}


def megatron_state_dict(model: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """Whole megatron-named bf16 tensors (local spec names), filled from a random block."""
    names = NameMap(model, Spec.local)
    h, hd = model.hidden_size, model.head_dim
    qkv_rows = (model.num_attention_heads + 2 * model.num_key_value_heads) * hd
    block = torch.randn(1 << 22, generator=torch.Generator().manual_seed(seed)).bfloat16()
    out: dict[str, torch.Tensor] = {}
    for match in names.instances():
        if match.rule.hf[0].endswith("q_proj.weight"):
            shape: tuple[int, ...] = (qkv_rows, h)
        elif len(match.rule.hf) == 2:  # gate/up
            ffn = model.moe_ffn_hidden_size if match.rule.expert else model.ffn_hidden_size
            shape = (2 * ffn, h)
        else:
            shape = names.hf_shapes()[match.hf_names()[0]]
        tensor = torch.empty(shape, dtype=torch.bfloat16)
        flat = tensor.view(-1)
        for start in range(0, flat.numel(), block.numel()):
            part = flat[start : start + block.numel()]
            part.copy_(block[: part.numel()])
        out[match.mcore_name()] = tensor
    return out


def hf_model(model: ModelConfig, hf_sd: dict[str, torch.Tensor]):
    """A transformers model whose parameters are exactly `hf_sd`'s tensors (no copy)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    hf = model.to_hf_config(torch_dtype="bfloat16")
    config = AutoConfig.for_model(hf.pop("model_type"), **hf)
    with torch.device("meta"):
        net = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    if model.is_moe:  # transformers 5 holds the experts of a layer as two 3D parameters
        hf_sd = dict(hf_sd)
        for layer in range(model.num_layers):
            p = f"model.layers.{layer}.mlp.experts."
            experts = range(model.num_experts)
            hf_sd[p + "gate_up_proj"] = torch.stack(
                [
                    torch.cat(
                        [hf_sd.pop(f"{p}{e}.gate_proj.weight"), hf_sd.pop(f"{p}{e}.up_proj.weight")]
                    )
                    for e in experts
                ]
            )
            hf_sd[p + "down_proj"] = torch.stack(
                [hf_sd.pop(f"{p}{e}.down_proj.weight") for e in experts]
            )
    net.load_state_dict(hf_sd, strict=False, assign=True)
    net.tie_weights()
    missing = [n for n, p in net.named_parameters() if p.is_meta]
    assert not missing, f"parameters left on the meta device: {missing[:3]}"
    return net


def fsync_tree(path: Path) -> None:
    for file in path.iterdir():
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def default_dir() -> str | None:
    """/dev/shm when it has room (the software path, not a disk shared with other jobs)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 12e9:
        return str(shm)
    return None


def timed(fn: Callable[[Path], float | None], out: Path) -> float:
    start = time.perf_counter()
    own = fn(out)
    elapsed = time.perf_counter() - start if own is None else own
    shutil.rmtree(out)
    return elapsed


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=sorted(ARCHS), default="dense")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--dir",
        default=default_dir(),
        help="where to write (default: /dev/shm if it has room, else /tmp)",
    )
    p.add_argument(
        "--max-shard-gb",
        type=float,
        default=1.0,
        help="shard size for both writers (HF's hub checkpoints use ~4-5 GB)",
    )
    args = p.parse_args(argv)
    model = ARCHS[args.arch]
    names = NameMap(model, Spec.local)
    t0 = time.perf_counter()
    mcore_sd = megatron_state_dict(model, seed=0)
    hf_sd = {k: v.contiguous() for k, v in mcore_to_hf(mcore_sd, names).items()}
    net = hf_model(model, hf_sd)
    load_tokenizer("bundled:qwen3")  # parse the tokenizer once, outside the timings (~1 s)
    nbytes = sum(t.numel() * t.element_size() for t in hf_sd.values())
    print(
        f"{model.name}: {sum(t.numel() for t in hf_sd.values()) / 1e9:.2f}e9 parameters, "
        f"{nbytes / 1e9:.2f} GB bf16; writing to {args.dir or tempfile.gettempdir()} "
        f"(setup {time.perf_counter() - t0:.0f} s)"
    )
    shard = int(args.max_shard_gb * 1e9)
    runs: dict[str, list[float]] = {
        k: []
        for k in (
            "ours (megatron tensors)",
            "ours (HF tensors)",
            "save_pretrained",
            "save_pretrained+fsync",
        )
    }

    def ours_from_megatron(out: Path) -> None:  # the export path after the gather
        write_hf_checkpoint(
            mcore_to_hf(mcore_sd, names),
            model,
            out,
            tokenizer="bundled:qwen3",
            max_shard_bytes=shard,
            progress=False,
        )

    def ours_from_hf(out: Path) -> None:
        write_hf_checkpoint(
            hf_sd, model, out, tokenizer="bundled:qwen3", max_shard_bytes=shard, progress=False
        )

    def theirs(out: Path) -> float:
        """save_pretrained's time; its time with an fsync of its files goes to `runs`."""
        start = time.perf_counter()
        net.save_pretrained(out, max_shard_size=shard)
        elapsed = time.perf_counter() - start
        fsync_tree(out)
        runs["save_pretrained+fsync"].append(time.perf_counter() - start)
        return elapsed

    order = [
        ("ours (megatron tensors)", ours_from_megatron),
        ("ours (HF tensors)", ours_from_hf),
        ("save_pretrained", theirs),
    ]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for repeat in range(args.repeats):  # rotate, so that no writer always goes first
            for key, fn in order[repeat % 3 :] + order[: repeat % 3]:
                runs[key].append(timed(fn, Path(tmp) / "out"))
    median = {k: statistics.median(v) for k, v in runs.items()}
    for key, seconds in median.items():
        print(
            f"{key:<24} {nbytes / seconds / 1e9:6.2f} GB/s  (median {seconds:.2f} s of "
            f"{', '.join(f'{s:.2f}' for s in runs[key])})"
        )
    base = median["save_pretrained"]
    for key in ("ours (megatron tensors)", "ours (HF tensors)"):
        print(
            f"ratio {key} / save_pretrained: {base / median[key]:.2f}x "
            f"(vs save_pretrained+fsync: {median['save_pretrained+fsync'] / median[key]:.2f}x)"
        )


if __name__ == "__main__":
    main()
