"""Sampled generation on CPU: transformers' `generate(do_sample=True)` (temperature, top-k,
top-p: a full-vocabulary sort and `torch.multinomial` per step) against the `SeededSampler`
logits processor that the eval's `swallow-hf` backend and the RL rollouts use (the same
distribution, drawn over the top-k candidates), with greedy decoding as the floor; the same
random-init tiny Qwen3 (151,936-token vocabulary), rows and lengths in the same run.

    .venv/bin/python bench/bench_eval_sampling.py                 # 32 rows x 16 tokens, model card
    .venv/bin/python bench/bench_eval_sampling.py --rows 64 --tokens 8 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from swallow_train.rl.rollout import SeededSampler


def tiny_model() -> torch.nn.Module:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from swallow_train.config import compose

    m = compose("pipeline", []).model  # the tiny default preset
    config = Qwen3Config(vocab_size=151_936, hidden_size=m.hidden_size,
                         num_hidden_layers=m.num_layers,
                         num_attention_heads=m.num_attention_heads,
                         num_key_value_heads=m.num_key_value_heads, head_dim=m.head_dim,
                         intermediate_size=m.ffn_hidden_size, tie_word_embeddings=False)
    torch.manual_seed(0)
    return Qwen3ForCausalLM(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--prompt", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = tiny_model()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 150_000, (args.rows, args.prompt), generator=gen)
    card = {"temperature": 0.6, "top_k": 20, "top_p": 0.95}
    common = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens, "pad_token_id": 0,
              "attention_mask": torch.ones_like(ids)}

    def hf_sample() -> None:
        model.generate(ids, do_sample=True, **card, **common)

    def seeded() -> None:
        sampler = SeededSampler(**card, seed=0)
        model.generate(ids, do_sample=False, logits_processor=[sampler], **common)

    def greedy() -> None:
        model.generate(ids, do_sample=False, **common)

    times: dict[str, list[float]] = {"transformers do_sample": [], "SeededSampler": [],
                                     "greedy": []}
    with torch.no_grad():
        for _ in range(args.repeats + 1):  # the first round warms up, not counted
            for name, fn in zip(times, (hf_sample, seeded, greedy), strict=True):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    median = {k: statistics.median(v[1:]) for k, v in times.items()}
    base = median["transformers do_sample"]
    print(f"{args.rows} rows x {args.tokens} new tokens (prompt {args.prompt}), "
          f"{torch.get_num_threads()} threads, median of {args.repeats}:")
    for name, t in median.items():
        print(f"  {name:<24} {t:7.2f} s   x{base / t:.2f} vs transformers do_sample")


if __name__ == "__main__":
    main()
