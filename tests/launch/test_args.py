"""`swallow-train launch` arguments: strict parsing into LaunchConfig and the recipe overrides."""

from __future__ import annotations

import pytest

from swallow_train.cluster import LaunchError
from swallow_train.launch.args import parse


def test_launch_keys_map_to_cluster_overrides_in_one_place():
    launch = parse(["stage=cpt", "cluster=abci3", "nodes=16", "group=g1", "queue=rt_HF",
                    "walltime=48:00:00", "model=qwen3_8b", "optim.lr=1e-5", "submit=true"])
    assert launch.stages == ["cpt"]
    assert launch.submit is True and launch.dry_run is False
    assert launch.recipe_overrides("cpt") == [
        "cluster=abci3", "cluster.nodes=16", "cluster.queue=rt_HF", "cluster.group=g1",
        "cluster.walltime=48:00:00", "model=qwen3_8b", "optim.lr=1e-5",
    ]


def test_chain_with_stage_scoped_keys_and_overrides():
    launch = parse(["stage=chain", "cluster=tsubame4", "nodes=32", "sft.nodes=16",
                    "rl.nodes=4", "group=g", "model=qwen3_8b", "cpt.train.train_steps=10",
                    "sft.model=qwen3_32b", "--dry-run"])
    assert launch.stages == ["cpt", "sft", "rl", "quantize", "eval"]
    assert launch.dry_run
    assert launch.recipe_overrides("cpt") == [
        "cluster=tsubame4", "cluster.nodes=32", "cluster.group=g", "model=qwen3_8b",
        "train.train_steps=10"]
    # the stage's own value replaces the common one (Hydra takes one value per key)
    assert launch.recipe_overrides("sft") == [
        "cluster=tsubame4", "cluster.nodes=16", "cluster.group=g", "model=qwen3_32b"]
    assert launch.recipe_overrides("rl")[:3] == ["cluster=tsubame4", "cluster.nodes=4",
                                                  "cluster.group=g"]


def test_stage_lists_and_hydra_prefixes():
    launch = parse(["stage=sft,rl", "cluster=slurm", "+logging.extra=1", "~init.hf",
                    "+sft.foo=2"])
    assert launch.stages == ["sft", "rl"]
    assert launch.overrides == ["+logging.extra=1", "~init.hf"]
    assert launch.stage_overrides == {"sft": ["+foo=2"]}
    assert launch.recipe_overrides("rl") == ["cluster=slurm", "+logging.extra=1", "~init.hf"]


def test_cluster_fields_are_the_same_as_the_launch_keys():
    """One override syntax: `cluster.nodes=16` (as a stage command takes it) is `nodes=16`."""
    launch = parse(["stage=chain", "cluster=abci3", "cluster.nodes=16", "sft.cluster.nodes=8",
                    "cluster.group=g1", "rl.walltime=02:00:00"])
    short = parse(["stage=chain", "cluster=abci3", "nodes=16", "sft.nodes=8", "group=g1",
                   "rl.cluster.walltime=02:00:00"])
    for stage in ("cpt", "sft", "rl"):
        assert launch.recipe_overrides(stage) == short.recipe_overrides(stage)
    assert launch.recipe_overrides("sft") == ["cluster=abci3", "cluster.nodes=8",
                                              "cluster.group=g1"]
    assert launch.recipe_overrides("rl") == ["cluster=abci3", "cluster.nodes=16",
                                             "cluster.group=g1", "cluster.walltime=02:00:00"]


def test_a_stage_value_replaces_the_common_one_only_there():
    launch = parse(["stage=cpt,sft", "cluster=slurm", "optim.lr=1e-5", "sft.optim.lr=5e-6",
                    "~init.hf", "+cpt.logging.x=1"])
    assert launch.recipe_overrides("cpt") == ["cluster=slurm", "optim.lr=1e-5", "~init.hf",
                                              "+logging.x=1"]
    assert launch.recipe_overrides("sft") == ["cluster=slurm", "~init.hf", "optim.lr=5e-6"]


@pytest.mark.parametrize(("argv", "needle"), [
    (["cluster=abci3"], "missing stage="),
    (["stage=cpt"], "missing cluster="),
    (["stage=pretrain", "cluster=abci3"], "unknown stage 'pretrain'"),
    (["stage=sft,cpt", "cluster=abci3"], "in the order prepare,cpt,prepare-sft,sft,prepare-rl,rl,"
                                         "quantize,eval"),
    (["stage=cpt,cpt", "cluster=abci3"], "in the order prepare,cpt,prepare-sft"),
    (["stage=chain", "cluster=abci3", "eval.nodes=2"], "the eval job runs on 1 node"),
    (["stage=cpt", "cluster=abci3", "optmi.lr=1"], "no stage here has a section optmi"),
    (["stage=cpt", "cluster=abci3", "nodes=0"], "nodes must be a whole number >= 1"),
    (["stage=cpt", "cluster=abci3", "nodes=two"], "nodes must be a whole number >= 1"),
    (["stage=cpt", "cluster=abci3", "submit=yes"], "must be true or false"),
    (["stage=cpt", "cluster=abci3", "walltime=3h"], "is not HH:MM:SS"),
    (["stage=cpt", "cluster=abci3", "cluster.nodes=4", "nodes=4"], "nodes is given twice"),
    (["stage=cpt", "cluster=abci3", "cpt.cluster.group=g", "cpt.group=h"], "group is given twice"),
    (["stage=cpt", "cluster=abci3", "nodes=2", "nodes=4"], "given twice"),
    (["stage=cpt", "cluster=abci3", "optim.lr=1", "optim.lr=2"], "optim.lr is given twice"),
    (["stage=cpt", "cluster=abci3", "+cluster.nodes=2"], "takes no Hydra prefix"),
    (["stage=cpt", "cluster=abci3", "--submit"], "unknown option '--submit'"),
    (["stage=cpt", "cluster=abci3", "qwen3_8b"], "expected key=value"),
    (["stage=cpt", "cluster=abci3", "sft.nodes=2"], "sft.* arguments name a stage"),
    (["stage=cpt", "cluster=abci3", "cpt.submit=true"], "applies to the whole launch"),
    (["stage=cpt", "cluster=abci3", "+nodes=2"], "takes no Hydra prefix"),
    (["stage=cpt", "cluster=abci3", "group=a b"], "must not contain spaces"),
])
def test_bad_arguments_fail_clearly(argv, needle):
    with pytest.raises(LaunchError, match=None) as info:
        parse(argv)
    assert needle in str(info.value)
