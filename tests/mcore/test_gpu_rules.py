"""Rules that only a GPU run would otherwise reveal: TE is required with CUDA, every parameter
is on the GPU before wrapping, and the deterministic default depends on the device."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from swallow_train.mcore import model as model_mod
from swallow_train.mcore.config import TrainConfig


def test_cuda_without_transformer_engine_stops_and_names_the_package(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "transformer_engine" else real(name, *a))
    with pytest.raises(model_mod.TransformerEngineMissing) as err:
        model_mod.use_transformer_engine()
    assert "transformer-engine" in str(err.value) and "install" in str(err.value)


def test_cpu_uses_the_local_spec() -> None:
    if torch.cuda.is_available():
        pytest.skip("CPU rule")
    assert model_mod.use_transformer_engine() is False


def test_deterministic_defaults_on_for_cpu_off_for_gpu() -> None:
    cfg = TrainConfig(global_batch_size=1, seq_length=8, train_steps=1)
    assert cfg.resolved_deterministic(cuda=False) is True
    assert cfg.resolved_deterministic(cuda=True) is False
    forced = TrainConfig(global_batch_size=1, seq_length=8, train_steps=1, deterministic=True)
    assert forced.resolved_deterministic(cuda=True) is True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_parameter_is_on_the_gpu_before_wrapping() -> None:
    """MoE (router built on the host) with the distributed optimizer off."""
    from swallow_train.config import compose
    from swallow_train.mcore import distributed
    from swallow_train.mcore.config import Precision

    recipe = compose("cpt", ["model=tiny_moe", "parallel.distributed_optimizer=false"])
    layout = recipe.layout()
    distributed.init_parallel_state(layout, seed=1)
    config = model_mod.transformer_config(recipe.model, recipe.parallel, layout,
                                          precision=Precision.bf16)
    chunks = model_mod.build_model(recipe.model, config)
    where = {p.device.type for c in chunks for p in c.parameters()}
    where |= {b.device.type for c in chunks for b in c.buffers()}
    assert where == {"cuda"}
