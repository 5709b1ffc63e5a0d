"""One run per directory: a pipeline or a stage takes an exclusive lock on its directory before it
writes anything, so a second run on the same directory stops at once instead of interleaving
checkpoints and metrics with the first.

    with RunLock(stage_dir / ".lock", what="cpt stage"):
        ...   # train, checkpoint, export

The lock is `flock(2)` on a file that holds the holder's `pid@host`: the kernel drops it when the
holder dies, even by SIGKILL, so a lock left by a dead process is recognised as stale and taken
over (the file stays; only a live holder blocks). `check_writable` probes a directory before any
expensive work, so a read-only run root fails in a second, not after the checkpoint has loaded.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from swallow_train.errors import SwallowError


class RunInUseError(SwallowError):
    """Another live process holds the directory's lock."""


class NotWritableError(SwallowError):
    """A directory a run must write to cannot be written."""


def check_writable(directory: Path, *, field: str) -> None:
    """Create `directory` if needed and write+remove a probe file in it; raise
    NotWritableError naming the directory, the recipe field that chose it and the fix."""
    directory = Path(directory)
    probe = directory / f".write-probe-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else (
            exc.strerror or str(exc))
        raise NotWritableError(
            f"{directory} is not writable ({reason}): a run writes its checkpoints, metrics and "
            f"export there. Fix the permissions or free space, or point {field} at a writable "
            "directory") from None


class RunLock:
    """Exclusive, non-blocking lock on `path` for the life of the `with` block."""

    def __init__(self, path: Path, *, what: str, fix: str = "wait for it to finish, or give "
                 "this run another run.name") -> None:
        self.path = Path(path)
        self.what = what
        self.fix = fix
        self.fh: IO[str] | None = None

    def __enter__(self) -> RunLock:
        check_writable(self.path.parent, field="run.root")
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                fh.close()
                raise
            fh.seek(0)
            holder = fh.read().strip() or "an unknown process"
            fh.close()
            raise RunInUseError(
                f"{self.path.parent} is in use by another {self.what} ({holder}, lock "
                f"{self.path.name}); two runs on one directory would corrupt each other's "
                f"checkpoints and metrics: {self.fix}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}@{socket.gethostname()}\n")
        fh.flush()
        self.fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None


@contextlib.contextmanager
def stage_lock(stage_dir: Path, stage: str) -> Iterator[None]:
    """Collective: global rank 0 checks that `stage_dir` is writable and locks it for the whole
    job; every rank raises the same error if it could not (the CLI prints it once, on rank 0)."""
    from swallow_train import collectives

    lock = RunLock(Path(stage_dir) / ".lock", what=f"{stage} run")
    with contextlib.ExitStack() as stack:
        error: SwallowError | None = None
        if collectives.rank() == 0:
            try:
                stack.enter_context(lock)
            except SwallowError as exc:
                error = exc
        message = collectives.broadcast_object(None if error is None else str(error))
        if message is not None:
            raise error if error is not None else RunInUseError(message)
        yield
