"""Scorers for the verifier-pool tests; module level, so spawned workers can import them.

`SPIN` loops in Python (the soft SIGALRM budget stops it); `HANG` blocks SIGALRM and sleeps,
as a check stuck in C code would (only the parent's hard deadline stops it)."""

from __future__ import annotations

import signal
import time

from swallow_train.rl.verify import Label, score_response


def mixed(response: str, label: Label) -> float:
    if response == "SPIN":
        while True:
            pass
    if response == "HANG":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(120)
    return score_response(response, label)
