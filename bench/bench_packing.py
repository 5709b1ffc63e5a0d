"""Packing efficiency and speed: best-fit-decreasing (what `prepare-sft` uses) against naive
greedy concatenation, on the same lengths in the same run.

    .venv/bin/python bench/bench_packing.py                       # 2.1M conversations, 32k packs
    .venv/bin/python bench/bench_packing.py --n 200000 --capacity 8192

The lengths come from `swallow_train.data.packing.chat_lengths`: a documented log-normal
stand-in for the Qwen3-Swallow 8B SFT mixture (the real data cannot be downloaded here; its
parameters are assumptions stated in that function's docstring), 2.1M conversations by default.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from swallow_train.data.packing import best_fit_decreasing, chat_lengths, efficiency, greedy_concat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_100_000, help="conversations")
    ap.add_argument("--capacity", type=int, default=32_768, help="pack length (tokens)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    lengths = chat_lengths(args.n, seed=args.seed, max_len=args.capacity)
    print(
        f"{args.n:,} conversations, {int(lengths.sum()):,} tokens; length median "
        f"{int(np.median(lengths)):,}, mean {lengths.mean():,.0f}, p99 "
        f"{int(np.percentile(lengths, 99)):,}; capacity {args.capacity:,}"
    )
    lower = int(np.ceil(lengths.sum() / args.capacity))
    rows = {}
    for name, fn in (
        ("greedy concatenation (baseline)", greedy_concat),
        ("best-fit decreasing", best_fit_decreasing),
    ):
        start = time.perf_counter()
        packs = fn(lengths, args.capacity, args.seed)
        seconds = time.perf_counter() - start
        eff = efficiency(lengths, packs, args.capacity)
        rows[name] = (eff, len(packs), seconds)
        print(
            f"{name:<34} efficiency {eff:7.3%}  packs {len(packs):>9,} (lower bound "
            f"{lower:,})  {seconds:6.2f} s  {args.n / seconds:>12,.0f} conversations/s"
        )
    (e0, p0, s0), (e1, p1, s1) = rows.values()
    print(
        f"ratio best-fit / greedy: efficiency x{e1 / e0:.3f}, packs (= steps of compute) "
        f"x{p1 / p0:.3f}, time x{s1 / s0:.2f}"
    )


if __name__ == "__main__":
    main()
