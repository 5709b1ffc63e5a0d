"""End to end on CPU: the rendered `local` CPT script trains the tiny model with torchrun (2
processes, gloo), is stopped by a warning signal (as Slurm's --signal would send), checkpoints,
and the same script run again resumes from that checkpoint and finishes.

    .venv/bin/python -m pytest tests/launch/test_local_e2e.py -q
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from swallow_train.launch import cli
from tests.launch.fakes import finish, run_bash, start_bash

REPO = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.dist
@pytest.mark.slow
def test_local_script_trains_stops_on_signal_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the data manifests are repository paths
    args = ["stage=cpt", "cluster=local", "cluster.gpus_per_node=2", "model=tiny_dense",
            "train.train_steps=6", "checkpoint.save_interval=3", f"run.root={tmp_path}/runs",
            f"data.prepared_dir={tmp_path}/prepared", "logging.wandb_mode=disabled",
            "logging.progress_bar=false", "checkpoint.export_hf=false"]
    assert cli.main(args) == 0
    stage = tmp_path / "runs/tiny_dense/cpt"
    script = stage / "job.local.sh"
    env = {**os.environ, "PATH": f"{REPO / '.venv/bin'}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}

    first = start_bash(script, env)
    deadline = time.monotonic() + 240
    while not _lines(stage / "metrics.jsonl"):
        if first.poll() is not None or time.monotonic() > deadline:
            code, out = finish(first, timeout=1)
            raise AssertionError(f"no training step (status {code}):\n{out[-3000:]}")
        time.sleep(0.2)
    first.send_signal(signal.SIGUSR1)  # the scheduler's warning, before the walltime
    code, out = finish(first, timeout=240)
    assert code == 75, out[-3000:]  # stopped after a checkpoint, to be resumed
    assert "stop requested (USR1)" in out
    stopped_at = int((stage / "checkpoints/latest_checkpointed_iteration.txt").read_text())
    assert 1 <= stopped_at < 6
    assert not (stage / "DONE").exists()

    code, out = run_bash(script, env, timeout=300)
    assert code == 0, out[-3000:]
    assert f"cpt: resuming from iteration {stopped_at}" in out
    assert (stage / "DONE").exists()
    assert [m["step"] for m in _lines(stage / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    assert (stage / "checkpoints/latest_checkpointed_iteration.txt").read_text().strip() == "6"
    assert (stage / "requeues").read_text().split()[1] == str(stopped_at)
