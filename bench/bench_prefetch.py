"""Step time with a deliberately slow batch source: the background prefetcher
(`swallow_train/mcore/prefetch.py`) against building each step's batches synchronously, in the
same run, as a ratio.

The source waits `--source-ms` per step (reading a shard from a slow filesystem) and then
collates real tensors (numpy -> torch); the "training step" is `--step-ms` of matmuls. The
synchronous loop pays both; the prefetching loop pays the larger (ideal ratio
(source + step) / max(source, step)). Both loops check that they trained on identical batches.

    .venv/bin/python bench/bench_prefetch.py
    .venv/bin/python bench/bench_prefetch.py --source-ms 80 --step-ms 40 --steps 30
"""

from __future__ import annotations

import argparse
import time
import zlib

import numpy as np
import torch

from swallow_train.mcore.prefetch import Prefetcher


def make_source(source_ms: float, seq: int, micro: int):
    def build(step: int) -> list[dict[str, torch.Tensor]]:
        time.sleep(source_ms / 1000)
        rng = np.random.default_rng(step)
        return [{"tokens": torch.from_numpy(rng.integers(0, 151936, (1, seq))),
                 "loss_mask": torch.from_numpy(rng.random((1, seq), dtype=np.float32))}
                for _ in range(micro)]
    return build


def make_step(step_ms: float):
    a = torch.randn(256, 256)
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < 0.2:
        a @ a
        n += 1
    per = 0.2 / n
    reps = max(1, round(step_ms / 1000 / per))

    def step(batches) -> int:
        for _ in range(reps):
            a @ a
        crc = 0
        for b in batches:
            crc = zlib.crc32(b["tokens"].numpy().tobytes(), crc)
        return crc
    return step


def run(loop: str, build, step, steps: int) -> tuple[float, list[int]]:
    crcs = []
    start = time.perf_counter()
    if loop == "sync":
        for s in range(steps):
            crcs.append(step(build(s)))
    else:
        with Prefetcher(build, start=0, stop=steps) as batches:
            for s in range(steps):
                crcs.append(step(batches.get(s)))
    return (time.perf_counter() - start) / steps, crcs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-ms", type=float, default=60.0)
    parser.add_argument("--step-ms", type=float, default=60.0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seq", type=int, default=32768)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    build, step = make_source(args.source_ms, args.seq, args.micro), make_step(args.step_ms)
    times: dict[str, list[float]] = {"sync": [], "prefetch": []}
    reference = None
    for _ in range(args.repeat):  # interleaved, best of `repeat`
        for loop in ("sync", "prefetch"):
            seconds, crcs = run(loop, build, step, args.steps)
            assert reference is None or crcs == reference, "batches differ between the loops"
            reference = crcs
            times[loop].append(seconds)
    sync, pre = min(times["sync"]), min(times["prefetch"])
    ideal = (args.source_ms + args.step_ms) / max(args.source_ms, args.step_ms)
    print(f"source {args.source_ms:g} ms + step {args.step_ms:g} ms per step, {args.steps} steps, "
          f"{args.micro} x {args.seq:,} tokens per step; best of {args.repeat}; identical batches")
    print(f"synchronous (baseline)   {sync * 1000:8.1f} ms/step")
    print(f"prefetch (depth 2)       {pre * 1000:8.1f} ms/step")
    print(f"ratio synchronous / prefetch: x{sync / pre:.2f} (ideal x{ideal:.2f})")


if __name__ == "__main__":
    main()
