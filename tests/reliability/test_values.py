"""Every numeric recipe field has a declared range, checked at compose time: a value out of range
(or a setting the stage or backend cannot honour) ends in exit 2 and a message naming the key,
the value and the fix, before anything is written.

    .venv/bin/python -m pytest tests/reliability/test_values.py -q
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from swallow_train.cli import main
from swallow_train.config import RECIPES, RecipeError, compose, recipe_class
from swallow_train.ranges import RANGES, Range, class_key

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"


def _inner(hint: object) -> list[object]:
    """The types a field hint can hold: X | None -> [X], list[X] -> [X], dict[K, V] -> [V]."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(hint) if arg is not type(None) for t in _inner(arg)]
    if origin in (list, tuple):
        return [t for arg in typing.get_args(hint) for t in _inner(arg)]
    if origin is dict:
        return _inner(typing.get_args(hint)[1])
    return [hint]


def recipe_dataclasses() -> set[type]:
    """Every dataclass reachable from the stage recipes' roots."""
    seen: set[type] = set()
    todo = [recipe_class(stage) for stage in RECIPES]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for hint in typing.get_type_hints(cls).values():
            todo += [t for t in _inner(hint) if isinstance(t, type) and is_dataclass(t)]
    return seen


def numeric_fields(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    return [f.name for f in fields(cls)
            if any(t in (int, float) for t in _inner(hints[f.name]))]


def test_every_numeric_field_of_every_recipe_dataclass_has_a_range() -> None:
    classes = recipe_dataclasses()
    assert len(classes) >= 20  # the walk reaches the sections, not only the roots
    missing = [f"{class_key(c)}.{name}" for c in classes for name in numeric_fields(c)
               if name not in RANGES.get(class_key(c), {})]
    assert missing == [], f"declare a range in swallow_train/ranges.py for {missing}"
    known = {class_key(c): set(numeric_fields(c)) for c in classes}
    stale = [f"{key}.{name}" for key, table in RANGES.items() for name in table
             if name not in known.get(key, set())]
    assert stale == [], f"ranges of fields that no recipe has: {stale}"


def test_the_defaults_of_every_recipe_are_in_range() -> None:
    for stage in RECIPES:
        compose(stage)  # raises RecipeError on any default out of range


def test_range_bounds_and_descriptions() -> None:
    assert Range(lo=1).describe() == ">= 1" and Range(lo=0, lo_open=True).describe() == "> 0"
    unit = Range(lo=0, hi=1, lo_open=True, hi_open=True)
    assert unit.describe() == "in (0, 1)"
    assert [unit.contains(v) for v in (0, 1e-9, 0.5, 1, float("nan"))] == [
        False, True, True, False, False]
    assert Range(lo=-1).contains(-1) and not Range(lo=-1).contains(-2)


BAD = [  # (command, override, key=value as printed, allowed range)
    ("cpt", "train.global_batch_size=0", "train.global_batch_size=0", ">= 1"),
    ("cpt", "train.train_steps=-5", "train.train_steps=-5", ">= 0"),
    ("cpt", "train.seq_length=0", "train.seq_length=0", ">= 1"),
    ("cpt", "optim.lr=-1", "optim.lr=-1.0", "> 0"),
    ("cpt", "optim.lr=nan", "optim.lr=nan", "> 0"),
    ("cpt", "cluster.nodes=0", "cluster.nodes=0", ">= 1"),
    ("cpt", "cluster.nodes=-2", "cluster.nodes=-2", ">= 1"),
    ("cpt", "optim.adam_beta2=1", "optim.adam_beta2=1.0", "in [0, 1)"),
    ("cpt", "parallel.vpp=0", "parallel.vpp=0", ">= 1"),
    ("sft", "train.micro_batch_size=0", "train.micro_batch_size=0", ">= 1"),
    ("sft", "data.seed=-1", "data.seed=-1", "in [0, 4.29497e+09]"),
    ("prepare", "data.num_workers=0", "data.num_workers=0", ">= 1"),
    ("rl", "rollout.top_p=0", "rollout.top_p=0.0", "in (0, 1]"),
    ("rl", "checkpoint.save_interval=0", "checkpoint.save_interval=0", ">= 1"),
    ("rl", "slime.sglang_mem_fraction_static=1.5", "slime.sglang_mem_fraction_static=1.5",
     "in (0, 1)"),
    ("rl", "reward.timeout_s=0", "reward.timeout_s=0.0", "> 0"),
    ("pipeline", "nproc=0", "nproc=0", ">= 1"),
    ("launch", "cpt.train.seq_length=0", "train.seq_length=0", ">= 1"),
]


@pytest.mark.parametrize(("command", "override", "shown", "allowed"), BAD)
def test_out_of_range_values_exit_2_naming_key_value_and_fix(command, override, shown, allowed,
                                                             capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [command, "--dry-run", override]
    if command == "launch":
        argv = ["launch", "--dry-run", "stage=cpt", "cluster=abci3", "nodes=16",
                "group=gxx00000", override]
    assert main(argv) == 2
    err = capsys.readouterr().err
    key = shown.split("=")[0]
    assert f"{shown} must be {allowed}" in err, err
    assert f"set {key} to a value {allowed}" in err, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_cli_process_exits_2_with_one_clear_message_and_no_traceback(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "swallow_train", "cpt", "--dry-run",
                           "train.seq_length=0", "cluster.nodes=-2"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "SWALLOW_RECIPES": str(RECIPES_DIR)})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [  # both listed, in recipe order, each with its fix
        "swallow-train cpt: error: recipe 'cpt' has values out of range:",
        "  - cluster.nodes=-2 must be >= 1 (nodes of the job): set cluster.nodes to a value >= 1",
        "  - train.seq_length=0 must be >= 1 (tokens per training sequence): set "
        "train.seq_length to a value >= 1"]
    assert list(tmp_path.iterdir()) == []


def test_a_bad_value_leaves_an_existing_run_untouched(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    stage = tmp_path / "runs/tiny_dense/cpt"
    (stage / "checkpoints").mkdir(parents=True)
    files = {stage / "config.yaml": "model: {}\n", stage / "metrics.jsonl": '{"step": 1}\n',
             stage / "checkpoints/latest_checkpointed_iteration.txt": "1\n"}
    for path, text in files.items():
        path.write_text(text)
    assert main(["cpt", "model=tiny_dense", "train.global_batch_size=0"]) == 2
    assert "train.global_batch_size=0 must be >= 1" in capsys.readouterr().err
    assert {p: p.read_text() for p in files} == files
    assert sorted(p.name for p in stage.iterdir()) == ["checkpoints", "config.yaml",
                                                       "metrics.jsonl"]


def test_values_at_the_bounds_compose() -> None:
    recipe = compose("sft", ["train.train_steps=0", "optim.min_lr=0", "optim.warmup_steps=0",
                             "checkpoint.save_interval=0", "optim.clip_grad=0"])
    assert recipe.train.train_steps == 0 and recipe.optim.min_lr == 0.0
    assert compose("rl", ["rollout.top_k=-1", "rollout.top_p=1"]).rollout.top_p == 1.0


REFUSED = [  # settings a stage or backend cannot honour
    ("cpt", ["train.train_steps=0"], "train.train_steps=0 must be >= 1 for CPT",
     "set train.train_steps to the steps to train"),
    ("cpt", ["optim.min_lr=1e-3"], "optim.min_lr=0.001 is above optim.lr=1.5e-05",
     "set optim.min_lr <= optim.lr"),
    ("sft", ["train.eval_interval=10"], "train.eval_interval=10: SFT has no validation split",
     "set train.eval_interval=0"),
    ("rl", ["model=tiny_dense", "loss.advantage_estimator=gspo"],
     "loss.advantage_estimator=gspo: the local backend implements grpo only",
     "set loss.advantage_estimator=grpo or backend=slime"),
    ("rl", ["model=tiny_dense", "loss.normalize_advantages=true"],
     "loss.normalize_advantages=true: the local backend does not whiten",
     "set loss.normalize_advantages=false or backend=slime"),
    ("rl", ["model=tiny_dense", "evaluation.temperature=0"],
     "evaluation.temperature=0.0: the local backend samples evaluations",
     "set evaluation.temperature > 0 or backend=slime"),
]


@pytest.mark.parametrize(("command", "overrides", "what", "fix"), REFUSED)
def test_settings_that_cannot_be_honoured_are_refused(command, overrides, what, fix,
                                                      capsys) -> None:
    assert main([command, "--dry-run", *overrides]) == 2
    err = capsys.readouterr().err
    assert what in err and fix in err, err


def test_slime_takes_the_options_the_local_backend_refuses() -> None:
    recipe = compose("rl", ["model=qwen3_8b", "loss.advantage_estimator=gspo",
                            "loss.normalize_advantages=true"])
    assert recipe.loss.advantage_estimator.value == "gspo"
    with pytest.raises(RecipeError, match="local backend implements grpo only"):
        compose("rl", ["model=qwen3_8b", "backend=local", "loss.advantage_estimator=gspo"])
