"""The command line: one thin entry per stage, dry runs, clear errors, a frozen surface."""

from __future__ import annotations

import pytest

from swallow_train.cli import COMMANDS, main


def test_command_surface_is_frozen() -> None:
    """New commands are a design decision: update this list (and the README) on purpose."""
    assert sorted(COMMANDS) == ["cpt", "doctor", "eval", "export", "launch", "pipeline", "prepare",
                                "prepare-rl", "prepare-sft", "quantize", "rl", "serve", "sft"]


def test_help_lists_every_command(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_dry_run_prints_resolved_recipe_and_layout(capsys) -> None:
    assert main(["cpt", "--dry-run", "model=qwen3_30b_a3b", "cluster=abci3",
                 "cluster.nodes=16"]) == 0
    out = capsys.readouterr().out
    assert "lr: 2.5e-05" in out and "num_experts: 128" in out and "queue: rt_HF" in out
    assert "# parallel layout: world 128 = TP1 x PP1 x CP2 x DP64 | EP8 ETP1" in out


def test_print_config_is_the_same_as_dry_run(capsys) -> None:
    main(["sft", "--dry-run", "model=qwen3_32b", "cluster=abci3", "cluster.nodes=8"])
    dry = capsys.readouterr().out
    assert main(["print-config", "sft", "model=qwen3_32b", "cluster=abci3",
                 "cluster.nodes=8"]) == 0
    assert capsys.readouterr().out == dry


@pytest.mark.parametrize(("args", "message"), [
    (["cpt", "--dry-run", "model.hiden_size=3"], "Key 'hiden_size' not in 'ModelConfig'"),
    (["cpt", "--dry-run", "model=qwen3_8b", "cluster=abci3", "cluster.nodes=3"],
     "global_batch_size=256 is not divisible by micro_batch_size x DP = 1 x 12"),
    (["cpt", "--dry-run"], "world size 1 (cluster.nodes x cluster.gpus_per_node) is not "
                           "divisible by TP x PP x CP = 2 x 1 x 1"),
])
def test_errors_exit_2_with_the_field(capsys, args, message) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_unknown_command(capsys) -> None:
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err
