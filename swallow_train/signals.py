"""Stop requests from the scheduler: SIGTERM (PBS/Grid Engine/Slurm before the kill, qdel,
scancel) and SIGUSR1 (Slurm `--signal`, Grid Engine `-notify`). The loops poll `requested()`
once per step, checkpoint, and exit with 128 + signal number so that `afterok` dependencies do
not fire and the requeued job resumes.
"""

from __future__ import annotations

import ctypes
import os
import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux `PR_SET_PDEATHSIG`),
    so that a SIGKILLed stage leaves no child behind. With `parent_pid`, exit at once if that
    parent already died before the request was made. A no-op off Linux."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: children may outlive a SIGKILLed parent
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


class StopRequest:
    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum

    def install(self) -> StopRequest:
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def requested(self) -> int | None:
        """The signal number if any rank received a stop signal (collective when distributed)."""
        from swallow_train import collectives

        return collectives.max_int(self.received or 0) or None

    @staticmethod
    def exit_code(signum: int) -> int:
        return 128 + signum
