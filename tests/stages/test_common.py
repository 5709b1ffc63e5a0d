"""A stage directory is reused (skipped as finished, resumed) only by a model of its shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from swallow_train.config import RecipeError, compose, to_yaml
from swallow_train.launch import cli
from swallow_train.run import check_stage_dir_model
from swallow_train.stages.pipeline import plan


def _finished(stage_dir: Path, stage: str, model: str) -> bytes:
    """`stage_dir` as a finished `stage` run of `model` left it; its config.yaml's bytes."""
    stage_dir.mkdir(parents=True)
    text = to_yaml(compose(stage, [f"model={model}"]))
    (stage_dir / "config.yaml").write_text(text)
    (stage_dir / "DONE").write_text("60\n")
    return text.encode()


def test_the_same_shape_may_reuse_the_directory(tmp_path: Path) -> None:
    _finished(tmp_path / "cpt", "cpt", "tiny_dense")
    model = compose("cpt", ["model=tiny_dense", "model.rope_theta=1e4"]).model
    check_stage_dir_model(tmp_path / "cpt", model)  # not a shape: a deliberate change
    check_stage_dir_model(tmp_path / "sft", model)  # nothing there yet


def test_another_shape_is_refused_naming_the_fields(tmp_path: Path) -> None:
    _finished(tmp_path / "cpt", "cpt", "tiny_dense")
    moe = compose("cpt", ["model=tiny_moe"]).model
    with pytest.raises(RecipeError) as err:
        check_stage_dir_model(tmp_path / "cpt", moe)
    message = str(err.value)
    assert f"{tmp_path / 'cpt'} holds a run of model 'tiny_dense', not 'tiny_moe'" in message
    assert "model.num_experts=0 (now 8)" in message and "pick another run.name" in message


def test_a_damaged_config_is_named(tmp_path: Path) -> None:
    (tmp_path / "cpt").mkdir()
    (tmp_path / "cpt/config.yaml").write_text("model: [unclosed\n")
    model = compose("cpt", ["model=tiny_dense"]).model
    with pytest.raises(RecipeError, match=r"cpt/config.yaml is not a stage's config.yaml"):
        check_stage_dir_model(tmp_path / "cpt", model)


def test_a_moe_pipeline_on_a_dense_run_fails_before_running(tmp_path: Path) -> None:
    # the README's `make pipeline ARGS="model=tiny_moe"` without name=...: not "already finished"
    saved = _finished(tmp_path / "tiny/cpt", "cpt", "tiny_dense")
    with pytest.raises(RecipeError, match=r"not 'tiny_moe' .*: give the pipeline another name="):
        plan(compose("pipeline", [f"root={tmp_path}", "model=tiny_moe"]))
    assert (tmp_path / "tiny/cpt/config.yaml").read_bytes() == saved
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["cpt"]
    assert plan(compose("pipeline", [f"root={tmp_path}", "model=tiny_moe", "name=moe"]))


def test_launch_refuses_a_directory_of_another_model(tmp_path: Path, capsys) -> None:
    saved = _finished(tmp_path / "r/sft", "sft", "qwen3_8b")
    args = ["stage=sft", "cluster=abci3", "nodes=8", "group=g", "model=qwen3_32b",
            f"run.root={tmp_path}", "run.name=r"]
    assert cli.main(args) == 2
    assert "holds a run of model 'qwen3_8b', not 'qwen3_32b'" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "r/sft").iterdir()) == ["DONE", "config.yaml"]
    assert (tmp_path / "r/sft/config.yaml").read_bytes() == saved


@pytest.mark.parametrize("stage", ["cpt", "sft", "rl"])
def test_a_stage_refuses_a_directory_of_another_model(tmp_path: Path, capsys, stage) -> None:
    from swallow_train.cli import main

    saved = _finished(tmp_path / "r" / stage, stage, "tiny_dense")
    args = [stage, "model=tiny_moe", f"run.root={tmp_path}", "run.name=r",
            f"data.prepared_dir={tmp_path / 'prepared'}"]
    assert main(args) == 2
    assert "holds a run of model 'tiny_dense', not 'tiny_moe'" in capsys.readouterr().err
    assert (tmp_path / f"r/{stage}/config.yaml").read_bytes() == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # nothing prepared, no run
