"""`swallow-train pipeline`'s command line: its own keys compose the pipeline recipe, every other
`key=value` goes to every stage that has its section, `<stage>.key=value` to one stage; the
old `every_stage=[...]` / `overrides.<stage>=[...]` still work, with a warning.

    .venv/bin/python -m pytest tests/stages/test_pipeline_args.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swallow_train.config import RecipeError
from swallow_train.overrides import OverrideError
from swallow_train.stages.pipeline import compose_pipeline, plan, stage_overrides


def test_new_syntax_fills_every_stage_and_the_stage_overrides(capsys):
    recipe = compose_pipeline(["name=x", "root=/r", "model=tiny_moe", "nproc=2",
                               "logging.wandb_mode=online", "cpt.train.train_steps=5",
                               "model.rope_theta=1e4", "eval.eval_suite=tiny",
                               "stages=[cpt,sft,rl,quantize]", "evaluate=true"])
    assert (recipe.name, recipe.root, recipe.model.name, recipe.nproc) == ("x", "/r",
                                                                           "tiny_moe", 2)
    assert recipe.every_stage == ["logging.wandb_mode=online", "model.rope_theta=1e4"]
    assert recipe.overrides.cpt == ["train.train_steps=5"]
    assert stage_overrides(recipe, "cpt") == [
        "model=tiny_moe", "run.name=x", "run.root=/r", "cluster.gpus_per_node=2",
        "logging.wandb_mode=online", "model.rope_theta=1e4", "train.train_steps=5"]
    assert stage_overrides(recipe, "eval", "sft") == [
        "model=tiny_moe", "run.name=x", "run.root=/r", "logging.wandb_mode=online",
        "model.rope_theta=1e4", "eval_suite=tiny", "target=sft"]
    assert recipe.stages == ["cpt", "sft", "rl", "quantize"] and recipe.evaluate
    assert "deprecated" not in capsys.readouterr().err


def test_a_section_the_eval_lacks_does_not_reach_it():
    recipe = compose_pipeline(["data.prepared_dir=/p", "sft.optim.lr=1e-5"])
    assert "data.prepared_dir=/p" in stage_overrides(recipe, "rl")
    assert "data.prepared_dir=/p" not in stage_overrides(recipe, "eval", "rl")
    assert stage_overrides(recipe, "sft")[-1] == "optim.lr=1e-5"
    assert "optim.lr=1e-5" not in stage_overrides(recipe, "cpt")


def test_the_old_syntax_still_works_with_a_one_line_warning(capsys):
    recipe = compose_pipeline(["every_stage=['logging.wandb_mode=disabled']",
                               "overrides={cpt:['train.train_steps=3']}", "sft.optim.lr=1"])
    assert recipe.every_stage == ["logging.wandb_mode=disabled"]
    assert recipe.overrides.cpt == ["train.train_steps=3"]
    assert recipe.overrides.sft == ["optim.lr=1"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deprecated; give key=value (every stage) or <stage>.key=value" \
        in err[0]


@pytest.mark.parametrize(("argv", "error", "needle"), [
    (["stages=[cpt,sft]", "rl.rollout.num_rollout=3"], RecipeError,
     "rl.* arguments name a stage that the pipeline does not run"),
    (["evaluate=false", "eval.eval_suite=tiny"], RecipeError,
     "eval.* arguments name a stage that the pipeline does not run"),
    (["optim.lr=1", "optim.lr=2"], OverrideError, "optim.lr is given twice"),
    (["qwen3_8b"], OverrideError, "expected key=value"),
])
def test_mistakes_are_named(argv, error, needle):
    with pytest.raises(error) as err:
        compose_pipeline(argv)
    assert needle in str(err.value)


def test_a_typo_reaching_no_stage_fails_before_anything_is_composed(tmp_path: Path):
    recipe = compose_pipeline([f"root={tmp_path}", "optmi.lr=1"])
    with pytest.raises(OverrideError, match=r"optmi\.lr=1: no stage here has a section optmi"):
        plan(recipe)
    assert not (tmp_path / "tiny").exists()


def test_the_report_has_a_stage_by_task_table_and_chart(tmp_path: Path, monkeypatch, capsys):
    from swallow_train.config import compose
    from swallow_train.stages import pipeline_report

    monkeypatch.setattr(pipeline_report, "chat",
                        lambda hf, prompt, n, thinking: f"reply of {hf.name}")
    recipe = compose_pipeline([f"root={tmp_path}", "stages=[cpt,sft]"])
    recipes = {s: compose(s, stage_overrides(recipe, s)) for s in recipe.stages}
    evals = {s: compose("eval", stage_overrides(recipe, "eval", s)) for s in recipe.stages}
    scores = {"cpt": {"tiny_math/pass@1": 0.0, "tiny_mc_ja/acc": 0.25},
              "sft": {"tiny_math/pass@1": 0.5}}
    for stage, metrics in scores.items():
        run = tmp_path / "tiny" / stage
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n'
                                           '{"step": 2, "loss": 2.5}\n')
        done = run / "eval" / "tiny"
        done.mkdir(parents=True)
        (done / "summary.json").write_text(json.dumps({"metrics": metrics}))
        (done / "DONE").write_text(json.dumps({"stage": "eval", "step": 0}))
    summary = pipeline_report.report(recipe, recipes, tmp_path / "tiny", {}, evals)
    assert summary["eval"] == scores
    assert [(r["stage"], r["first"], r["last"]) for r in summary["stages"]] == [
        ("cpt", 3.0, 2.5), ("sft", 3.0, 2.5)]
    assert json.loads((tmp_path / "tiny/summary.json").read_text())["eval"] == scores
    assert (tmp_path / "tiny/eval.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "eval (stage x task)" in out and "0.2500" in out and "tiny_mc_ja/acc" in out
