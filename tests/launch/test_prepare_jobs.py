"""The CPU jobs of `launch stage=prepare` (array tasks + a final step), their place in a chain,
and the checks a GPU job script makes before its launcher: the prepared data (multi-node CPT
and SFT) and `cluster.preflight` (swallow-train doctor).

    .venv/bin/python -m pytest tests/launch/test_prepare_jobs.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swallow_train.launch import cli
from swallow_train.launch.args import parse
from swallow_train.launch.render import build, build_all
from tests.launch.fakes import RECORD, calls, env_with, fake_bin, run_bash


@pytest.fixture(autouse=True)
def work(tmp_path, monkeypatch):
    """The submit directory: the presets' venv (.venv) is an empty activate script here."""
    (tmp_path / ".venv/bin").mkdir(parents=True)
    (tmp_path / ".venv/bin/activate").write_text("")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _jobs(*args: str):
    argv = list(args)
    return build_all(parse(argv), argv)


@pytest.mark.parametrize(("cluster", "array", "task_var", "value", "index"), [
    ("abci3", "#PBS -J 0-3", "PBS_ARRAY_INDEX", "2", "2"),
    ("tsubame4", "#$ -t 1-4", "SGE_TASK_ID", "3", "2"),  # Grid Engine counts from 1
    ("slurm", "#SBATCH --array=0-3", "SLURM_ARRAY_TASK_ID", "2", "2"),
])
def test_prepare_renders_an_array_and_a_final_step(tmp_path, monkeypatch, cluster, array,
                                                    task_var, value, index):
    monkeypatch.chdir(tmp_path)
    task, final = _jobs("stage=prepare", f"cluster={cluster}", "group=g", "model=qwen3_8b",
                        "run.name=r", "cluster.prepare_tasks=4")
    assert task.path.name.startswith("job.") and final.path.name.startswith("final.")
    assert array in task.script.splitlines()
    assert not any(line.startswith(array.split()[0] + " " + array.split()[1])
                   for line in final.script.splitlines())  # the final step is one job
    for gpu_only in ("--gpus-per-node", "mpiprocs", "node_f", "rt_HF", "-r y", "--requeue"):
        assert gpu_only not in task.script and gpu_only not in final.script
    # run the task script against fakes: it prepares its share with every core
    bin_dir = fake_bin(tmp_path)
    (bin_dir / "python").write_text("#!/bin/bash\n" + RECORD + "exit 0\n")
    task.path.parent.mkdir(parents=True, exist_ok=True)
    task.path.write_text(task.script)
    env = env_with(bin_dir, **{task_var: value, "PBS_O_WORKDIR": str(tmp_path),
                               "PBS_JOBID": "7[2].pbs1", "JOB_ID": "7",
                               "SLURM_SUBMIT_DIR": str(tmp_path), "SLURM_JOB_ID": "7"})
    code, out = run_bash(task.path, env, cwd=tmp_path)
    assert code == 0, out
    (call,) = calls(tmp_path, "python")
    cores = call[-1].split("=")[1]
    assert int(cores) >= 1
    assert call[:3] == ["-m", "swallow_train", "prepare"]
    assert call[-3:] == ["data.num_tasks=4", f"data.task_index={index}",
                         f"data.num_workers={cores}"]


def test_sft_and_rl_preparation_are_single_cpu_jobs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (sft,) = _jobs("stage=prepare-sft", "cluster=slurm", "model=qwen3_8b", "run.name=r")
    (rl,) = _jobs("stage=prepare-rl", "cluster=slurm", "model=qwen3_8b", "run.name=r")
    assert "--array" not in sft.script and "--gpus" not in sft.script
    assert 'python -m swallow_train prepare-sft "${RECIPE[@]}" "data.num_workers=$CORES"' \
        in sft.script
    assert 'python -m swallow_train prepare-rl "${RECIPE[@]}"; then' in rl.script


@pytest.mark.parametrize(("cluster", "extra", "ids", "deps"), [
    ("abci3", ["group=g"], ["101[].pbs1", "102.pbs1", "103.pbs1"],
     [[], ["-W", "depend=afterok:101[].pbs1"], ["-W", "depend=afterok:102.pbs1"]]),
    ("tsubame4", ["group=g", "cpt.parallel.cp=2"], ["101", "102", "103"],  # fits an H100 94 GB
     [["-terse", "-g", "g"], ["-hold_jid", "101", "-terse", "-g", "g"],
      ["-hold_jid", "102", "-terse", "-g", "g"]]),
    ("slurm", [], ["201", "202", "203"],
     [[], ["--dependency=afterok:201", "--kill-on-invalid-dep=yes"],
      ["--dependency=afterok:202", "--kill-on-invalid-dep=yes"]]),
])
def test_a_chain_submits_the_preparation_before_cpt(tmp_path, monkeypatch, capsys, cluster,
                                                    extra, ids, deps):
    bin_dir = fake_bin(tmp_path)
    if cluster == "abci3":  # PBS names an array job <seq>[].<server>
        (bin_dir / "qsub").write_text((bin_dir / "qsub").read_text().replace(
            'echo "$((100 + n))', 'if [ "$n" = 1 ]; then echo "101[].pbs1"; exit; fi\necho '
            '"$((100 + n))'))
    if cluster == "tsubame4":  # qsub -terse of an array job: <id>.<first>-<last>:<step>
        (bin_dir / "qsub").write_text((bin_dir / "qsub").read_text().replace(
            '${FAKE_QSUB_SUFFIX-.pbs1}"', '$([ "$n" = 1 ] && echo .1-16:1)"'))
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "record"))
    root = tmp_path / "runs"
    args = ["stage=prepare,cpt", f"cluster={cluster}", "nodes=4", "model=qwen3_8b",
            f"run.root={root}", "run.name=r", "submit=true", *extra]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    tool = "sbatch" if cluster == "slurm" else "qsub"
    got = calls(tmp_path, tool)
    scripts = [root / "r/prepare" / f"job.{n}.sh" for n in ("pbs", "sge", "slurm")
               if (root / "r/prepare" / f"job.{n}.sh").exists()]
    (task,) = scripts
    final = task.with_name(task.name.replace("job.", "final."))
    cpt = root / "r/cpt" / task.name
    assert [c[-1] for c in got] == [str(task), str(final), str(cpt)]
    for call, dep in zip(got, deps, strict=True):
        assert [f for f in call[:-1] if f != "--parsable"] == dep
    assert out.rstrip().endswith("job ids: " + " ".join(ids))


def _run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("node1\n" * 8 + "node2\n" * 8)
    return env_with(fake_bin(tmp_path), PBS_O_WORKDIR=str(tmp_path), PBS_JOBID="5.pbs1",
                    PBS_NODEFILE=str(nodefile), FAKE_STAGE_DIR=str(tmp_path / "runs/r/cpt"),
                    **extra)


def _render_cpt(tmp_path: Path, *extra: str) -> Path:
    args = ["stage=cpt", "cluster=abci3", "nodes=2", "group=g", "model=qwen3_8b",
            "run.name=r", *extra]
    (job,) = build("cpt", parse(args), args)
    job.path.parent.mkdir(parents=True, exist_ok=True)
    job.path.write_text(job.script)
    return job.path


def test_multi_node_job_checks_the_prepared_data_before_launching(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = _render_cpt(tmp_path)
    text = script.read_text()
    assert ("#   swallow-train launch stage=prepare cluster=abci3 group=g model=qwen3_8b "
            "run.name=r") in text
    code, out = run_bash(script, _run_env(tmp_path, FAKE_READY="1"), cwd=tmp_path)
    assert code == 1 and "cpt needs its prepared data first" in out
    assert calls(tmp_path, "mpirun") == []  # nothing launched
    assert calls(tmp_path, "python") == [["-m", "swallow_train.data.ready", "cpt",
                                          "cluster=abci3", "cluster.nodes=2", "cluster.group=g",
                                          "model=qwen3_8b", "run.name=r"]]
    code, out = run_bash(script, _run_env(tmp_path), cwd=tmp_path)
    assert code == 0, out
    assert len(calls(tmp_path, "mpirun")) == 1


def test_single_node_jobs_render_no_data_check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["stage=cpt", "cluster=local", "model=tiny_dense"]
    (job,) = build("cpt", parse(args), args)
    assert "swallow_train.data.ready" not in job.script and "doctor" not in job.script


def test_preflight_runs_doctor_first_and_stops_on_a_failure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = _render_cpt(tmp_path, "cluster.preflight=true")
    code, out = run_bash(script, _run_env(tmp_path, FAKE_DOCTOR="1"), cwd=tmp_path)
    assert code == 1
    assert "swallow-train doctor cpt reported a failure (see above); nothing was launched" in out
    assert calls(tmp_path, "mpirun") == []
    assert calls(tmp_path, "python") == [["-m", "swallow_train", "doctor", "cpt",
                                          "cluster=abci3", "cluster.nodes=2", "cluster.group=g",
                                          "model=qwen3_8b", "run.name=r",
                                          "cluster.preflight=true"]]
    # the RL job runs it too, before Ray
    args = ["stage=rl", "cluster=slurm", "nodes=2", "model=qwen3_8b", "run.name=r",
            "cluster.preflight=true"]
    (rl,) = build("rl", parse(args), args)
    assert rl.script.index("python -m swallow_train doctor rl") < rl.script.index("ray start")


@pytest.mark.slow
def test_the_rendered_array_prepares_for_real_and_the_stage_check_passes(tmp_path, monkeypatch):
    """Two Slurm array tasks and the final step, run with the real interpreter on a small
    corpus: the CPT job's data check then passes."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jsonl").write_text("".join(
        json.dumps({"text": f"Document {i}. 文書{i}。"}, ensure_ascii=False) + "\n"
        for i in range(16)), encoding="utf-8")
    (tmp_path / "m.yaml").write_text("name: small\nstage: cpt\ncorpora:\n"
                                     "  - {name: a, language: en, source: {path: a.jsonl}, "
                                     "budget: 100}\n")
    recipe = [f"data.manifest={tmp_path / 'm.yaml'}", "data.prepared_dir=prepared",
              "model=tiny_dense", "data.docs_per_shard=4", "run.name=r", "data.split='50,50,0'"]
    task, final = _jobs("stage=prepare", "cluster=slurm", "cluster.prepare_tasks=2", *recipe)
    for job in (task, final):
        job.path.parent.mkdir(parents=True, exist_ok=True)
        job.path.write_text(job.script)
    bin_dir = fake_bin(tmp_path)
    for t in ("0", "1"):
        env = env_with(bin_dir, SLURM_SUBMIT_DIR=str(tmp_path), SLURM_JOB_ID="9",
                       SLURM_ARRAY_TASK_ID=t)
        code, out = run_bash(task.path, env, cwd=tmp_path, timeout=240)
        assert code == 0, out
    assert not (tmp_path / "prepared/small/stats.json").exists()
    code, out = run_bash(final.path, env_with(bin_dir, SLURM_SUBMIT_DIR=str(tmp_path),
                                              SLURM_JOB_ID="10"), cwd=tmp_path, timeout=240)
    assert code == 0, out
    stats = json.loads((tmp_path / "prepared/small/stats.json").read_text())
    assert stats["corpora"]["a"]["documents"] == 16 and len(stats["corpora"]["a"]["shards"]) == 4
    from swallow_train.data import ready

    assert ready.main(["cpt", *recipe, "cluster=slurm", "cluster.nodes=2"]) == 0


def test_rl_without_a_slime_path_names_the_cluster_field(tmp_path, capsys):
    (tmp_path / "runs/r/sft").mkdir(parents=True)
    code = cli.main(["stage=rl", "cluster=slurm", "nodes=2", "model=qwen3_8b", "run.name=r",
                     "cluster.slime_train_script=null"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cluster slurm: cluster.slime_train_script is not set; set it to slime's train.py" \
        in err
    assert not (tmp_path / "runs/r/rl").exists()
