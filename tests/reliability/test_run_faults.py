"""Faults around a run: two runs on one stage directory, a stale lock, a read-only run root, a
job launched with the wrong number of processes. Each asserts the exit status, that the
message names the directory or field and the fix, and that nothing written before is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swallow_train.run_lock import NotWritableError, RunInUseError, RunLock, check_writable
from tests.distributed import cli_env, run_cli


def _cpt(root: Path, prepared: str, *extra: str) -> list[str]:
    return ["cpt", "model=tiny_dense", f"run.root={root}", f"data.prepared_dir={prepared}",
            "train.train_steps=2", "checkpoint.export_hf=false", "logging.progress_bar=false",
            *extra]


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_a_second_run_on_a_stage_directory_stops_at_once(tmp_path: Path,
                                                          tiny_prepared: str) -> None:
    stage_dir = tmp_path / "tiny_dense" / "cpt"
    stage_dir.mkdir(parents=True)
    (stage_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')
    before = _snapshot(stage_dir)
    with RunLock(stage_dir / ".lock", what="cpt run"):  # the first run, still alive
        proc = run_cli(_cpt(tmp_path, tiny_prepared), check=False, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert f"{stage_dir} is in use by another cpt run (pid {os.getpid()}@" in proc.stderr
    assert "run.name" in proc.stderr and "Traceback" not in proc.stderr
    assert _snapshot(stage_dir) == before


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / "run" / ".lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from swallow_train.run_lock import RunLock\n"
         f"with RunLock(Path({str(lock)!r}), what='cpt run'):\n"
         "    print('locked', flush=True)\n    time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunInUseError, match=rf"pid {holder.pid}@"):
            RunLock(lock, what="cpt run").__enter__()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunLock(lock, what="cpt run"):  # the kernel dropped the dead holder's flock
        assert lock.read_text().startswith(f"pid {os.getpid()}@")


def test_an_unwritable_run_root_fails_before_any_work(tmp_path: Path,
                                                      tiny_prepared: str) -> None:
    root = Path("/sys/swallow-train-test")  # read-only for everyone, root included
    with pytest.raises(NotWritableError, match=r"run\.root"):
        check_writable(root / "x", field="run.root")
    start = time.monotonic()
    proc = run_cli(_cpt(root, tiny_prepared), check=False, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert f"{root}/tiny_dense/cpt is not writable" in proc.stderr
    assert "point run.root at a writable directory" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - start < 120  # no model was built, no checkpoint loaded


@pytest.mark.dist
def test_a_world_size_mismatch_is_reported_once(tmp_path: Path, tiny_prepared: str) -> None:
    proc = run_cli(_cpt(tmp_path, tiny_prepared), nproc=2, check=False, timeout=300)
    assert proc.returncode != 0
    message = ("this job runs 2 processes but the layout was validated for 1 "
               "(cluster.nodes x cluster.gpus_per_node)")
    assert proc.stderr.count(message) == 1, proc.stderr
    assert "--nproc-per-node" in proc.stderr
    # torchrun reports the failed workers with a traceback of its own agent; none from ours
    assert "swallow_train/" not in proc.stderr, proc.stderr
    assert not (tmp_path / "tiny_dense" / "cpt" / "checkpoints").exists()
