"""Build the next steps' micro-batches in a background thread while the current step trains.

    batches = Prefetcher(data.train_microbatches, start=state.step, stop=total_steps)
    microbatches = batches.get(state.step)   # step s's batches, as build(s) returns them
    batches.close()

A bounded queue (depth 2) holds the batches of the next steps, built in order by one worker
thread. Batches depend only on the step (`build(s)` is a pure function of `s`), so they are
exactly those of the synchronous path; asking for another step than the next restarts the
worker there. With CUDA the worker runs on its own stream, host tensors are pinned and copied
with `non_blocking=True`, and the consumer's stream waits for that copy before using them.
An exception in the worker is raised again in the main thread by `get` (same type and message).

    python bench/bench_prefetch.py     # step time with a slow source, prefetching vs synchronous
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import torch

DEPTH = 2
_POLL_S = 0.05


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def to_device(batch: Any, device: torch.device | None) -> Any:
    """Host tensors (nested in dicts/lists, or attributes of dataclass-like objects left as they
    are) pinned and copied to `device` without blocking; None: unchanged."""
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        if batch.device.type == "cpu":
            return batch.pin_memory().to(device, non_blocking=True)
        return batch
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list):
        return [to_device(v, device) for v in batch]
    return batch


def _record(batch: Any, stream: torch.cuda.Stream) -> None:
    """Tell the caching allocator that `stream` uses the worker-built tensors."""
    if isinstance(batch, torch.Tensor):
        if batch.is_cuda:
            batch.record_stream(stream)
    elif isinstance(batch, dict):
        for value in batch.values():
            _record(value, stream)
    elif isinstance(batch, list):
        for value in batch:
            _record(value, stream)


class Prefetcher:
    """`get(s)` returns `build(s)` for s in [start, stop), built up to `depth` steps ahead."""

    def __init__(self, build: Callable[[int], Any], *, start: int, stop: int,
                 depth: int = DEPTH) -> None:
        self.build, self.stop_step, self.depth = build, stop, depth
        cuda = torch.cuda.is_available()
        self.device = torch.device("cuda", torch.cuda.current_device()) if cuda else None
        self.stream = torch.cuda.Stream() if cuda else None
        self._thread: threading.Thread | None = None
        self._start(start)

    def _start(self, step: int) -> None:
        self.next_step = step
        self._queue: queue.Queue = queue.Queue(maxsize=self.depth)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(step, self._queue, self._halt),
                                        name="swallow-prefetch", daemon=True)
        self._thread.start()

    def _put(self, q: queue.Queue, halt: threading.Event, item: Any) -> bool:
        while not halt.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, step: int, q: queue.Queue, halt: threading.Event) -> None:
        if self.device is not None:
            torch.cuda.set_device(self.device)
        for s in range(step, self.stop_step):
            try:
                if self.stream is not None:
                    with torch.cuda.stream(self.stream):
                        batch = to_device(self.build(s), self.device)
                        event = torch.cuda.Event()
                        event.record(self.stream)
                else:
                    batch, event = self.build(s), None
                item: Any = (s, batch, event)
            except BaseException as exc:  # handed to the main thread by get()
                self._put(q, halt, _Failure(exc))
                return
            if not self._put(q, halt, item):
                return

    def get(self, step: int) -> Any:
        """The batches of `step`; re-raises the worker's exception if building them failed."""
        if step != self.next_step:
            self.close()
            self._start(step)
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if self._thread is not None and not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError(f"prefetch worker stopped before step {step}") from None
        if isinstance(item, _Failure):
            self.close()
            raise item.exc
        built_step, batch, event = item
        assert built_step == step, (built_step, step)
        if event is not None:
            current = torch.cuda.current_stream()
            current.wait_event(event)
            _record(batch, current)
        self.next_step = step + 1
        return batch

    def close(self) -> None:
        """Stop the worker (it finishes the batch it is building) and drop what it built."""
        if self._thread is None:
            return
        self._halt.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
