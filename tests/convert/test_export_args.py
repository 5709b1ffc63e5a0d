"""`swallow-train export` takes `key=value` as every other command; the old `--key value` flags
still work, with a one-line deprecation warning.

    .venv/bin/python -m pytest tests/convert/test_export_args.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from swallow_train.cli import main as swallow_train
from swallow_train.convert.cli import parse_args


def _checkpoint(root: Path) -> Path:
    (root / "iter_0000005").mkdir(parents=True)
    (root / "iter_0000005" / "metadata.json").write_text("{}")
    (root / "latest_checkpointed_iteration.txt").write_text("5\n")
    return root


def test_key_value_and_the_old_flags_give_the_same_plan(tmp_path, capsys):
    root = _checkpoint(tmp_path / "ckpt")
    new = ["export", "--dry-run", f"checkpoint={root}", "model=qwen3_8b",
           f"out={tmp_path / 'hf'}", "dtype=fp32"]
    assert swallow_train(new) == 0
    plan = capsys.readouterr()
    assert "iter_0000005" in plan.out and "32.76 GB fp32" in plan.out and not plan.err
    old = ["export", "--dry-run", "--checkpoint", str(root), "--model", "qwen3_8b",
           "--out", str(tmp_path / "hf"), "--dtype", "fp32"]
    assert swallow_train(old) == 0
    again = capsys.readouterr()
    assert again.out == plan.out
    assert again.err.count("\n") == 1 and "--key value flags are deprecated" in again.err
    args = parse_args([f"checkpoint={root}", "config=c.yaml", "out=o", "iteration=7"])
    assert (args.iteration, args.config, args.model, args.dtype) == (7, "c.yaml", None, "bf16")


@pytest.mark.parametrize(("argv", "needle"), [
    (["checkpoint=c", "out=o"], "exactly one of model=<preset> or config="),
    (["checkpoint=c", "out=o", "model=m", "config=c.yaml"], "exactly one of model=<preset>"),
    (["model=qwen3_8b"], "give checkpoint= and out= and exactly one of"),
    (["checkpoint=c", "out=o", "model=m", "iteration=last"], "iteration=last must be a step"),
    (["checkpoint=c", "out=o", "model=m", "dtype=fp16"], "must be one of bf16, fp32"),
    (["checkpoint=c", "out=o", "model=m", "ckpt=x"], "ckpt=x: export takes checkpoint=, out="),
    (["checkpoint=c", "out=o", "model=m", "model=n"], "model is given twice"),
])
def test_mistakes_exit_2_naming_the_argument_and_the_fix(argv, needle, capsys):
    assert swallow_train(["export", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("swallow-train export: error: ") and needle in err
