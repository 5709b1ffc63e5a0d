"""The rendered cluster scripts, run here with bash against fake scheduler and launcher commands:
rendezvous, the launch line, DONE/skip guards, and the walltime path (warning signal or the job's
own timer -> the trainer checkpoints -> requeue, or stop when no progress was made)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from swallow_train.launch import cli
from tests.launch.fakes import calls, env_with, fake_bin, finish, run_bash, start_bash, wait_for


@pytest.fixture
def work(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / ".venv/bin").mkdir(parents=True)
    (work / ".venv/bin/activate").write_text("export FAKE_VENV=1\n")
    monkeypatch.chdir(work)
    return work


def _render(*args: str) -> Path:
    assert cli.main([*args, "run.name=r"]) == 0
    return next(Path("runs/r").glob(f"{args[0].split('=')[1]}/job.*.sh")).resolve()


def _pbs_env(tmp: Path, work: Path, hosts: list[str], **extra: str) -> dict[str, str]:
    nodefile = tmp / "nodefile"
    nodefile.write_text("".join(f"{h}\n" * 8 for h in hosts))
    return env_with(fake_bin(tmp), PBS_O_WORKDIR=str(work), PBS_JOBID="555.pbs1",
                    PBS_NODEFILE=str(nodefile), FAKE_STAGE_DIR=str(work / "runs/r/cpt"), **extra)


def _run(script: Path, env: dict[str, str], cwd: str | None = None) -> tuple[int, str]:
    return run_bash(script, env, cwd)


ABCI = ("stage=cpt", "cluster=abci3", "nodes=2", "group=g", "model=qwen3_8b")


def test_pbs_script_builds_the_host_file_and_runs_mpirun(tmp_path, work):
    script = _render(*ABCI)
    code, out = _run(script, _pbs_env(tmp_path, work, ["node1", "node2"]), cwd="/")
    assert code == 0, out
    assert "cpt: finished (runs/r/cpt/DONE)" in out
    (mpirun,) = calls(tmp_path, "mpirun")
    assert mpirun[:8] == ["-np", "16", "--hostfile", mpirun[3], "--map-by", "ppr:8:node",
                          "--bind-to", "none"]
    assert mpirun[mpirun.index("python"):] == [
        "python", "-m", "swallow_train", "cpt", "cluster=abci3", "cluster.nodes=2",
        "cluster.group=g", "model=qwen3_8b", "run.name=r"]
    record = tmp_path / "record"
    assert (record / "hostfile").read_text() == "node1 slots=8\nnode2 slots=8\n"
    env = dict(line.split("=", 1) for line in (record / "env").read_text().splitlines())
    assert env["MASTER_ADDR"] == "node1" and int(env["MASTER_PORT"]) > 0
    assert env["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
    assert calls(tmp_path, "module") == [["load", "cuda/12.9/12.9.1", "cudnn/9.10/9.10.2",
                                          "nccl/2.27/2.27.5-1", "hpcx/2.20"]]
    # a finished stage is skipped without launching anything
    code, out = _run(script, _pbs_env(tmp_path, work, ["node1", "node2"]))
    assert code == 0 and "the stage is finished; nothing to do" in out
    assert len(calls(tmp_path, "mpirun")) == 1


def test_pbs_walltime_timer_checkpoints_and_continues_in_a_new_job(tmp_path, work):
    script = _render(*ABCI, "walltime=00:00:02", "cluster.save_margin=1")
    (work / "runs/r/cpt/dependents").write_text("777.pbs1\n")
    env = _pbs_env(tmp_path, work, ["node1", "node2"], FAKE_MODE="wait", FAKE_ITER="40")
    code, out = _run(script, env)
    assert code == 0, out
    assert (tmp_path / "record/signals").read_text() == "USR1\n"  # mpirun relays USR1
    assert "stop requested (timer)" in out
    assert calls(tmp_path, "qsub") == [["runs/r/cpt/job.pbs.sh"]]  # from $PBS_O_WORKDIR
    assert calls(tmp_path, "qalter") == [["-W", "depend=afterok:101.pbs1", "777.pbs1"]]
    assert (work / "runs/r/cpt/requeues").read_text() == "555.pbs1 40\n"
    # the continuation stops again without a newer checkpoint: no endless requeue
    code, out = _run(script, env)
    assert code == 1, out
    assert "no new checkpoint since the last requeue (iteration 40)" in out
    assert len(calls(tmp_path, "qsub")) == 1


def _start_and_signal(script, env, tmp, sig):
    proc = start_bash(script, env)
    wait_for(tmp / "record/started")
    proc.send_signal(sig)
    return finish(proc)


def test_pbs_cancel_checkpoints_but_does_not_requeue(tmp_path, work):
    script = _render(*ABCI)
    env = _pbs_env(tmp_path, work, ["node1", "node2"], FAKE_MODE="wait")
    code, out = _start_and_signal(script, env, tmp_path, signal.SIGTERM)  # qdel
    assert code == 1, out
    assert (tmp_path / "record/signals").read_text() == "USR1\n"
    assert "stopped by SIGTERM; run the script again to resume" in out
    assert calls(tmp_path, "qsub") == []


def test_grid_engine_notify_signal_requeues_with_exit_99(tmp_path, work):
    script = _render("stage=cpt", "cluster=tsubame4", "nodes=2", "group=g", "model=qwen3_8b",
                     "train.global_batch_size=64", "parallel.cp=2")  # fits an H100 94 GB
    hostfile = tmp_path / "pe_hostfile"
    hostfile.write_text("r1n1 4 node.q@r1n1 UNDEFINED\nr1n2 4 node.q@r1n2 UNDEFINED\n")
    env = env_with(fake_bin(tmp_path), JOB_ID="4242", PE_HOSTFILE=str(hostfile),
                   FAKE_STAGE_DIR=str(work / "runs/r/cpt"), FAKE_MODE="wait")
    code, out = _start_and_signal(script, env, tmp_path, signal.SIGUSR2)  # -notify, pre-kill
    assert code == 99, out
    assert "requeueing job 4242 (exit 99)" in out
    assert (tmp_path / "record/hostfile").read_text() == "r1n1 slots=4\nr1n2 slots=4\n"
    assert calls(tmp_path, "mpirun")[0][:2] == ["-np", "8"]


def test_slurm_signal_reaches_torchrun_through_scancel_and_requeues(tmp_path, work):
    script = _render("stage=cpt", "cluster=slurm", "nodes=2", "model=qwen3_8b")
    env = env_with(fake_bin(tmp_path), SLURM_SUBMIT_DIR=str(work), SLURM_JOB_ID="999",
                   SLURM_JOB_NODELIST="gpu[1-2]", FAKE_NODES="gpu1 gpu2",
                   FAKE_STAGE_DIR=str(work / "runs/r/cpt"), FAKE_MODE="wait")
    code, out = _start_and_signal(script, env, tmp_path, signal.SIGUSR1)  # --signal=B:USR1
    assert code == 0, out
    assert (tmp_path / "record/signals").read_text() == "TERM\n"
    assert calls(tmp_path, "scancel") == [["--signal=TERM", "999.0"]]  # the torchrun step
    assert calls(tmp_path, "scontrol")[-1] == ["requeue", "999"]
    (srun,) = calls(tmp_path, "srun")
    assert srun[:6] == ["--nodes", "2", "--ntasks-per-node", "1", "--kill-on-bad-exit=1",
                        "torchrun"]
    assert srun[srun.index("--rdzv-endpoint") + 1].startswith("gpu1:")
    env_seen = (tmp_path / "record/env").read_text()
    assert "TORCH_ELASTIC_SHUTDOWN_TIMEOUT=900\n" in env_seen
    assert "PET_SIGNALS_TO_HANDLE=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1\n" in env_seen


@pytest.mark.parametrize(("case", "code", "needle"), [
    ("nodes", 1, "the job has 3 node(s) but was validated for 2"),
    ("fail", 3, "cpt failed (status 3) before it finished"),
    ("sft", 1, "sft starts from the cpt stage's export, but runs/r/cpt/DONE does not exist"),
])
def test_guards(tmp_path, work, case, code, needle):
    stage = "sft" if case == "sft" else "cpt"
    script = _render(f"stage={stage}", *ABCI[1:], "train.global_batch_size=64")
    hosts = ["a", "b", "c"] if case == "nodes" else ["a", "b"]
    status, out = _run(script, _pbs_env(tmp_path, work, hosts, FAKE_MODE=case))
    assert status == code, out
    assert needle in out
    if case != "fail":
        assert calls(tmp_path, "mpirun") == []
