"""The CPU runtime on the training path: a megatron step needs `cpu_runtime.active()` (the mode
is scoped to it), the MoE router runs without TE, and the DistributedOptimizer load patch is
what makes a resume exact (without it the load fails). Table: cpu_patches.PATCHES.

    .venv/bin/python -m pytest tests/mcore/test_cpu_runtime_training.py -q
"""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU runtime only")


@pytest.fixture(scope="module")
def runtime():
    from swallow_train.mcore import cpu_runtime, distributed
    from swallow_train.models.config import ModelConfig
    from swallow_train.parallel import ParallelConfig, validate_layout

    model = ModelConfig(name="t", hidden_size=32, num_layers=1, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=8, ffn_hidden_size=64, vocab_size=128,
                        num_experts=4, moe_router_topk=2, moe_ffn_hidden_size=16)
    layout = validate_layout(model, ParallelConfig(), world_size=1, global_batch_size=2,
                             micro_batch_size=2, seq_length=16)
    distributed.init_parallel_state(layout, seed=7)
    return cpu_runtime, model, layout


def _batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(0, 128, (2, 16))
    return {"tokens": ids, "labels": ids, "loss_mask": torch.ones(2, 16),
            "position_ids": torch.arange(16)[None].expand(2, -1)}


def _trainable(model, layout):
    from swallow_train.config import compose
    from swallow_train.mcore.model import build_model, transformer_config
    from swallow_train.mcore.optim import build_optimizer, wrap_for_training

    recipe = compose("cpt", ["model=tiny_dense"])
    config = transformer_config(model, recipe.parallel, layout, precision=recipe.train.precision)
    chunks = wrap_for_training(build_model(model, config), config, recipe.parallel)
    return (chunks, *build_optimizer(chunks, config, recipe.optim, recipe.parallel,
                                     train_steps=10))


def test_moe_router_runs_without_te(runtime) -> None:
    from megatron.core.transformer.moe import moe_utils

    from swallow_train.mcore.config import Precision
    from swallow_train.mcore.model import build_model, transformer_config
    from swallow_train.parallel import ParallelConfig

    cpu_runtime, model, layout = runtime
    assert moe_utils.te_general_gemm is None
    with cpu_runtime.active():
        config = transformer_config(model, ParallelConfig(), layout, precision=Precision.fp32)
        gpt = build_model(model, config)[0]
        ids = torch.randint(0, 128, (2, 16))
        loss = gpt(ids, torch.arange(16)[None].expand(2, -1), None, labels=ids)
        loss.mean().backward()
    router = gpt.decoder.layers[0].mlp.router.weight
    assert router.grad is not None and router.grad.abs().sum() > 0
    # A bare backward (outside megatron's schedules) initialises this global as a 0-d tensor;
    # the schedules set it as shape [1]. Reset it so later tests start clean.
    moe_utils.MoEAuxLossAutoScaler.main_loss_backward_scale = None


def test_a_step_needs_the_mode_and_the_mode_ends_with_the_block(runtime) -> None:
    from swallow_train.mcore.step import train_step

    cpu_runtime, model, layout = runtime
    with cpu_runtime.active():
        chunks, optimizer, scheduler = _trainable(model, layout)
        param = next(chunks[0].parameters())
        assert param.type() == "torch.cuda.FloatTensor"
    assert param.type() == "torch.FloatTensor"  # no process-wide lie about CPU tensors
    batch = _batch()
    with pytest.raises(AssertionError, match="Torch not compiled with CUDA enabled"):
        train_step(chunks, optimizer, scheduler, [batch])  # schedules: device="cuda"
    with cpu_runtime.active():
        result = train_step(chunks, optimizer, scheduler, [batch])
    assert result.loss > 0 and result.grad_norm is not None and result.grad_norm > 0


def _steps(optimizer) -> list[torch.Tensor]:
    return [s["step"] for opt in optimizer.chained_optimizers for s in opt.optimizer.state.values()]


def test_distributed_optimizer_load_needs_the_step_patch_and_gives_each_param_its_own_step(
        runtime, tmp_path) -> None:
    """Resume exactness hinges on this: a shared `step` tensor advances once per parameter."""
    from swallow_train.mcore.checkpoint import MegatronCheckpointer, TrainState
    from swallow_train.mcore.config import CheckpointConfig
    from swallow_train.mcore.step import train_step

    cpu_runtime, model, layout = runtime
    with cpu_runtime.active():
        chunks, optimizer, scheduler = _trainable(model, layout)
        for _ in range(2):
            train_step(chunks, optimizer, scheduler, [_batch()])
        ckpt = MegatronCheckpointer(tmp_path, CheckpointConfig(save_interval=1, keep_last=2))
        ckpt.save(chunks, optimizer, scheduler, TrainState(step=2, layout=asdict(layout)),
                  blocking=True)  # a periodic save: dp_reshardable
        with cpu_runtime.suspended("distopt_torch_adam_step"):
            chunks2, optimizer2, scheduler2 = _trainable(model, layout)
            ckpt.load(chunks2, optimizer2, scheduler2, layout)
            assert len({id(s) for s in _steps(optimizer2)}) == 1  # one counter for all
        chunks2, optimizer2, scheduler2 = _trainable(model, layout)
        assert ckpt.load(chunks2, optimizer2, scheduler2, layout).step == 2
        steps = _steps(optimizer2)
        assert len({id(s) for s in steps}) == len(steps) > 1
        assert [float(s) for s in steps] == [2.0] * len(steps)
        ckpt.save(chunks, optimizer, scheduler, TrainState(step=3, layout=asdict(layout)),
                  final=True)  # fully_reshardable
        with cpu_runtime.suspended("distopt_torch_adam_step"), pytest.raises(KeyError,
                                                                              match="step"):
            ckpt.load(*_trainable(model, layout), layout)
        chunks3, optimizer3, scheduler3 = _trainable(model, layout)
        assert ckpt.load(chunks3, optimizer3, scheduler3, layout).step == 3
    assert [float(s) for s in _steps(optimizer3)] == [2.0] * len(steps)


def test_failed_megatron_save_keeps_the_previous_checkpoint(runtime, tmp_path, monkeypatch):
    """A full disk during dist_checkpointing.save: CheckpointError, old checkpoint untouched."""
    import errno

    from megatron.core import dist_checkpointing
    from torch.distributed.checkpoint.api import CheckpointException

    from swallow_train.checkpoint_files import CheckpointError, verify_checksums
    from swallow_train.mcore import checkpoint as mckpt
    from swallow_train.mcore.checkpoint import MegatronCheckpointer, TrainState
    from swallow_train.mcore.config import CheckpointConfig
    from swallow_train.mcore.step import train_step

    cpu_runtime, model, layout = runtime
    with cpu_runtime.active():
        chunks, optimizer, scheduler = _trainable(model, layout)
        train_step(chunks, optimizer, scheduler, [_batch()])
        ckpt = MegatronCheckpointer(tmp_path, CheckpointConfig(save_interval=1, keep_last=3))
        ckpt.save(chunks, optimizer, scheduler, TrainState(step=1), blocking=True)

        def disk_full(state, path, *args, **kw):
            (tmp_path / ".tmp_iter_0000002" / "__0_0.distcp").write_bytes(b"partial")
            # what torch_dist raises: a CheckpointException, which is a BaseException
            raise CheckpointException("write", {0: OSError(errno.ENOSPC,
                                                           "No space left on device")})

        monkeypatch.setattr(dist_checkpointing, "save", disk_full)
        assert mckpt.dist_checkpointing is dist_checkpointing
        with pytest.raises(CheckpointError, match=r"step 2 .*No space left.*step 1\) and its "
                                                  r"marker are intact.*needs up to \d+\.\d GB"
                                                  r".* free"):
            ckpt.save(chunks, optimizer, scheduler, TrainState(step=2), blocking=True)
    assert ckpt.latest_step() == 1
    assert not (tmp_path / ".tmp_iter_0000002").exists()
    verify_checksums(tmp_path / "iter_0000001")
