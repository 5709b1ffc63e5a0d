"""Checkpoint faults: a full disk in the background writer, a corrupt latest checkpoint (the
complete fix, and `checkpoint.fallback`), and metrics sinks on a full disk. The previous
checkpoint and its marker survive each of them."""

from __future__ import annotations

import errno
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from swallow_train.checkpoint_files import MARKER, CheckpointError, verify_checksums

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU runtime only")


@pytest.fixture(scope="module")
def trained():
    """A tiny MoE-free model, optimizer and scheduler after one step, in this process."""
    from swallow_train.mcore import cpu_runtime

    with cpu_runtime.active():  # CPU: megatron's CUDA calls to the CPU, for this module
        yield _trained()


def _trained():
    from swallow_train.config import compose
    from swallow_train.mcore import distributed
    from swallow_train.mcore.model import build_model, transformer_config
    from swallow_train.mcore.optim import build_optimizer, wrap_for_training
    from swallow_train.mcore.step import train_step
    from swallow_train.models.config import ModelConfig
    from swallow_train.parallel import ParallelConfig, validate_layout

    model = ModelConfig(name="t", hidden_size=32, num_layers=1, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=8, ffn_hidden_size=64, vocab_size=128)
    layout = validate_layout(model, ParallelConfig(), world_size=1, global_batch_size=2,
                             micro_batch_size=2, seq_length=16)
    distributed.init_parallel_state(layout, seed=7)
    recipe = compose("cpt", ["model=tiny_dense"])
    config = transformer_config(model, recipe.parallel, layout, precision=recipe.train.precision)
    chunks = wrap_for_training(build_model(model, config), config, recipe.parallel)
    optimizer, scheduler = build_optimizer(chunks, config, recipe.optim, recipe.parallel,
                                           train_steps=10)
    ids = torch.randint(0, 128, (2, 16))
    train_step(chunks, optimizer, scheduler, [{
        "tokens": ids, "labels": ids, "loss_mask": torch.ones(2, 16),
        "position_ids": torch.arange(16)[None].expand(2, -1)}])
    return chunks, optimizer, scheduler, layout


def _checkpointer(root: Path, **cfg):
    from swallow_train.mcore.checkpoint import MegatronCheckpointer
    from swallow_train.mcore.config import CheckpointConfig

    return MegatronCheckpointer(root, CheckpointConfig(save_interval=1, keep_last=5, **cfg))


def _save(ckpt, trained, step: int, **kw) -> None:
    from swallow_train.mcore.checkpoint import TrainState

    chunks, optimizer, scheduler, layout = trained
    ckpt.save(chunks, optimizer, scheduler, TrainState(step=step, layout=asdict(layout)), **kw)


def test_async_save_publishes_only_after_the_files_are_written(trained, tmp_path) -> None:
    ckpt = _checkpointer(tmp_path)
    _save(ckpt, trained, 1)  # async: may still be writing
    ckpt.wait()
    assert ckpt.latest_step() == 1
    verify_checksums(tmp_path / "iter_0000001")
    assert not list(tmp_path.glob(".tmp_*"))


def test_full_disk_in_the_background_writer(trained, tmp_path, monkeypatch) -> None:
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    ckpt = _checkpointer(tmp_path)
    _save(ckpt, trained, 1, blocking=True)
    marker = (tmp_path / MARKER).read_text()

    def no_space(*args, **kwargs):  # a tensor write in megatron's forked writer process
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(filesystem_async, "_write_item", no_space)
    _save(ckpt, trained, 2)  # async: the failure surfaces when the save is finalised
    with pytest.raises(CheckpointError) as err:
        ckpt.wait()
    message = str(err.value)
    assert "step 2" in message and "No space left on device" in message
    assert "previous checkpoint (step 1) and its marker are intact" in message
    assert "needs up to" in message and "free" in message and "rerun" in message
    assert not (tmp_path / ".tmp_iter_0000002").exists()
    assert (tmp_path / MARKER).read_text() == marker
    verify_checksums(tmp_path / "iter_0000001")


def _corrupt(path: Path) -> Path:
    victim = max((p for p in path.iterdir() if p.suffix == ".distcp"),
                 key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    return victim


def test_a_corrupt_latest_checkpoint_gives_the_complete_fix(trained, tmp_path) -> None:
    chunks, optimizer, scheduler, layout = trained
    ckpt = _checkpointer(tmp_path)
    _save(ckpt, trained, 1, blocking=True)
    _save(ckpt, trained, 2, blocking=True)
    victim = _corrupt(tmp_path / "iter_0000002")
    with pytest.raises(CheckpointError) as err:
        ckpt.load(chunks, optimizer, scheduler, layout)
    message = str(err.value)
    assert f"{victim}: checksum mismatch" in message
    assert "checkpoint.fallback=true" in message
    assert f"rm -r {tmp_path / 'iter_0000002'} && echo 1 > {tmp_path / MARKER}" in message


def test_fallback_resumes_from_the_newest_checkpoint_that_verifies(trained, tmp_path,
                                                                    capsys) -> None:
    chunks, optimizer, scheduler, layout = trained
    ckpt = _checkpointer(tmp_path, fallback=True)
    for step in (1, 2, 3):
        _save(ckpt, trained, step, blocking=True)
    _corrupt(tmp_path / "iter_0000003")
    _corrupt(tmp_path / "iter_0000002")
    state = ckpt.load(chunks, optimizer, scheduler, layout)
    assert state.step == 1
    assert (tmp_path / MARKER).read_text().strip() == "1"
    assert sorted(p.name for p in tmp_path.glob(".corrupt_iter_*")) == [
        ".corrupt_iter_0000002", ".corrupt_iter_0000003"]
    assert ckpt.dir.steps() == [1]
    assert "RESUMING FROM OLDER CHECKPOINT step 1" in capsys.readouterr().out


def test_a_periodic_checkpoint_refuses_another_model_parallel_layout(trained, tmp_path) -> None:
    """dp_reshardable optimizer state is tied to TP/PP/CP/EP: refused with the way out, before
    any tensor is read (tests/mcore/test_training.py reloads a fully_reshardable one at TP1)."""
    from dataclasses import replace

    chunks, optimizer, scheduler, layout = trained
    ckpt = _checkpointer(tmp_path)
    _save(ckpt, trained, 1, blocking=True)
    with pytest.raises(CheckpointError) as err:
        ckpt.load(chunks, optimizer, scheduler, replace(layout, tp=2))
    assert "dp_reshardable" in str(err.value) and "tp 1 -> 2" in str(err.value)
    assert "checkpoint.optim_format=fully_reshardable" in str(err.value)
    _save(ckpt, trained, 2, final=True)  # the final save of a stage: loads anywhere
    from megatron.core import dist_checkpointing

    meta = dist_checkpointing.load_content_metadata(str(tmp_path / "iter_0000002"))
    assert meta["distrib_optim_sharding_type"] == "fully_reshardable"


def test_metrics_sinks_survive_a_full_disk(tmp_path, monkeypatch, capsys) -> None:
    from swallow_train.metrics import logger as logger_mod
    from swallow_train.metrics.config import LoggingConfig, WandbMode

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    log = logger_mod.MetricsLogger(tmp_path, LoggingConfig(wandb_mode=WandbMode.disabled,
                                                           plot_interval=1),
                                   stage="cpt", run_name="t")
    log.log(1, {"loss": 2.0})
    monkeypatch.setattr(logger_mod, "plot_curves", no_space)
    monkeypatch.setattr(log, "_append", no_space)
    log.log(2, {"loss": 1.0})
    log.log(3, {"loss": 0.5})
    log.close()
    err = capsys.readouterr().err
    assert err.count("metrics log") == 1 and err.count("plot") == 1
    assert "No space left on device" in err
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": 2.0}\n'
