"""Fixtures of the vLLM suite, which runs in `.venv-serve` (`make test-serve`): a tiny pipeline
run by the training venv's python, and free loopback ports.

    make test-serve                                   # builds .venv-serve once, then this suite
    SWALLOW_SERVE_RUN=runs/tiny make test-serve       # reuse a finished run instead
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHORT = ["stages=[cpt,sft,rl]", "evaluate=false",
         "cpt.train.train_steps=6", "cpt.checkpoint.save_interval=6",
         "sft.train.train_steps=4", "sft.checkpoint.save_interval=4",
         "rl.rollout.num_rollout=2", "rl.rollout.rollout_batch_size=2",
         "rl.rollout.n_samples_per_prompt=4", "rl.loss.global_batch_size=4",
         "rl.evaluation.interval=0"]


def training_python() -> Path:
    """The training venv's python (`SWALLOW_TRAIN_PYTHON`, else the repository's .venv)."""
    path = Path(os.environ.get("SWALLOW_TRAIN_PYTHON", REPO / ".venv" / "bin" / "python"))
    if not path.is_file():
        pytest.fail(f"{path} does not exist: run `make install` (the tiny pipeline runs in it)")
    return path.absolute()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny pipeline run directory (SWALLOW_SERVE_RUN, or a short one made now)."""
    given = os.environ.get("SWALLOW_SERVE_RUN")
    if given:
        return Path(given).resolve()
    root = tmp_path_factory.mktemp("serve_pipeline")
    every = ["logging.wandb_mode=disabled", "logging.progress_bar=false",
             f"data.prepared_dir={root / 'prepared'}"]
    cmd = [str(training_python()), "-m", "swallow_train", "pipeline", f"root={root}",
           "name=tiny", *every, *SHORT, "max_new_tokens=8"]
    env = {**os.environ, "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return root / "tiny"


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
