"""The default tiny pipeline, run once per test session for the tests that read what it leaves
(tests/stages/test_pipeline_release.py, test_tiny_pipeline_goals.py): exactly the README's
`make pipeline` command (all four stages, an eval after each), on both cores, timed.

    python -m pytest tests/stages -q -m slow
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.distributed import cli_env


@dataclass(frozen=True)
class PipelineRun:
    run: Path
    """`runs/<name>` of the pipeline."""
    args: list[str]
    """The `python -m swallow_train` arguments it ran with."""
    output: str
    wall_s: float


def run_pipeline(args: list[str]) -> tuple[str, float]:
    """`swallow-train <args>` on every core; its output and wall time (fails on a non-zero
    exit, with the output's tail)."""
    env = cli_env()
    env["OMP_NUM_THREADS"] = str(os.cpu_count() or 1)  # cli_env gives children one thread
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "swallow_train", *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=3600)
    wall = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout, wall


RUNS_ENV = "SWALLOW_TEST_RUNS"
"""Where the run is kept for the vLLM suite (`make test` sets it; emptied first, so a run of
older code is never skipped into); unset: a pytest temporary directory."""


@pytest.fixture(scope="session")
def default_pipeline(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    kept = os.environ.get(RUNS_ENV)
    if kept:
        root = Path(kept).resolve()
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
    else:
        root = tmp_path_factory.mktemp("default_pipeline")
    args = ["pipeline", f"root={root / 'runs'}", "name=tiny", "logging.wandb_mode=disabled",
            "logging.progress_bar=false", f"data.prepared_dir={root / 'prepared'}"]
    output, wall = run_pipeline(args)
    return PipelineRun(run=root / "runs" / "tiny", args=args, output=output, wall_s=wall)
