"""Recipe composition: typed, strict, presets and per-size values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from swallow_train.cluster import ClusterConfig
from swallow_train.config import RecipeError, compose, recipes_dir
from swallow_train.mcore.config import DecayStyle
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import ParallelConfig


def test_misspelled_override_is_rejected_naming_the_key() -> None:
    with pytest.raises(RecipeError, match=r"model\.hiden_size[\s\S]*Key 'hiden_size' not in"):
        compose("cpt", ["model=tiny_dense", "model.hiden_size=128"])


def test_appending_an_unknown_key_is_rejected_too() -> None:
    with pytest.raises(RecipeError, match="hiden_size"):
        compose("cpt", ["model=tiny_dense", "+model.hiden_size=128"])


def test_wrong_type_is_rejected_naming_the_key() -> None:
    with pytest.raises(RecipeError,
                       match=r"could not be converted to Integer[\s\S]*train\.seq_length"):
        compose("cpt", ["model=tiny_dense", "train.seq_length=long"])


def test_enum_values_are_checked() -> None:
    with pytest.raises(RecipeError, match=r"optim\.decay_style"):
        compose("cpt", ["model=tiny_dense", "optim.decay_style=exponential"])
    recipe = compose("cpt", ["model=tiny_dense", "optim.decay_style=linear"])
    assert recipe.optim.decay_style is DecayStyle.linear


def test_missing_required_value_is_rejected_naming_the_key() -> None:
    with pytest.raises(RecipeError, match=r"missing mandatory value: lr[\s\S]*optim\.lr"):
        compose("cpt", ["model=tiny_dense", "optim.lr=???"])


def test_unknown_preset_is_rejected() -> None:
    with pytest.raises(RecipeError, match="qwen3_7b"):
        compose("cpt", ["model=qwen3_7b"])


@pytest.mark.parametrize(("model", "lr", "min_lr", "tp", "cp", "ep", "init"), [
    ("qwen3_8b", 1.5e-5, 1.5e-6, 2, 1, 1, "Qwen/Qwen3-8B-Base"),
    ("qwen3_30b_a3b", 2.5e-5, 2.5e-6, 1, 2, 8, "Qwen/Qwen3-30B-A3B-Base"),
    ("qwen3_32b", 1.0e-5, 1.0e-6, 4, 2, 1, "Qwen/Qwen3-32B"),
])
def test_cpt_recipe_holds_the_swallow_run_of_each_size(model, lr, min_lr, tp, cp, ep, init) -> None:
    r = compose("cpt", [f"model={model}", "cluster=abci3", "cluster.nodes=16"])
    assert (r.optim.lr, r.optim.min_lr, r.optim.warmup_steps) == (lr, min_lr, 1000)
    assert (r.parallel.tp, r.parallel.cp, r.parallel.ep) == (tp, cp, ep)
    assert r.parallel.sequence_parallel and r.parallel.distributed_optimizer
    assert (r.train.global_batch_size, r.train.seq_length, r.train.train_steps) == (
        256, 32768, 25000)
    assert r.train.global_batch_size * r.train.seq_length * r.train.train_steps == 209_715_200_000
    assert (r.optim.weight_decay, r.optim.adam_beta1, r.optim.adam_beta2, r.optim.adam_eps,
            r.optim.clip_grad) == (0.1, 0.9, 0.95, 1e-8, 1.0)
    assert r.init.hf == init
    r.layout()  # 16 ABCI nodes = 128 H200 fit every size


@pytest.mark.parametrize(("model", "lr", "min_lr"), [
    ("qwen3_8b", 1.5e-5, 1.5e-6), ("qwen3_30b_a3b", 1.5e-5, 1.5e-6), ("qwen3_32b", 1e-5, 1e-6)])
def test_sft_recipe_holds_the_swallow_run_of_each_size(model, lr, min_lr) -> None:
    r = compose("sft", [f"model={model}", "cluster=abci3", "cluster.nodes=8"])
    assert (r.optim.lr, r.optim.min_lr) == (lr, min_lr)
    assert (r.train.global_batch_size, r.train.seq_length, r.train.train_steps) == (64, 32768, 0)
    assert r.init.from_stage == "cpt"


def test_command_line_beats_the_size_file() -> None:
    r = compose("cpt", ["model=qwen3_8b", "parallel=tp4_cp2", "optim.lr=3e-5"])
    assert (r.parallel.tp, r.parallel.cp, r.optim.lr) == (4, 2, 3e-5)


def test_tiny_moe_reuses_tiny_dense_training_shape() -> None:
    dense, moe = compose("cpt", ["model=tiny_dense"]), compose("cpt", ["model=tiny_moe"])
    assert (dense.train, dense.optim, dense.data) == (moe.train, moe.optim, moe.data)
    assert moe.model.num_experts == 8 and dense.model.num_experts == 0


@pytest.mark.parametrize("stage", ["cpt", "sft", "rl"])
def test_a_stage_writes_under_its_model_unless_named(stage: str) -> None:
    # runs of two models never share (and resume from) one directory
    dirs = {m: compose(stage, [f"model={m}"]).run.stage_dir(stage)
            for m in ("qwen3_30b_a3b", "tiny_dense", "tiny_moe")}
    assert dirs == {m: Path("runs") / m / stage for m in dirs}
    named = compose(stage, ["model=tiny_moe", "run.name=swallow-moe", "run.root=/x"])
    assert named.run.stage_dir(stage) == Path("/x/swallow-moe") / stage


SCHEMAS = {"model": ModelConfig, "parallel": ParallelConfig, "cluster": ClusterConfig}


@pytest.mark.parametrize("group", sorted(SCHEMAS))
def test_every_preset_file_fits_its_schema(group: str) -> None:
    files = sorted((recipes_dir() / group).glob("*.yaml"))
    assert files, group
    for path in files:
        merged = OmegaConf.merge(OmegaConf.structured(SCHEMAS[group]),
                                 OmegaConf.load(path))
        if group == "parallel":  # every field has a default
            OmegaConf.to_object(merged)
        else:
            obj = OmegaConf.to_object(merged)
            assert obj.name == path.stem, path


def test_yaml_is_data_not_logic() -> None:
    """No interpolations, resolvers or instantiation targets in preset values."""
    for path in Path(recipes_dir()).rglob("*.yaml"):
        text = path.read_text()
        assert "_target_" not in text, path
        values = yaml.safe_load(text) or {}
        values.pop("defaults", None)  # preset selection may interpolate the model name
        for line in yaml.safe_dump(values).splitlines():
            assert "${" not in line, f"{path}: {line}"
