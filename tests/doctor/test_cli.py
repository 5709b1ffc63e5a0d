"""`swallow-train doctor`: the CPU subset end to end (the PASS lines and the JSON), a FAIL that
names the directory and exits non-zero, and the multi-node wiring."""

from __future__ import annotations

import json

import pytest

from swallow_train.cli import main as cli
from swallow_train.doctor.cli import main
from tests.distributed import run_cli

CPU_PASS = ("torch", "megatron-core", "transformers", "parallel layout", "run root writable",
            "prepared data writable", "tokenizer", "self-test HF export", "self-test packed SFT",
            "self-test TP=2 parity", "self-test resume")
CPU_SKIP = ("run root shared", "prepared data shared", "CUDA", "NCCL", "transformer-engine",
            "GPUs", "NCCL all-reduce busbw", "self-test TE vs local", "self-test CP=2 parity",
            "self-test tokens/s")


def _rows(stdout: str) -> dict[str, str]:
    """check name -> status, from the printed table."""
    rows = {}
    for line in stdout.splitlines():
        status, _, rest = line.partition("  ")
        if status in ("PASS", "FAIL", "SKIP"):
            rows[rest[:24].strip()] = status
    return rows


@pytest.mark.slow
@pytest.mark.dist
def test_cpu_doctor_passes_its_subset_and_writes_json(tmp_path) -> None:
    """SFT at TP=2: every self-test a CPU runs (export, packed mask path, TP=2 over gloo,
    resume) in one doctor run."""
    out = tmp_path / "doctor.json"
    proc = run_cli(["doctor", "sft", "model=tiny_dense", "parallel=tp2", "cluster.gpus_per_node=2",
                    f"run.root={tmp_path / 'runs'}", f"data.prepared_dir={tmp_path / 'prepared'}",
                    "--json", str(out)], check=False)
    rows = _rows(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert {name: rows.get(name) for name in CPU_PASS} == dict.fromkeys(CPU_PASS, "PASS")
    assert {name: rows.get(name) for name in CPU_SKIP} == dict.fromkeys(CPU_SKIP, "SKIP")
    body = json.loads(out.read_text())
    assert body["ok"] is True and body["stage"] == "sft"
    assert body["overrides"][0] == "model=tiny_dense"
    checks = {c["name"]: c for c in body["checks"]}
    assert checks.keys() == rows.keys()
    for name in ("self-test HF export", "self-test packed SFT", "self-test TP=2 parity"):
        assert checks[name]["value"] <= 1e-5, name
    assert checks["parallel layout"]["value"] == 2
    resume = checks["self-test resume"]
    assert resume["value"] == 0.0 and resume["data"]["straight"] == resume["data"]["resumed"]
    assert len(resume["data"]["straight"]) == 10
    assert checks["run root writable"]["value"] > 0 and checks["tokenizer"]["value"] > 10
    assert not (tmp_path / "prepared").exists()  # created for the probe, removed again


def test_unwritable_run_root_fails_naming_it(tmp_path, capsys) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    root = blocker / "runs"
    args = ["cpt", "model=tiny_dense", f"run.root={root}",
            f"data.prepared_dir={tmp_path / 'prepared'}", "--no-selftests"]
    assert main([*args, "--json", str(tmp_path / "d.json")]) == 1
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith("FAIL")]
    assert line.split()[:4] == ["FAIL", "run", "root", "writable"]
    assert f"{root} (run.root) is not writable" in line
    assert "doctor cpt on" in out and "1 FAIL" in out
    body = json.loads((tmp_path / "d.json").read_text())
    assert body["ok"] is False
    assert [c["name"] for c in body["checks"] if c["status"] == "FAIL"] == ["run root writable"]
    assert main(args) == 1  # and the JSON cannot go to the default place under that root
    assert f"could not write {root / 'tiny_dense' / 'doctor.json'}" in capsys.readouterr().err


def test_stage_defaults_to_cpt_and_bad_overrides_exit_2(capsys) -> None:
    assert cli(["doctor", "model=tiny_dense", "--dry-run"]) == 0
    assert "seq_length: 128" in capsys.readouterr().out
    assert cli(["doctor", "sft", "model.hiden_size=3"]) == 2
    assert "Key 'hiden_size' not in 'ModelConfig'" in capsys.readouterr().err


def test_other_ranks_of_a_node_check_only_the_shared_filesystem(tmp_path, monkeypatch,
                                                                capsys) -> None:
    """Under a launcher, a process with LOCAL_RANK > 0 checks the filesystem and stops; the
    launcher's variables are gone from it afterwards (its self-tests must not join the job)."""
    for name in ("runs", "prepared"):
        tokens = tmp_path / name / ".swallow-doctor" / "77-29500"
        tokens.mkdir(parents=True)
        (tokens / "token.node0.0").write_text("{}")  # rank 0, on another node
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
                       "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, value)
    assert main(["cpt", "model=tiny_dense", "cluster.nodes=2", f"run.root={tmp_path / 'runs'}",
                 f"data.prepared_dir={tmp_path / 'prepared'}", "--fs-timeout", "5"]) == 0
    import os

    assert "RANK" not in os.environ and "MASTER_PORT" not in os.environ
    rows = _rows(capsys.readouterr().out)
    assert rows == {"run root shared": "PASS", "prepared data shared": "PASS"}
