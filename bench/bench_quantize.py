"""Calibration generation time, AWQ W4A16 time and size on disk against bf16, on the tiny
model on CPU (needs llmcompressor: the /tmp/vq environment).

    /tmp/vq/bin/python bench/bench_quantize.py                  # tiny_dense, random init
    /tmp/vq/bin/python bench/bench_quantize.py --model tiny_moe --samples 32 --n-grid 20

Generation: the quantize stage's sampler (transformers, the model card's sampling) on the tiny
math train prompts. Quantization: `quantize_awq` on chat texts of the same form. Size: the
weight files of the bf16 export against the compressed-tensors checkpoint, in total and for
the quantized Linear weights alone (the tiny model is mostly its 151,936-entry embedding and
LM head, which stay bf16).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4, "I64": 8, "I8": 1, "U8": 1}


def write_policy(out: Path, preset: str) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    from swallow_train.config import compose
    from swallow_train.convert.hf_io import write_hf_checkpoint

    cfg = compose("quantize", [f"model={preset}"]).model
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        AutoConfig.for_model(**cfg.to_hf_config(torch_dtype="float32")), dtype=torch.float32)
    return write_hf_checkpoint(dict(model.state_dict()), cfg, out, tokenizer=cfg.tokenizer,
                               dtype=torch.bfloat16, progress=False)


def linear_bytes(path: Path) -> tuple[int, int]:
    """(bytes of the decoder-layer Linear tensors, bytes of everything) in `path`."""
    from safetensors import safe_open

    linear = total = 0
    for file in path.glob("*.safetensors"):
        with safe_open(str(file), "pt") as fh:
            for name in fh.keys():  # noqa: SIM118
                t = fh.get_slice(name)
                shape = t.get_shape()
                size = DTYPE_BYTES[t.get_dtype()]
                for d in shape:
                    size *= d
                total += size
                if ".layers." in name and "norm" not in name and ".mlp.gate." not in name:
                    linear += size
    return linear, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny_dense", choices=["tiny_dense", "tiny_moe"])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=4, help="samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=12)
    ap.add_argument("--samples", type=int, default=16, help="calibration samples")
    ap.add_argument("--max-seq-length", type=int, default=64)
    ap.add_argument("--n-grid", type=int, default=10)
    args = ap.parse_args()

    from swallow_train.data.tiny_math import tiny_problems
    from swallow_train.quant.awq import quantize_awq
    from swallow_train.quant.calibrate import load_prompts
    from swallow_train.quant.config import AWQConfig, GenBackend, SamplingConfig
    from swallow_train.quant.generate import Sampler, progress_bar
    from swallow_train.tokenizer import load_tokenizer

    root = Path(tempfile.mkdtemp(prefix="bench_quantize-"))
    source = write_policy(root / "bf16", args.model)
    tok = load_tokenizer(str(source))
    train = root / "train.jsonl"
    import json

    train.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                             for r in tiny_problems(seed=0)[: args.prompts]))
    prompts, rows = load_prompts(train, tok, 128)
    t0 = time.perf_counter()
    with Sampler(source, tok, backend=GenBackend.transformers, sampling=SamplingConfig(),
                 max_new_tokens=args.max_new_tokens, batch_size=args.prompts,
                 max_prompt_len=128) as sampler:
        gens = sampler.sample(prompts, n=args.n, seed=0, bar=progress_bar(0, "gen", False))
    gen_s = time.perf_counter() - t0
    new_tokens = sum(len(g.token_ids) for g in gens)
    texts = [rows[g.prompt_index]["templated"] + g.text + "<|im_end|>" for g in gens]
    t0 = time.perf_counter()
    out = quantize_awq(source, texts[: args.samples], tok, AWQConfig(n_grid=args.n_grid),
                       max_seq_length=args.max_seq_length, out=root / "w4a16")
    quant_s = time.perf_counter() - t0
    (lin_bf16, all_bf16), (lin_q, all_q) = linear_bytes(source), linear_bytes(out)
    print(f"model {args.model}, CPU threads {torch.get_num_threads()}")
    print(f"calibration generation: {len(gens)} responses ({args.prompts} prompts x {args.n}), "
          f"{new_tokens} new tokens in {gen_s:.1f} s ({new_tokens / gen_s:.1f} tokens/s)")
    print(f"AWQ W4A16 (g128, n_grid {args.n_grid}): {args.samples} samples x <= "
          f"{args.max_seq_length} tokens in {quant_s:.1f} s (load, smooth, quantize, save)")
    print(f"size on disk: bf16 {all_bf16 / 1e6:.2f} MB -> {all_q / 1e6:.2f} MB, "
          f"ratio x{all_q / all_bf16:.3f} (whole checkpoint)")
    print(f"decoder Linear weights: {lin_bf16 / 1e6:.3f} MB -> {lin_q / 1e6:.3f} MB, "
          f"ratio x{lin_q / lin_bf16:.3f} (4-bit packed + bf16 scales per 128: ideal "
          f"x{(0.5 + 2 / 128) / 2:.3f})")


if __name__ == "__main__":
    main()
