"""Ordered, bounded parallel map over worker processes, for tokenization and chat rendering.

Results come back in input order (so output is deterministic whatever the number of workers),
at most `2 x workers` tasks are in flight (so a corpus of any size streams through in constant
memory), and an exception raised in a worker (e.g. a DataError naming file and line) is raised
in the caller. With `workers <= 1` everything runs in the calling process.

    for result in ordered_map(tokenize_batch, batches, workers=4, init=load, init_args=(spec,)):
        ...
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

SMALL_INPUT_BYTES = 8 << 20


def effective_workers(requested: int, files: list[Path] | None, below: int) -> int:
    """`requested`, or 1 when the whole input is local `files` of fewer than `below` bytes
    (`files` is None when a source is streamed from the hub): starting worker processes would
    take longer than the work."""
    if files is not None and sum(f.stat().st_size for f in files) < below:
        return 1
    return max(requested, 1)


def _init(init: Callable[..., None] | None, args: tuple[Any, ...]) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker process
    if init is not None:
        init(*args)


def ordered_map(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    workers: int,
    init: Callable[..., None] | None = None,
    init_args: tuple[Any, ...] = (),
    in_flight: int | None = None,
) -> Iterator[R]:
    """fn(task) for every task, in order. `fn` and `init` must be module-level functions."""
    if workers <= 1:
        if init is not None:
            init(*init_args)
        for task in tasks:
            yield fn(task)
        return
    limit = in_flight or 2 * workers
    ctx = mp.get_context("spawn")  # fork after the Rust tokenizer has run can deadlock
    with ctx.Pool(workers, initializer=_init, initargs=(init, init_args)) as pool:
        pending: deque[Any] = deque()
        for task in tasks:
            pending.append(pool.apply_async(fn, (task,)))
            if len(pending) >= limit:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
