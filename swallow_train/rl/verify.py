"""Check a response against a label with `math-verify`, in worker processes with hard timeouts.

`check_response` is the whole check (extract, normalise, parse, verify) for one response. It
runs math-verify with its own timeouts off and one SIGALRM budget around everything instead, so
it must run in a process's main thread: `PooledVerifier` runs it in a spawned
`ProcessPoolExecutor` and awaits it with a hard deadline. A check that outlives the deadline
(stuck in C code, where no signal handler runs) scores 0: the pool is replaced and its workers
killed, and the checks that were running beside it are retried once on the new pool. The event
loop never waits on anything but futures.

    verifier = PooledVerifier(workers=4, timeout_s=10.0)
    scores = await verifier.score_many([(response, label), ...])
    verifier.close()
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from swallow_train.rl.answer import extract_answer, normalize_answer

log = logging.getLogger(__name__)
# math-verify warns (once per process) that its own timeouts are off: they are, on purpose.
logging.getLogger("math_verify").setLevel(logging.ERROR)
Label = str | int | float | Sequence[str]


class CheckTimeout(BaseException):
    """Raised by SIGALRM when a check uses up its soft time budget (a BaseException, so that
    math-verify's own `except Exception` does not turn it into "no answer")."""


def _parse(text: str) -> list[Any]:
    from math_verify import parse

    if "$" in text or "\\boxed" in text:
        return parse(text, parsing_timeout=None)  # type: ignore[arg-type]
    return parse(f"${text}$", parsing_timeout=None) or parse(text, parsing_timeout=None)  # type: ignore[arg-type]


def answers_match(answer: str, label: str) -> bool:
    """Whether a normalised answer equals a label: string equality, else math-verify."""
    from math_verify import verify

    pred, gold = normalize_answer(answer), normalize_answer(label)
    if not pred or not gold:
        return False
    if pred == gold:
        return True
    parsed_gold, parsed_pred = _parse(gold), _parse(pred)
    if not parsed_gold or not parsed_pred:
        return False
    return bool(verify(parsed_gold, parsed_pred, timeout_seconds=None))  # type: ignore[arg-type]


LABEL_PARSE_BUDGET_S = 5.0


def _reads_as_prose(text: str, expr: Any) -> bool:
    """Whether math-verify read words as a product of single letters ("see the solution" ->
    E**4*h*l*n*...): a run of 3+ letters outside LaTeX commands, parsed to 3+ letter factors."""
    import sympy

    if not re.search(r"[A-Za-z]{3,}", re.sub(r"\\[A-Za-z]+", " ", text)):
        return False
    if not isinstance(expr, sympy.Mul):
        return False
    letters = 0
    for factor in expr.args:
        base, exponent = factor.as_base_exp()
        single = isinstance(base, sympy.Symbol) and len(base.name) == 1
        if (single or base is sympy.E) and exponent.is_Integer and exponent > 0:
            letters += int(exponent)
    return letters >= 3


def label_problem(label: str) -> str | None:
    """Why `label` cannot serve as a reference answer (math-verify cannot parse it, or reads it
    as prose), or None. Under a SIGALRM budget when run in the main thread."""
    text = normalize_answer(label)
    if not text:
        return "nothing left after normalisation"
    _parse("1")  # math-verify's lazy imports (seconds on a loaded machine) are not the label's
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGALRM, _on_alarm) if main else None
    if main:
        signal.setitimer(signal.ITIMER_REAL, LABEL_PARSE_BUDGET_S)
    try:
        parsed = [p for p in _parse(text) if not isinstance(p, str)]
    except CheckTimeout:
        return f"math-verify did not parse it within {LABEL_PARSE_BUDGET_S:g} s"
    finally:
        if main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    if not parsed:
        return "math-verify cannot parse it"
    if _reads_as_prose(text, parsed[0]):
        return f"it is prose, not an answer (math-verify reads it as {parsed[0]})"
    return None


def score_response(response: str, label: Label) -> float:
    """1.0 when the final answer of `response` matches `label` (or any label of a list)."""
    answer = extract_answer(response)
    if answer is None:
        return 0.0
    labels = [label] if isinstance(label, str | int | float) else list(label)
    return 1.0 if any(answers_match(answer, str(g)) for g in labels) else 0.0


def _on_alarm(signum: int, frame: Any) -> None:
    raise CheckTimeout


Scorer = Callable[[str, Label], float]


def check_response(response: str, label: Label, soft_timeout_s: float,
                   scorer: Scorer = score_response) -> float:
    """`scorer` (`score_response`) under a SIGALRM budget (main thread only); 0.0 when the
    budget runs out."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, soft_timeout_s)
    try:
        return scorer(response, label)
    except CheckTimeout:
        return 0.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _init_worker(parent_pid: int) -> None:
    """Die with the parent (a SIGKILLed stage leaves no worker behind), then import
    math-verify (and its sympy/antlr parsers) once per worker, quietly."""
    from swallow_train.signals import die_with_parent

    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import math_verify  # noqa: F401

    score_response("\\boxed{1}", "1")


class PooledVerifier:
    """Checks responses in `workers` spawned processes; every check has a hard deadline.

    At most `workers` checks are in flight, so a deadline times the check, not a queue; the
    workers are started (and math-verify imported) before the first deadline starts."""

    def __init__(self, workers: int = 2, timeout_s: float = 10.0,
                 scorer: Scorer = score_response) -> None:
        if workers < 1:
            raise ValueError(f"reward.workers={workers} must be >= 1")
        if timeout_s <= 0:
            raise ValueError(f"reward.timeout_s={timeout_s} must be > 0")
        self.workers = workers
        self.timeout_s = timeout_s
        self.scorer = scorer
        """A module-level function (the workers import it by name)."""
        self.soft_timeout_s = max(timeout_s * 0.8, timeout_s - 2.0)
        self.recycled = 0
        """How many times a hung check forced the pool to be replaced."""
        self._pool: ProcessPoolExecutor | None = None
        self._started: list[Future[Any]] = []
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(workers)

    def _executor(self) -> tuple[ProcessPoolExecutor, list[Future[Any]]]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(os.getpid(),),
            )
            # one short task per worker: each finishes once its worker has started
            self._started = [self._pool.submit(time.sleep, 0.1) for _ in range(self.workers)]
        return self._pool, self._started

    def warm_up(self) -> None:
        """Start the workers now (blocking), so that the first scores are not slowed by it."""
        for fut in self._executor()[1]:
            fut.result()

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots_loop is not loop:  # a semaphore belongs to one event loop
            self._slots_loop, self._slots = loop, asyncio.Semaphore(self.workers)
        return self._slots

    def _recycle(self, pool: ProcessPoolExecutor) -> None:
        """Replace `pool` (if still current) and kill its workers: one of them is stuck."""
        if self._pool is pool:
            self._pool = None
            self.recycled += 1
        _kill_pool(pool)

    async def score(self, response: str, label: Label) -> float:
        """The check's score, or 0.0 when it misses its hard deadline."""
        async with self._semaphore():
            for attempt in range(2):
                pool, started = self._executor()
                try:
                    await asyncio.gather(*(asyncio.wrap_future(f) for f in started))
                    fut = asyncio.get_running_loop().run_in_executor(
                        pool, check_response, response, label, self.soft_timeout_s, self.scorer)
                    return await asyncio.wait_for(fut, self.timeout_s)
                except TimeoutError:
                    log.warning("reward check exceeded %.1fs; scoring 0 and restarting the "
                                "verifier pool", self.timeout_s)
                    self._recycle(pool)
                    return 0.0
                except BrokenProcessPool:
                    # a check beside this one hung and its pool was killed: retry once
                    self._recycle(pool)
                    if attempt == 1:
                        return 0.0
        return 0.0

    async def score_many(self, items: Sequence[tuple[str, Label]]) -> list[float]:
        return list(await asyncio.gather(*(self.score(r, g) for r, g in items)))

    def close(self) -> None:
        """Stop the workers (idempotent); ones that do not stop at once are killed."""
        pool, self._pool = self._pool, None
        if pool is not None:
            _kill_pool(pool, grace_s=5.0)
            # and wait for the pool's manager thread: close() leaves no thread or queue behind
            pool.shutdown(wait=True)

    def __enter__(self) -> PooledVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill_pool(pool: ProcessPoolExecutor, grace_s: float = 0.0) -> None:
    # ProcessPoolExecutor (3.11) has no public way to stop one stuck worker; its process table
    # is the only handle on them. Ask politely first, then kill what is left.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace_s
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()  # a no-op if it exited meanwhile
            proc.join(5.0)  # reaped as soon as the kernel has killed it
