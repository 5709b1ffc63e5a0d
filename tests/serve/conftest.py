"""Fixtures of the vLLM suite, which runs in `.venv-serve` (`make test-serve`): a tiny pipeline
run by the training venv's python, and free loopback ports.

    make test                  # the main suite, then this one on the run the main suite left
    make test-serve            # this suite alone (on that run when it is there)
    SWALLOW_SERVE_RUN=runs/tiny .venv-serve/bin/python -m pytest tests/serve   # a finished run
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGES = ("cpt", "sft", "rl", "quantize")


def training_python() -> Path:
    """The training venv's python (`SWALLOW_TRAIN_PYTHON`, else the repository's .venv)."""
    path = Path(os.environ.get("SWALLOW_TRAIN_PYTHON", REPO / ".venv" / "bin" / "python"))
    if not path.is_file():
        pytest.fail(f"{path} does not exist: run `make install` (the tiny pipeline runs in it)")
    return path.absolute()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished default tiny pipeline run (CPT, SFT, RL and quantize exports): the one at
    SWALLOW_SERVE_RUN when it finished, else one run now (~9 minutes on 2 cores)."""
    given = os.environ.get("SWALLOW_SERVE_RUN")
    if given and finished(Path(given)):
        return Path(given).resolve()
    root = tmp_path_factory.mktemp("serve_pipeline")
    every = ["logging.wandb_mode=disabled", "logging.progress_bar=false",
             f"data.prepared_dir={root / 'prepared'}"]
    cmd = [str(training_python()), "-m", "swallow_train", "pipeline", f"root={root}",
           "name=tiny", *every]
    env = {**os.environ, "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert finished(root / "tiny")
    return root / "tiny"


def finished(run: Path) -> bool:
    """Whether `run` is a finished pipeline run with every stage this suite serves."""
    return all((run / stage / "DONE").is_file() for stage in STAGES)


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
