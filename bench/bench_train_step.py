"""Training-step throughput of our megatron-core path against a plain transformers step.

Qwen3-8B layer shape (hidden 4096, 32/8 heads, ffn 12288, 151,936 vocab), 4 layers by default
(2 layers would be 76% embedding and LM head: a benchmark of the head and the optimizer), the
same batch and the same precision recipe on both sides, in the same run:

* ours: megatron-core with bf16 weights, fp32 main weights, fp32 gradient buffer, fp32 AdamW
  state (distributed optimizer), TE layer spec and fused paths when CUDA + TE are present;
* baseline: `Qwen3ForCausalLM` (SDPA attention) with fp32 weights, gradients and AdamW state
  (torch's fused AdamW), forward/backward under `torch.autocast(bfloat16)`.

Both compute matmuls in bf16 and keep fp32 master weights and fp32 Adam state; the difference
left: ours stores a bf16 copy of the weights (autocast re-casts the fp32 weights every step).
Both run under the trainer's deterministic mode (`train.deterministic`: off on GPU, on on CPU,
as `swallow_train.mcore.trainer` sets it). Reports tokens/s/GPU, TFLOP/s/GPU and MFU (model
FLOPs per token from ModelConfig.flops_per_token, H100/H200 dense bf16 peak 989 TFLOP/s) and
the ratio ours / baseline per sequence length.

    python bench/bench_train_step.py                       # GPU: 4 layers, 4K and 32K
    python bench/bench_train_step.py --layers 8 --seqs 4096
    python bench/bench_train_step.py --tiny                # CPU smoke run (tiny shape, fp32)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import torch

from swallow_train.config import compose
from swallow_train.mcore import cpu_runtime
from swallow_train.metrics.throughput import H100_BF16_PEAK_FLOPS


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _time(step, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    _sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@cpu_runtime.active()  # CPU: megatron's CUDA calls to the CPU (not for the baseline)
def ours(model_cfg, seq: int, micro_batch: int, steps: int, warmup: int) -> float:
    from swallow_train.mcore import distributed
    from swallow_train.mcore.config import Precision
    from swallow_train.mcore.model import build_model, transformer_config
    from swallow_train.mcore.optim import build_optimizer, wrap_for_training
    from swallow_train.mcore.step import train_step
    from swallow_train.parallel import ParallelConfig, validate_layout

    recipe = compose("cpt", ["model=tiny_dense"])
    parallel = ParallelConfig()
    layout = validate_layout(model_cfg, parallel, world_size=1, global_batch_size=micro_batch,
                             micro_batch_size=micro_batch, seq_length=seq)
    distributed.init_parallel_state(layout, seed=0)
    precision = Precision.bf16 if torch.cuda.is_available() else Precision.fp32
    config = transformer_config(model_cfg, parallel, layout, precision=precision)
    chunks = wrap_for_training(build_model(model_cfg, config), config, parallel)
    optimizer, scheduler = build_optimizer(chunks, config, recipe.optim, parallel,
                                           train_steps=steps + warmup)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ids = torch.randint(0, model_cfg.vocab_size, (micro_batch, seq), device=device)
    batch = {"tokens": ids, "labels": ids, "loss_mask": torch.ones_like(ids, dtype=torch.float),
             "position_ids": torch.arange(seq, device=device)[None].expand(micro_batch, -1)}
    seconds = _time(lambda: train_step(chunks, optimizer, scheduler, [batch]), steps, warmup)
    distributed.shutdown()
    return seconds  # the model and optimizer are freed with this frame


def baseline(model_cfg, seq: int, micro_batch: int, steps: int, warmup: int) -> float:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cuda = torch.cuda.is_available()
    config = Qwen3Config(**model_cfg.to_hf_config(), attn_implementation="sdpa")
    model = Qwen3ForCausalLM(config).to("cuda" if cuda else "cpu", torch.float32)
    model.gradient_checkpointing_disable()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95),
                                  weight_decay=0.1, fused=cuda)
    ids = torch.randint(0, model_cfg.vocab_size, (micro_batch, seq), device=model.device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return _time(step, steps, warmup)


def _set_deterministic(recipe) -> bool:
    """The trainer's deterministic mode for this device (TrainConfig.deterministic)."""
    from swallow_train.mcore.trainer import _configure_determinism

    _configure_determinism(recipe)
    return recipe.train.resolved_deterministic(torch.cuda.is_available())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seqs", default="4096,32768")
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="tiny shape, for a CPU smoke run")
    args = parser.parse_args()
    recipe = compose("cpt", ["model=tiny_dense" if args.tiny else "model=qwen3_8b"])
    model_cfg = replace(recipe.model, num_layers=args.layers)
    deterministic = _set_deterministic(recipe)
    seqs = [int(s) for s in args.seqs.split(",")] if not args.tiny else [128, 512]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    embed = model_cfg.vocab_size * model_cfg.hidden_size * 2 / model_cfg.num_params()
    precision = ("bf16 compute, fp32 master weights and Adam state on both sides"
                 if torch.cuda.is_available() else "fp32 (CPU)")
    print(f"{device}: {model_cfg.name} shape, {args.layers} layers "
          f"({model_cfg.num_params() / 1e9:.2f}B parameters, {embed:.0%} embedding + LM head), "
          f"micro-batch {args.micro_batch}; deterministic {'on' if deterministic else 'off'}; "
          f"median of {args.steps} steps after {args.warmup}; precision: {precision}")
    results = []
    for seq in seqs:
        tokens = args.micro_batch * seq
        flops = model_cfg.flops_per_token(seq)
        row = {"seq": seq}
        for name, fn in (("ours", ours), ("baseline", baseline)):
            seconds = fn(model_cfg, seq, args.micro_batch, args.steps, args.warmup)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            row[name] = {"tokens_per_s_per_gpu": tokens / seconds,
                         "tflops_per_gpu": tokens / seconds * flops / 1e12,
                         "mfu": (tokens / seconds * flops / H100_BF16_PEAK_FLOPS
                                 if torch.cuda.is_available() else None)}
        row["ratio"] = row["ours"]["tokens_per_s_per_gpu"] / row["baseline"][
            "tokens_per_s_per_gpu"]
        results.append(row)
        for name in ("ours", "baseline"):
            r = row[name]
            mfu = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
            print(f"seq {seq:>6} {name:>8}: {r['tokens_per_s_per_gpu']:10.0f} tok/s/GPU "
                  f"{r['tflops_per_gpu']:7.2f} TFLOP/s  MFU {mfu}")
        print(f"seq {seq:>6}    ratio: {row['ratio']:.2f}x (ours / transformers)")
    print(json.dumps({"device": device, "layers": args.layers, "deterministic": deterministic,
                      "results": results}))


if __name__ == "__main__":
    main()
