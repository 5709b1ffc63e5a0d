"""Reward throughput: the pooled verifier (`PooledVerifier`, spawned worker processes with hard
deadlines, awaited from an event loop) against calling math-verify serially in this process,
on the same responses in the same run. Both must give identical rewards.

    .venv/bin/python bench/bench_reward.py                       # 2,000 responses, all cores
    .venv/bin/python bench/bench_reward.py --samples 5000 --workers 8 --think-chars 20000

Responses are thinking text (`--think-chars` characters) followed by a final answer in one of
the forms of the reward tests (fractions, decimals, LaTeX, intervals, units, full-width
digits), right or wrong, against labels in another form.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from swallow_train.rl.verify import PooledVerifier, check_response

# (label, a correct answer, a wrong answer)
FORMS = [
    ("\\frac{1}{2}", "0.5", "0.25"),
    ("0.75", "\\frac{3}{4}", "\\frac{4}{3}"),
    ("2\\sqrt{3}", "\\sqrt{12}", "3\\sqrt{2}"),
    ("\\frac{\\pi}{2}", "\\pi/2", "\\pi"),
    ("[1,2)", "[1, 2)", "(1, 2)"),
    ("(0,\\infty)", "(0, \\infty)", "[0, \\infty)"),
    ("x^2+1", "1 + x^2", "x^2 - 1"),
    ("36", "36\\text{ cm}^2", "63"),
    ("12", "１２", "１３"),
    ("3/4", "３／４", "４／３"),
    ("1000", "1{,}000", "100"),
    ("3", "x = 3", "x = 4"),
]
THOUGHT = (
    "Let me consider the problem carefully. We set up the equation and simplify "
    "both sides, checking each step. "
)


def make_samples(n: int, think_chars: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    thinking = (THOUGHT * (think_chars // len(THOUGHT) + 1))[:think_chars]
    samples = []
    for _ in range(n):
        label, right, wrong = rng.choice(FORMS)
        answer = right if rng.random() < 0.5 else wrong
        style = rng.randrange(3)
        final = (
            f"The answer is \\boxed{{{answer}}}."
            if style == 0
            else f"答え：{answer}"
            if style == 1
            else f"So we get ${answer}$."
        )
        samples.append((f"<think>\n{thinking}\n</think>\n\n{final}", label))
    return samples


def serial(samples: list[tuple[str, str]], timeout_s: float) -> tuple[list[float], float]:
    start = time.perf_counter()
    scores = [check_response(r, g, timeout_s) for r, g in samples]
    return scores, time.perf_counter() - start


def pooled(
    samples: list[tuple[str, str]], workers: int, timeout_s: float
) -> tuple[list[float], float]:
    with PooledVerifier(workers=workers, timeout_s=timeout_s) as verifier:
        verifier.warm_up()  # process start-up is paid once per job, not per rollout
        start = time.perf_counter()
        scores = asyncio.run(verifier.score_many(samples))
        return scores, time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--think-chars", type=int, default=4000)
    p.add_argument("--timeout-s", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    samples = make_samples(args.samples, args.think_chars, args.seed)
    check_response(*samples[0], args.timeout_s)  # import math-verify before timing
    base, t_serial = serial(samples, args.timeout_s)
    pool, t_pool = pooled(samples, args.workers, args.timeout_s)
    if base != pool:
        diff = sum(a != b for a, b in zip(base, pool, strict=True))
        print(f"error: the pooled rewards differ from the serial ones on {diff} samples")
        return 1
    n = len(samples)
    print(
        f"reward throughput, {n} responses ({args.think_chars} thinking chars each, "
        f"{sum(base) / n:.0%} correct), {os.cpu_count()} CPU cores"
    )
    print(f"  serial math-verify    : {n / t_serial:8.1f} samples/s ({t_serial:.2f} s)")
    print(f"  pooled, {args.workers} workers    : {n / t_pool:8.1f} samples/s ({t_pool:.2f} s)")
    print(f"  ratio pooled / serial : {t_serial / t_pool:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
