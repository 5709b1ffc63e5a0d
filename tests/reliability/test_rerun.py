"""A finished stage (`DONE`) rerun: the same recipe skips it (exit 0); another recipe is refused
(exit 2) naming the keys that differ and how to keep, extend or skip the finished run, and
nothing of it is touched. Covers the trainer (cpt/sft), the local RL backend and the pipeline.

    .venv/bin/python -m pytest tests/reliability/test_rerun.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from swallow_train.cli import main
from swallow_train.config import compose, to_yaml
from swallow_train.run import RESULT_NEUTRAL, finished_stage


def finished(root: Path, stage: str, overrides: list[str]) -> dict[Path, bytes]:
    """A finished stage directory written with the recipe of `overrides`; its files' bytes."""
    recipe = compose(stage, overrides)
    stage_dir = recipe.run.stage_dir(stage)
    (stage_dir / "hf").mkdir(parents=True)
    (stage_dir / "config.yaml").write_text(to_yaml(recipe))
    (stage_dir / "DONE").write_text("60\n")
    (stage_dir / "hf/config.json").write_text('{"model_type": "qwen3"}\n')
    (stage_dir / "metrics.jsonl").write_text('{"step": 60, "loss": 4.4}\n')
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


CASES = [  # (command, stage, recipe overrides)
    ("cpt", "cpt", ["model=tiny_dense"]),
    ("sft", "sft", ["model=tiny_dense"]),
    ("rl", "rl", ["model=tiny_dense"]),
]


@pytest.mark.parametrize(("command", "stage", "overrides"), CASES)
def test_identical_rerun_skips_with_exit_0(command, stage, overrides, tmp_path, monkeypatch,
                                           capsys) -> None:
    monkeypatch.chdir(tmp_path)
    before = finished(tmp_path, stage, overrides)
    # where and how it runs does not change what it produced: still the same finished run
    assert main([command, *overrides, "logging.plot_interval=3", "logging.progress_bar=false"]) == 0
    assert "finished with this recipe; skipping" in capsys.readouterr().out
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("command", "stage", "overrides", "change", "shown"), [
    ("cpt", "cpt", ["model=tiny_dense"], ["train.train_steps=100"],
     "train.train_steps: 60 there, 100 now"),
    ("sft", "sft", ["model=tiny_dense"], ["optim.lr=3e-4"], "optim.lr: 0.001 there, 0.0003 now"),
    ("rl", "rl", ["model=tiny_dense"], ["rollout.num_rollout=7"],
     "rollout.num_rollout: 20 there, 7 now"),
])
def test_rerun_with_another_recipe_is_refused_naming_keys_and_fix(
        command, stage, overrides, change, shown, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    before = finished(tmp_path, stage, overrides)
    assert main([command, *overrides, *change]) == 2
    err = capsys.readouterr().err
    stage_dir = Path("runs/tiny_dense") / stage
    assert f"{stage_dir} already finished (DONE) with another recipe" in err, err
    assert shown in err, err
    assert "another run.name" in err and f"init.hf={stage_dir / 'hf'}" in err
    assert f"delete {stage_dir / 'DONE'}" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before  # the finished run is untouched


def test_pipeline_refuses_a_finished_stage_of_another_recipe(tmp_path, monkeypatch,
                                                             capsys) -> None:
    monkeypatch.chdir(tmp_path)
    plan = compose("pipeline")
    cpt = ["model=tiny_dense", f"run.name={plan.name}", f"run.root={plan.root}"]
    before = finished(tmp_path, "cpt", cpt)
    assert main(["pipeline", 'overrides.cpt=["train.train_steps=61"]']) == 2
    err = capsys.readouterr().err
    assert "train.train_steps: 60 there, 61 now" in err, err
    after = snapshot(tmp_path)
    assert {p: b for p, b in after.items() if p.name != ".pipeline.lock"} == before


def test_neutral_keys_are_ignored_and_a_missing_config_still_skips(tmp_path) -> None:
    recipe = compose("cpt", ["model=tiny_dense", f"run.root={tmp_path}"])
    stage_dir = recipe.run.stage_dir("cpt")
    stage_dir.mkdir(parents=True)
    assert finished_stage(stage_dir, recipe) is False  # no DONE: not finished
    (stage_dir / "DONE").write_text("")
    assert finished_stage(stage_dir, recipe) is True  # nothing to compare with (job script)
    other = compose("cpt", ["model=tiny_dense", f"run.root={tmp_path}", "cluster.nodes=1",
                            "parallel.distributed_optimizer=false", "checkpoint.keep_last=9"])
    (stage_dir / "config.yaml").write_text(to_yaml(other))
    assert finished_stage(stage_dir, recipe) is True
    assert "checkpoint.keep_last" in RESULT_NEUTRAL and "checkpoint.load" not in RESULT_NEUTRAL
