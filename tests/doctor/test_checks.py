"""The environment checks of `swallow-train doctor` (swallow_train/doctor/checks.py,
swallow_train/check_report.py, bandwidth.py): what makes each of them PASS, FAIL or SKIP, and
that a FAIL names the field and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from swallow_train.check_report import Report, Status, guarded, passed
from swallow_train.config import compose
from swallow_train.doctor import checks
from swallow_train.doctor.bandwidth import bus_bandwidth
from swallow_train.tokenizer import bundled_qwen3_dir, load_tokenizer


def _by_name(rows):
    return {row.name: row for row in rows}


def test_versions_on_cpu_pass_what_is_installed_and_skip_the_rest() -> None:
    rows = _by_name(checks.versions("cpt", slime_backend=False))
    assert rows["torch"].status is Status.PASS and rows["torch"].value.startswith("2.")
    assert rows["megatron-core"].status is Status.PASS and rows["megatron-core"].value == "0.16.1"
    assert rows["transformers"].status is Status.PASS
    for name in ("CUDA", "NCCL", "transformer-engine", "slime", "sglang"):
        assert rows[name].status is Status.SKIP, name


def test_a_needed_package_that_is_missing_fails_with_the_install_command(monkeypatch) -> None:
    real = checks._installed
    monkeypatch.setattr(checks, "_installed", lambda p: (None, None) if p.label in (
        "megatron-core", "transformers") else real(p))
    cpt = _by_name(checks.versions("cpt", slime_backend=False))
    assert cpt["megatron-core"].status is Status.FAIL
    assert "the cpt training loop" in cpt["megatron-core"].detail
    assert "pip install 'megatron-core>=0.15,<0.20'" in cpt["megatron-core"].detail
    assert cpt["transformers"].status is Status.FAIL
    rl = _by_name(checks.versions("rl", slime_backend=True))
    assert rl["megatron-core"].status is Status.SKIP  # slime brings its own Megatron-LM


def test_what_each_package_is_needed_for() -> None:
    te, slime = (next(p for p in checks.PACKAGES if p.label == n)
                 for n in ("transformer-engine", "slime"))
    assert checks._needed_for(te, "sft", cuda=True, slime_backend=False)
    assert checks._needed_for(te, "sft", cuda=False, slime_backend=False) is None
    assert checks._needed_for(te, "rl", cuda=True, slime_backend=True) is None
    assert checks._needed_for(slime, "rl", cuda=True, slime_backend=True)
    assert checks._needed_for(slime, "rl", cuda=True, slime_backend=False) is None
    assert checks._needed_for(slime, "cpt", cuda=True, slime_backend=True) is None


def test_megatron_core_outside_the_supported_range_fails(monkeypatch) -> None:
    monkeypatch.setattr(checks.metadata, "version",
                        lambda dist: "0.13.0" if dist == "megatron-core" else "1.0")
    row = _by_name(checks.versions("cpt", slime_backend=False))["megatron-core"]
    assert row.status is Status.FAIL and row.value == "0.13.0"
    assert "0.15-0.19" in row.detail
    assert checks._version_tuple("0.16.1rc2") == (0, 16, 1)


def test_writable_measures_and_leaves_nothing_behind(tmp_path) -> None:
    target = tmp_path / "a" / "b"
    row = checks.writable("run root", "run.root", str(target))
    assert row.status is Status.PASS and row.unit == "MB/s" and row.value > 0
    assert str(target) in row.detail and row.data["free_bytes"] > 0
    assert list(tmp_path.iterdir()) == []  # the directories it created are gone again
    target.mkdir(parents=True)
    (target / "keep").write_text("x")
    assert checks.writable("run root", "run.root", str(target)).status is Status.PASS
    assert [p.name for p in target.iterdir()] == ["keep"]


def test_an_unwritable_directory_fails_naming_it_and_the_key(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    row = checks.writable("prepared data", "data.prepared_dir", str(blocker / "prepared"))
    assert row.status is Status.FAIL
    assert f"{blocker / 'prepared'} (data.prepared_dir) is not writable" in row.detail
    assert "set data.prepared_dir=<a writable directory>" in row.detail


def test_too_little_space_for_the_checkpoints_fails(tmp_path) -> None:
    model = compose("cpt", ["model=qwen3_8b"]).model
    need = checks.checkpoint_bytes(model, keep_last=3)
    assert need == model.num_params() * 14 * 4
    row = checks.writable("run root", "run.root", str(tmp_path), need_bytes=2**70)
    assert row.status is Status.FAIL and "lower checkpoint.keep_last" in row.detail


def test_tokenizer_round_trips_japanese_and_english() -> None:
    row = checks.tokenizer("bundled:qwen3", 151936)
    tok = load_tokenizer("bundled:qwen3")
    assert row.status is Status.PASS
    assert row.value == len(tok.encode(checks.JA_EN, add_special_tokens=False))
    assert "151,669-token vocabulary" in row.detail


def test_tokenizer_too_big_for_the_embedding_fails() -> None:
    row = checks.tokenizer("bundled:qwen3", 1024)
    assert row.status is Status.FAIL and "model.vocab_size=1,024" in row.detail


def test_tokenizer_without_chat_template_fails(tmp_path) -> None:
    for file in bundled_qwen3_dir().iterdir():
        shutil.copy(file, tmp_path / file.name)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    for extra in tmp_path.glob("chat_template*"):
        extra.unlink()
    row = checks.tokenizer(str(tmp_path), 151936)
    assert row.status is Status.FAIL and "has no chat template" in row.detail


def test_layout_check_names_the_broken_rule() -> None:
    good = checks.layout(compose("cpt", ["model=qwen3_8b", "cluster=abci3", "cluster.nodes=2"]))
    assert good.status is Status.PASS and good.value == 16
    (bad,) = guarded("parallel layout", lambda: checks.layout(compose("cpt", ["model=qwen3_8b"])))
    assert bad.status is Status.FAIL and "is not divisible by TP x PP x CP" in bad.detail
    assert checks.layout(compose("rl", ["model=tiny_dense"])).status is Status.SKIP


def test_gpus_skip_without_cuda() -> None:
    assert checks.gpus(8).status is Status.SKIP


def test_bus_bandwidth_is_nccl_tests_formula() -> None:
    algbw, busbw = bus_bandwidth(2**30, 0.01, 8)
    assert algbw == pytest.approx(2**30 / 0.01 / 1e9)
    assert busbw == pytest.approx(algbw * 2 * 7 / 8)
    assert bus_bandwidth(2**30, 0.01, 2)[1] == pytest.approx(algbw)


def test_guarded_turns_an_exception_into_a_fail_line() -> None:
    def broken():
        raise KeyError("boom")

    (row,) = guarded("thing", broken)
    assert row.status is Status.FAIL and row.detail == "KeyError: 'boom'"
    assert any("boom" in line for line in row.data["traceback"])


def test_report_table_and_json(tmp_path: Path) -> None:
    report = Report(stage="cpt", overrides=["model=tiny_dense"], host="node1")
    report.checks += guarded("a", lambda: passed("a", 12.5, "GB/s", "fine"))
    report.checks += guarded("b", lambda: checks.gpus(1))
    assert report.ok
    assert report.table().splitlines()[0].split() == ["PASS", "a", "12.5", "GB/s", "fine"]
    assert report.table().endswith("doctor cpt on node1: 1 PASS, 0 FAIL, 1 SKIP")
    report.write(tmp_path / "x" / "doctor.json")
    body = json.loads((tmp_path / "x" / "doctor.json").read_text())
    assert body["ok"] is True and body["counts"] == {"PASS": 1, "FAIL": 0, "SKIP": 1}
    assert body["checks"][0] | {"seconds": 0} == {
        "name": "a", "status": "PASS", "value": 12.5, "unit": "GB/s", "detail": "fine",
        "seconds": 0, "data": {}}
