"""One override syntax (swallow_train/overrides.py) and the stage registry it scopes by
(swallow_train/registry.py): `key=value` for every stage, `<stage>.key=value` for one.

    .venv/bin/python -m pytest tests/test_overrides.py -q
"""

from __future__ import annotations

import importlib

import pytest

from swallow_train import config, registry
from swallow_train.cli import COMMANDS, main
from swallow_train.launch.templating import TEMPLATES
from swallow_train.overrides import (
    OverrideError,
    check_claimed,
    for_command,
    for_stage,
    merge,
    parse,
    parse_one,
)


def test_a_stage_prefix_scopes_and_hydra_prefixes_survive():
    assert parse_one("cpt.optim.lr=1e-5").hydra == "optim.lr=1e-5"
    assert parse_one("cpt.optim.lr=1e-5").stage == "cpt"
    assert parse_one("+sft.logging.x=1").hydra == "+logging.x=1"
    assert parse_one("~eval.init.hf").hydra == "~init.hf"
    assert parse_one("~eval.init.hf").stage == "eval"
    # not a stage: `eval_suite` is a key of its own, `cpt=` has nothing after the prefix
    assert parse_one("eval_suite.tasks=[a]").stage is None
    assert parse_one("stages=[cpt,sft]").stage is None
    assert parse_one("every_stage=['a=b']").hydra == "every_stage=['a=b']"


@pytest.mark.parametrize(("arg", "needle"), [
    ("qwen3_8b", "expected key=value, got 'qwen3_8b'"),
    ("--submit", "unknown option '--submit'"),
    ("a b=1", "expected key=value"),
    ("+++a=1", "expected key=value"),
])
def test_malformed_arguments_name_themselves(arg, needle):
    with pytest.raises(OverrideError, match=None) as err:
        parse_one(arg)
    assert needle in str(err.value)


def test_the_same_key_twice_is_refused_but_a_stage_may_replace_the_common_one():
    with pytest.raises(OverrideError, match=r"cpt\.optim\.lr is given twice \(also "
                                            r"'cpt\.optim\.lr=1'\)"):
        parse(["cpt.optim.lr=1", "cpt.optim.lr=2"])
    items = parse(["optim.lr=1", "sft.optim.lr=2", "model=qwen3_8b", "~init.hf"])
    assert for_stage(items, "cpt") == ["optim.lr=1", "model=qwen3_8b", "~init.hf"]
    assert for_stage(items, "sft") == ["model=qwen3_8b", "~init.hf", "optim.lr=2"]
    assert merge(["a=1", "+b=2", "c=3"], ["b=4"], ["~c"]) == ["a=1", "b=4", "~c"]


def test_an_unscoped_key_reaches_only_the_stages_that_have_its_section():
    items = parse(["data.prepared_dir=/p", "logging.wandb_mode=online", "eval_suite=tiny"])
    assert for_stage(items, "eval", recipe="eval") == ["logging.wandb_mode=online",
                                                      "eval_suite=tiny"]
    assert for_stage(items, "cpt", recipe="cpt") == ["data.prepared_dir=/p",
                                                    "logging.wandb_mode=online"]
    check_claimed(items, ["cpt", "eval"])
    with pytest.raises(OverrideError, match=r"optmi\.lr=1: no stage here has a section optmi; "
                                            r"check the spelling"):
        check_claimed(parse(["optmi.lr=1"]), ["cpt", "sft"])


def test_a_stage_command_takes_its_own_prefix_and_refuses_another():
    assert for_command("cpt", "cpt", ["optim.lr=1", "cpt.optim.lr=2"]) == ["optim.lr=2"]
    assert for_command("prepare", "cpt", ["cpt.data.num_workers=2"]) == ["data.num_workers=2"]
    with pytest.raises(OverrideError) as err:
        for_command("cpt", "cpt", ["sft.optim.lr=1"])
    message = str(err.value)
    assert "sft.optim.lr=1: the prefix sft. sets stage sft" in message
    assert "give optim.lr=... without the prefix" in message  # the fix


def test_the_cli_prints_the_refusal_without_a_traceback(capsys):
    assert main(["cpt", "--dry-run", "rl.rollout.num_rollout=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("swallow-train cpt: error: rl.rollout.num_rollout=3: the prefix rl.")
    assert "Traceback" not in err


def test_every_table_derives_from_the_registry():
    assert registry.recipes() == config.RECIPES
    for name, stage in registry.STAGES.items():
        assert COMMANDS[name].entry == stage.entry and COMMANDS[name].help == stage.help
        module, _, attr = stage.entry.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), stage.entry
        if stage.schema:
            assert config.recipe_class(name).__name__ == stage.schema.partition(":")[2]
        assert stage.recipe_name in config.RECIPES, name
        assert stage.template is None or (TEMPLATES / stage.template).is_file(), name
        assert stage.after is None or stage.after in registry.chain(), name
    assert registry.chain() == ("cpt", "sft", "rl", "quantize")
    assert registry.prepares() == {"prepare": "cpt", "prepare-sft": "sft", "prepare-rl": "rl"}
    assert COMMANDS["pipeline"].recipe is None  # a driver reads its own arguments
