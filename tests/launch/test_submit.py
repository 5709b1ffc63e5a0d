"""Submission: qsub/sbatch (fakes on PATH) get the scripts, chained by afterok dependencies."""

from __future__ import annotations

import pytest

from swallow_train.cluster import LaunchError, Scheduler
from swallow_train.launch import cli
from swallow_train.launch.args import parse
from swallow_train.launch.cli import job_id
from swallow_train.launch.render import build_all
from tests.launch.fakes import calls, fake_bin


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    bin_dir = fake_bin(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "record"))
    return tmp_path


def _chain(root, cluster, *extra):
    # cpt and sft only: every size renders them; stage=rl is tested with the RL module
    return ["stage=cpt,sft", f"cluster={cluster}", "model=qwen3_8b", f"run.root={root}",
            "run.name=r", "submit=true", *extra]


def test_pbs_chain_afterok_and_dependents(fakes, capsys):
    root = fakes / "runs"
    assert cli.main(_chain(root, "abci3", "nodes=16", "sft.nodes=8", "group=g")) == 0
    out = capsys.readouterr().out
    cpt, sft = root / "r/cpt/job.pbs.sh", root / "r/sft/job.pbs.sh"
    assert calls(fakes, "qsub") == [[str(cpt)], ["-W", "depend=afterok:101.pbs1", str(sft)]]
    assert f"cpt: submitted job 101.pbs1 ({cpt})" in out
    assert f"sft: submitted job 102.pbs1 after 101.pbs1 ({sft})" in out
    assert out.rstrip().endswith("job ids: 101.pbs1 102.pbs1")
    # the PBS continuation of cpt moves this job onto itself
    assert (root / "r/cpt/dependents").read_text() == "102.pbs1\n"
    assert not (root / "r/sft/dependents").exists()


def test_sge_chain_hold_jid_and_group_on_the_command_line(fakes, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_QSUB_SUFFIX", "")
    root = fakes / "runs"
    assert cli.main(_chain(root, "tsubame4", "nodes=32", "sft.nodes=16", "group=tga-x",
                           "parallel.cp=2")) == 0  # the 8B layout that fits an H100 94 GB
    cpt, sft = root / "r/cpt/job.sge.sh", root / "r/sft/job.sge.sh"
    assert calls(fakes, "qsub") == [
        ["-terse", "-g", "tga-x", str(cpt)],
        ["-hold_jid", "101", "-terse", "-g", "tga-x", str(sft)],
    ]
    assert "job ids: 101 102" in capsys.readouterr().out


def test_slurm_chain_dependency_afterok(fakes, capsys):
    root = fakes / "runs"
    assert cli.main(_chain(root, "slurm", "nodes=16", "sft.nodes=8")) == 0
    cpt, sft = root / "r/cpt/job.slurm.sh", root / "r/sft/job.slurm.sh"
    assert calls(fakes, "sbatch") == [
        ["--parsable", str(cpt)],
        ["--dependency=afterok:201", "--kill-on-invalid-dep=yes", "--parsable", str(sft)],
    ]
    assert "job ids: 201 202" in capsys.readouterr().out


def test_a_finished_stage_is_not_submitted_again(fakes, capsys):
    root = fakes / "runs"
    (root / "r/cpt").mkdir(parents=True)
    (root / "r/cpt/DONE").write_text("25000\n")
    (root / "r/cpt/dependents").write_text("stale\n")
    assert cli.main(_chain(root, "slurm", "nodes=16", "sft.nodes=8")) == 0
    assert calls(fakes, "sbatch") == [["--parsable", str(root / "r/sft/job.slurm.sh")]]
    out = capsys.readouterr().out
    assert f"cpt: {root / 'r/cpt/DONE'} exists; not submitted" in out


def test_a_failing_submit_reports_what_was_submitted(fakes, capsys):
    (fakes / "fakebin" / "sbatch").write_text(
        '#!/bin/bash\nif [[ "$*" == *dependency* ]]; then echo "invalid account" >&2; exit 1; fi'
        '\necho 7\n')
    assert cli.main(_chain(fakes / "runs", "slurm", "nodes=16", "sft.nodes=8")) == 2
    err = capsys.readouterr().err
    assert "failed (status 1): invalid account" in err
    assert "already submitted: cpt 7" in err


@pytest.mark.parametrize(("scheduler", "out", "expected"), [
    (Scheduler.pbs, "12345.pbs1\n", "12345.pbs1"),
    (Scheduler.sge, "4242\n", "4242"),
    (Scheduler.slurm, "77;cluster-a\n", "77"),
    (Scheduler.slurm, "Submitted\n88\n", "88"),
])
def test_job_id_parsing(scheduler, out, expected):
    assert job_id(scheduler, out) == expected


def test_job_id_parsing_rejects_garbage():
    with pytest.raises(LaunchError, match="could not read a job id"):
        job_id(Scheduler.pbs, "qsub: Unknown queue\n")
    with pytest.raises(LaunchError, match="could not read a job id"):
        job_id(Scheduler.slurm, "")


def test_whole_chain_is_one_command_with_an_eval_after_each_stage(fakes, capsys):
    root = fakes / "runs"
    args = ["stage=chain", "cluster=abci3", "nodes=16", "sft.nodes=8", "rl.nodes=2", "group=g",
            "model=qwen3_8b", f"run.root={root}", "run.name=r", "submit=true"]
    assert cli.main(args) == 0
    stages = ("cpt", "sft", "rl", "quantize")
    scripts = [root / f"r/{s}/job.pbs.sh" for s in stages]
    evals = [root / f"r/{s}/eval/tiny/job.pbs.sh" for s in stages]
    assert calls(fakes, "qsub") == [
        [str(scripts[0])],
        ["-W", "depend=afterok:101.pbs1", str(scripts[1])],
        ["-W", "depend=afterok:102.pbs1", str(scripts[2])],
        ["-W", "depend=afterok:103.pbs1", str(scripts[3])],
        *[["-W", f"depend=afterok:10{i + 1}.pbs1", str(e)] for i, e in enumerate(evals)],
    ]  # each eval (105-108) waits for its stage only, so a failed eval holds up nothing
    assert (root / "r/cpt/dependents").read_text() == "102.pbs1\n105.pbs1\n"
    assert (root / "r/sft/dependents").read_text() == "103.pbs1\n106.pbs1\n"
    assert (root / "r/rl/dependents").read_text() == "104.pbs1\n107.pbs1\n"
    assert (root / "r/quantize/dependents").read_text() == "108.pbs1\n"
    assert "job ids: " + " ".join(f"{i}.pbs1" for i in range(101, 109)) in \
        capsys.readouterr().out
    assert "#PBS -l select=2:ncpus=192:mpiprocs=8" in scripts[2].read_text()
    assert "#PBS -l select=1:ncpus=192:mpiprocs=8" in scripts[3].read_text()


def test_an_unscoped_key_reaches_the_stages_with_its_section(fakes, capsys):
    args = ["stage=chain", "cluster=slurm", "nodes=2", "train.train_steps=3",
            f"run.root={fakes / 'runs'}"]
    jobs = build_all(parse(args), args)  # RL, quantize and eval have no train section
    assert [("train.train_steps=3" in j.overrides) for j in jobs] == [True, True] + [False] * 6
    args = ["stage=chain", "cluster=slurm", "nodes=2", "checkpoint.async_save=false",
            f"run.root={fakes / 'runs'}"]
    assert cli.main(args) == 2  # RL has a checkpoint section, without async_save
    err = capsys.readouterr().err
    assert "recipe 'rl' does not compose" in err
    assert "cpt.<key>=<value> sft.<key>=<value>" in err
    assert not (fakes / "runs").exists()


def test_local_submit_runs_the_scripts_in_order(fakes, monkeypatch, capsys):
    # the local cluster runs the scripts with bash; `python` is the fake trainer here
    bin_dir = fakes / "fakebin"
    (bin_dir / "python").write_text((bin_dir / "mpirun").read_text())
    (bin_dir / "python").chmod(0o755)
    root = fakes / "runs"
    monkeypatch.setenv("FAKE_STAGE_DIR", str(root / "r/cpt"))
    args = ["stage=cpt", "cluster=local", "model=tiny_dense", f"run.root={root}", "run.name=r",
            "submit=true"]
    assert cli.main(args) == 0
    assert (root / "r/cpt/DONE").exists()
    (call,) = calls(fakes, "python")
    assert call == ["-m", "swallow_train", "cpt", "cluster=local", "model=tiny_dense",
                    f"run.root={root}", "run.name=r"]
    assert "cpt: exit status 0" in capsys.readouterr().out


def test_help(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Launch keys: stage, cluster, nodes, submit, queue, group, walltime" in out
