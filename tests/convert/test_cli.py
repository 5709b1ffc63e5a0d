"""`swallow-train export`: checkpoint directory resolution, model selection, the dry-run plan and
errors that name the fix (the real export runs in tests/mcore/test_hf_import_export.py)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from swallow_train.cli import main as swallow_train
from swallow_train.convert.cli import load_model_config, main, resolve_iteration_dir
from swallow_train.convert.transforms import ConversionError
from tests.convert.helpers import preset


def _checkpoints(root: Path, steps: list[int], latest: str) -> Path:
    for step in steps:
        (root / f"iter_{step:07d}").mkdir(parents=True)
        (root / f"iter_{step:07d}" / "metadata.json").write_text("{}")
    (root / "latest_checkpointed_iteration.txt").write_text(latest + "\n")
    return root


def test_iteration_directory_resolution(tmp_path):
    root = _checkpoints(tmp_path / "ckpt", [10, 20], "20")
    assert resolve_iteration_dir(root) == root / "iter_0000020"
    assert resolve_iteration_dir(root, 10) == root / "iter_0000010"
    assert resolve_iteration_dir(root / "iter_0000010") == root / "iter_0000010"
    with pytest.raises(ConversionError, match="available: iter_0000010, iter_0000020"):
        resolve_iteration_dir(root, 30)
    (root / "latest_checkpointed_iteration.txt").write_text("release")
    with pytest.raises(ConversionError, match="release"):
        resolve_iteration_dir(root)
    with pytest.raises(ConversionError, match=r"latest_checkpointed_iteration\.txt"):
        resolve_iteration_dir(tmp_path)


def test_model_from_preset_or_stage_config(tmp_path):
    assert load_model_config("qwen3_30b_a3b", None).num_experts == 128
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"run": {"name": "x"}, "model": asdict(preset("tiny_moe"))}))
    assert load_model_config(None, str(config)) == preset("tiny_moe")
    with pytest.raises(ConversionError, match=r"known: .*qwen3_8b"):
        load_model_config("qwen3_9b", None)
    config.write_text(yaml.safe_dump({"model": {"name": "x", "hidden": 3}}))
    with pytest.raises(ConversionError, match="hidden"):
        load_model_config(None, str(config))


def test_dry_run_prints_the_plan_through_the_main_cli(tmp_path, capsys):
    root = _checkpoints(tmp_path / "ckpt", [5], "5")
    code = swallow_train(["export", "--dry-run", "--checkpoint", str(root), "--model",
                          "qwen3_8b", "--out", str(tmp_path / "hf")])
    out = capsys.readouterr().out
    assert code == 0 and not (tmp_path / "hf").exists()
    assert "iter_0000005" in out and "Qwen3ForCausalLM" in out
    assert "8,190,735,360 parameters" in out  # Qwen3-8B's published count
    assert "16.38 GB bf16" in out


def test_errors_exit_2_with_the_reason(tmp_path, capsys):
    code = main(["--checkpoint", str(tmp_path / "none"), "--model", "tiny_dense",
                 "--out", str(tmp_path / "hf")])
    assert code == 2
    assert "checkpoint directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --model or --config is required
        main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "hf")])
