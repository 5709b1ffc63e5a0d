"""The 1-node jobs of `launch` (template single.sh): quantize after RL, and one eval job per
stage, each waiting for the job of the stage it scores (afterok), not holding up the chain.

    .venv/bin/python -m pytest tests/launch/test_single_jobs.py -q
"""

from __future__ import annotations

import pytest

from swallow_train.launch import cli
from swallow_train.launch.args import parse
from swallow_train.launch.render import build_all
from tests.launch.fakes import calls, fake_bin


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    bin_dir = fake_bin(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "record"))
    return tmp_path


def test_each_eval_waits_for_its_stage_and_the_chain_does_not_wait_for_evals(fakes, capsys):
    root = fakes / "runs"
    assert cli.main(["stage=cpt,sft,eval", "cluster=slurm", "nodes=16", "sft.nodes=8",
                     "model=qwen3_8b", f"run.root={root}", "run.name=r", "submit=true"]) == 0
    cpt, sft = root / "r/cpt/job.slurm.sh", root / "r/sft/job.slurm.sh"
    eval_cpt = root / "r/cpt/eval/tiny/job.slurm.sh"
    eval_sft = root / "r/sft/eval/tiny/job.slurm.sh"
    dep = "--kill-on-invalid-dep=yes"
    assert calls(fakes, "sbatch") == [
        ["--parsable", str(cpt)],
        ["--dependency=afterok:201", dep, "--parsable", str(sft)],
        ["--dependency=afterok:201", dep, "--parsable", str(eval_cpt)],
        ["--dependency=afterok:202", dep, "--parsable", str(eval_sft)],
    ]
    # a PBS continuation of cpt would move both of its dependents onto itself
    assert (root / "r/cpt/dependents").read_text() == "202\n203\n"
    assert (root / "r/sft/dependents").read_text() == "204\n"
    script = eval_sft.read_text()
    assert "#SBATCH --nodes=1\n" in script and "#SBATCH --job-name=eval-sft-r\n" in script
    assert "  eval_suite" not in script and " target=sft\n" in script
    assert f"if [ ! -f {root}/r/sft/DONE ]; then" in script
    assert "eval: submitted job 204 after 202" in capsys.readouterr().out


def test_quantize_follows_rl_and_eval_alone_scores_every_model_stage(tmp_path):
    argv = ["stage=quantize,eval", "cluster=abci3", "group=g", "model=qwen3_8b",
            f"run.root={tmp_path}", "run.name=r", "eval.eval_suite=swallow_posttrained"]
    jobs = build_all(parse(argv), argv)
    assert [(j.stage, j.after, str(j.path.relative_to(tmp_path))) for j in jobs] == [
        ("quantize", "rl", "r/quantize/job.pbs.sh"),
        ("eval", "quantize", "r/quantize/eval/swallow_posttrained/job.pbs.sh"),
    ]
    quantize = jobs[0].script
    assert "#PBS -l select=1:ncpus=192:mpiprocs=8\n" in quantize
    assert "  python -m swallow_train quantize\n" in quantize
    assert f"if [ ! -f {tmp_path}/r/rl/DONE ]; then" in quantize
    alone = ["stage=eval", "cluster=abci3", "group=g", "model=qwen3_8b",
             f"run.root={tmp_path}", "run.name=r"]
    targets = [j.after for j in build_all(parse(alone), alone)]
    assert targets == ["cpt", "sft", "rl", "quantize"]
    assert not (tmp_path / "r").exists()  # rendering writes nothing
