"""The RL job script with slime: Ray head + one worker per other node, the submit, the HF export
and DONE on success; on the walltime warning the slime job is stopped and the stage requeued.
Run with bash against fake `ray`, `mpirun` and `python` (slime and Ray are not installed here)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from swallow_train.launch import cli
from tests.launch.fakes import RECORD, calls, env_with, fake_bin, run_bash

# `ray`: start --block waits for `ray stop`; a job runs until `ray job stop` (FAKE_MODE=wait)
# or succeeds at once (done).
RAY = r'''
R=$FAKE_RECORD
case "$1 $2" in
  "start --head"|start\ --address*)
    for _ in $(seq 2400); do [ -f "$R/ray_stopped" ] && break; sleep 0.05; done ;;
  "stop "*) touch "$R/ray_stopped" ;;
  "job submit")
    touch "$R/started"
    if [ "${FAKE_MODE:-done}" = wait ]; then
      for _ in $(seq 2400); do [ -f "$R/job_stopped" ] && break; sleep 0.05; done
    fi ;;
  "job status")
    if [ -f "$R/job_stopped" ]; then echo "Status: STOPPED"; else echo "Status: SUCCEEDED"; fi ;;
  "job stop") touch "$R/job_stopped" ;;
esac
'''
# `mpirun`: run the command after the options (one "node": this machine).
MPIRUN = r'''
while [ $# -gt 0 ] && [ "$1" != ray ]; do shift; done
exec "$@"
'''
PYTHON = "exit 0\n"


def _fake(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + RECORD + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def rl_env(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / ".venv/bin").mkdir(parents=True)
    (work / ".venv/bin/activate").write_text("")
    (work / "runs/r/sft").mkdir(parents=True)
    (work / "runs/r/sft/DONE").write_text("")
    (work / "third_party/slime").mkdir(parents=True)  # the abci3 preset's slime and Megatron-LM
    (work / "third_party/slime/train.py").write_text("")
    (work / "third_party/Megatron-LM/megatron").mkdir(parents=True)
    monkeypatch.chdir(work)
    bin_dir = fake_bin(tmp_path, launchers=())
    for name, body in (("ray", RAY), ("mpirun", MPIRUN), ("python", PYTHON)):
        _fake(bin_dir / name, body)
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("localhost\n" * 8 + "127.0.0.1\n" * 8)

    def env(**extra):
        return env_with(bin_dir, PBS_O_WORKDIR=str(work), PBS_JOBID="555.pbs1",
                        PBS_NODEFILE=str(nodefile), **extra)
    return work, env


def _render(*extra: str) -> Path:
    args = ["stage=rl", "cluster=abci3", "nodes=2", "group=g", "model=qwen3_8b", "run.name=r"]
    assert cli.main([*args, *extra]) == 0
    return Path("runs/r/rl/job.pbs.sh").resolve()


def _run(script, env):
    return run_bash(script, env)


def test_rl_job_starts_ray_everywhere_submits_exports_and_finishes(tmp_path, rl_env):
    work, env = rl_env
    code, out = _run(_render(), env())
    assert code == 0, out
    assert (work / "runs/r/rl/DONE").exists()
    ray = calls(tmp_path, "ray")
    head = next(c for c in ray if c[:2] == ["start", "--head"])
    assert head[2:4] == ["--node-ip-address", "127.0.0.1"] and "--block" in head
    worker = next(c for c in ray if c[:2] == ["start", "--address"])
    assert worker[2:5] == ["127.0.0.1:6379", "--num-gpus", "8"]
    (mpirun,) = [c for c in calls(tmp_path, "mpirun") if "start" in c]
    assert mpirun[:4] == ["-np", "1", "--hostfile", mpirun[3]]
    submit = next(c for c in ray if c[:2] == ["job", "submit"])
    assert submit[2:4] == ["--submission-id", "swallow-r-rl-555.pbs1"]
    assert submit[submit.index("--") + 1:][:3] == [
        "python3", f"{work}/third_party/slime/train.py", "--actor-num-nodes"]
    runtime = json.loads(next(a for a in submit if a.startswith("--runtime-env-json="))
                         .partition("=")[2])
    assert runtime["env_vars"]["PYTHONPATH"] == f"{work}/third_party/Megatron-LM:{work}"
    assert f"{work}/runs/r/rl/slime" in submit  # ${PWD} expanded in the submit directory
    python = calls(tmp_path, "python")
    assert python[0][:3] == ["-m", "swallow_train", "rl"]
    assert python[1] == ["-m", "swallow_train.launch.ray_wait", "--address", "127.0.0.1:6379",
                         "--nodes", "2", "--gpus", "16", "--timeout", "600"]
    assert python[2][:3] == ["-m", "swallow_train", "export"]
    assert ["stop"] in ray  # Ray stopped on the nodes the job started it on


def test_rl_walltime_stops_the_slime_job_and_requeues(tmp_path, rl_env):
    work, env = rl_env
    script = _render("walltime=00:00:02", "cluster.save_margin=1")
    code, out = _run(script, env(FAKE_MODE="wait"))
    assert code == 0, out
    assert not (work / "runs/r/rl/DONE").exists()
    assert ["job", "stop", "--address", "http://127.0.0.1:8265", "--no-wait",
            "swallow-r-rl-555.pbs1"] in calls(tmp_path, "ray")
    assert not any(c[:3] == ["-m", "swallow_train", "export"] for c in calls(tmp_path, "python"))
    assert calls(tmp_path, "qsub") == [["runs/r/rl/job.pbs.sh"]]
    assert (work / "runs/r/rl/requeues").read_text() == "555.pbs1 none\n"


@pytest.mark.parametrize(("missing", "field"), [
    ("third_party/slime/train.py", "cluster.slime_train_script"),
    ("third_party/Megatron-LM/megatron", "cluster.megatron_path"),
])
def test_rl_job_checks_slime_and_megatron_before_ray_start(tmp_path, rl_env, missing, field):
    import shutil

    work, env = rl_env
    script = _render()
    target = work / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    code, out = _run(script, env())
    assert code == 1
    assert f"{missing.removesuffix('/megatron')}" in out and f"set {field}=<" in out
    assert calls(tmp_path, "ray") == []  # nothing was started
