"""Tokenization throughput of `swallow-train prepare` against a plain single-process
`tokenizer(text)` loop over the same documents, in the same run, as tokens/s per core.

    .venv/bin/python bench/bench_prepare.py                    # ~3.2M tokens, ja + en prose
    .venv/bin/python bench/bench_prepare.py --docs 8000 --workers 8 --repeat 1

The corpus is the project's synthetic Japanese and English prose (documents of ~1,300 tokens),
written to a JSONL file in a temporary directory. `prepare` runs end to end: reading the JSONL,
checking every record, tokenizing in worker processes (spawned, each loading the tokenizer),
appending EOD and writing megatron .bin/.idx shards; the tokens it writes must equal the
baseline's.

Two measures of tokens/s/core, each the best of `--repeat` interleaved runs:
* CPU: tokens per CPU-second of every process involved (this one and the workers, from
  getrusage). It does not depend on what else runs on the machine, so it is the headline ratio.
* wall: tokens per wall-clock second divided by the worker processes (1 for the baseline); on a
  shared or oversubscribed machine this is lower and noisier.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from swallow_train.data.manifest import load_manifest
from swallow_train.data.prepare import prepare
from swallow_train.data.synthetic import en_text, ja_text
from swallow_train.tokenizer import eod_id, load_tokenizer

TOKENIZER = "bundled:qwen3"


def write_corpus(path: Path, docs: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for i in range(docs):
        make = ja_text if i % 2 == 0 else en_text
        texts.append("\n\n".join(make(rng)["text"] for _ in range(8)))
    lines = [json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts]
    path.write_text("".join(lines), encoding="utf-8")
    return texts


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the worker processes)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(run: Callable[[], int]) -> tuple[int, float, float]:
    """(tokens, wall seconds, CPU seconds) of one run."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    tokens = run()
    return tokens, time.perf_counter() - wall, cpu_seconds() - cpu


def baseline(texts: list[str]) -> int:
    tok = load_tokenizer(TOKENIZER)
    eod = eod_id(tok)
    tokens = 0
    for text in texts:
        ids = tok(text)["input_ids"] + [eod]
        tokens += len(ids)
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2400)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best one counts")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        texts = write_corpus(root / "corpus.jsonl", args.docs, args.seed)
        manifest = root / "bench.yaml"
        manifest.write_text(
            "name: bench\nstage: cpt\ncorpora:\n  - name: prose\n    language: ja-en\n"
            "    source: {path: corpus.jsonl}\n    budget: 1000\n"
        )
        load_tokenizer(TOKENIZER)  # loaded (and megatron imported) once, outside the timings
        from swallow_train.mcore.indexed import ShardWriter

        def run_prepare(rep: int, w: int) -> int:
            result = prepare(
                load_manifest(manifest),
                root / f"run{rep}-w{w}",
                TOKENIZER,
                writer=ShardWriter,
                workers=w,
                progress=False,
                in_process_below=0,
            )
            assert result.workers == w
            return result.tokens_written

        kinds = {"baseline: tokenizer(text) loop, 1 process": (1, lambda rep: baseline(texts))}
        for w in sorted({1, args.workers}):
            kinds[f"prepare, {w} worker process(es)"] = (w, lambda rep, w=w: run_prepare(rep, w))
        best: dict[str, tuple[float, float]] = {}
        expected = None
        for rep in range(args.repeat):  # interleaved, so a busy machine hurts all alike
            for name, (procs, run) in kinds.items():
                tokens, wall, cpu = measure(lambda run=run, rep=rep: run(rep))
                expected = expected or tokens
                assert tokens == expected, (name, tokens, expected)
                old = best.get(name, (0.0, 0.0))
                best[name] = (max(old[0], tokens / cpu), max(old[1], tokens / wall / procs))
        base_cpu, base_wall = best[next(iter(kinds))]
        print(
            f"{args.docs:,} documents, {expected:,} tokens (EOD included); best of "
            f"{args.repeat} interleaved runs; {os.cpu_count()} cores; tokens/s/core by CPU "
            "time (ratio) and by wall clock (ratio)"
        )
        for name, (cpu_rate, wall_rate) in best.items():
            print(
                f"{name:<44}{cpu_rate:>11,.0f}  x{cpu_rate / base_cpu:.2f}   "
                f"{wall_rate:>11,.0f}  x{wall_rate / base_wall:.2f}"
            )


if __name__ == "__main__":
    main()
