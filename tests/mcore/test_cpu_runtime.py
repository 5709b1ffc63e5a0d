"""Every patch of swallow_train.mcore.cpu_runtime, exercised through the megatron-core code it
exists for. A megatron-core upgrade that moves one of these sites fails here."""

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

    applied = cpu_runtime.apply()
    model = ModelConfig(name="t", hidden_size=32, num_layers=1, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=8, ffn_hidden_size=64, vocab_size=128,
                        num_experts=4, moe_router_topk=2, moe_ffn_hidden_size=16)
    layout = validate_layout(model, ParallelConfig(), world_size=1, global_batch_size=2,
                             micro_batch_size=2, seq_length=16)
    distributed.init_parallel_state(layout, seed=7)
    return applied, model, layout


def test_all_patches_are_applied_without_cuda_and_te(runtime) -> None:
    from swallow_train.mcore import cpu_runtime

    applied, *_ = runtime
    expected = [p.__name__ for p in cpu_runtime.NO_TE_PATCHES + cpu_runtime.CPU_PATCHES]
    assert applied == expected


def test_current_device_and_rope(runtime) -> None:
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

    assert torch.cuda.current_device() == torch.device("cpu")
    rope = RotaryEmbedding(kv_channels=8, rotary_percent=1.0, rotary_base=10000)
    emb = rope(16)  # megatron moves inv_freq to torch.cuda.current_device()
    assert emb.shape == (16, 1, 1, 8) and emb.device.type == "cpu"
    # position 0 has zero angle; position 1, frequency 0 has angle 1 radian
    assert emb[0].abs().max().item() == 0.0
    assert emb[1, 0, 0, 0].item() == pytest.approx(1.0)


def test_rng_tracker_forks_an_independent_reproducible_stream(runtime) -> None:
    from megatron.core import tensor_parallel

    tracker = tensor_parallel.get_cuda_rng_tracker()
    torch.manual_seed(123)
    default_before = torch.get_rng_state()
    with tracker.fork():
        a = torch.rand(4)
    assert torch.equal(torch.get_rng_state(), default_before)  # default stream untouched
    with tracker.fork():
        b = torch.rand(4)
    assert not torch.equal(a, b)  # the forked stream advanced
    tensor_parallel.model_parallel_cuda_manual_seed(7)
    with tracker.fork():
        c = torch.rand(4)
    tensor_parallel.model_parallel_cuda_manual_seed(7)
    with tracker.fork():
        d = torch.rand(4)
    assert torch.equal(c, d)


def test_cuda_factory_calls_and_type_names(runtime) -> None:
    from megatron.core.transformer.utils import get_default_causal_mask

    t = torch.zeros(3, device="cuda")
    assert t.device.type == "cpu"
    assert t.cuda() is t
    assert t.to("cuda").device.type == "cpu"
    assert t.type() == "torch.cuda.FloatTensor"  # what megatron's optimizers assert
    mask = get_default_causal_mask(4)
    assert mask.tolist() == [[False, True, True, True], [False, False, True, True],
                             [False, False, False, True], [False, False, False, False]]


def test_streams_are_synchronous_no_ops(runtime) -> None:
    stream = torch.cuda.Stream()
    event = stream.record_event()
    event.synchronize()
    with torch.cuda.stream(stream):
        x = torch.ones(2) + 1
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    assert x.tolist() == [2.0, 2.0]


def test_alltoall_split_sizes_become_numpy(runtime) -> None:
    from megatron.core.transformer.moe import moe_utils, token_dispatcher

    out = token_dispatcher.maybe_move_tensor_to_cpu(torch.tensor([1, 2]), as_numpy=True)
    assert out.tolist() == [1, 2] and type(out).__module__ == "numpy"
    assert moe_utils.maybe_move_tensor_to_cpu is token_dispatcher.maybe_move_tensor_to_cpu


def test_torch_norm_accepts_sequence_parallel(runtime) -> None:
    from megatron.core.transformer.torch_norm import WrappedTorchNorm
    from megatron.core.transformer.transformer_config import TransformerConfig

    cfg = TransformerConfig(num_layers=1, hidden_size=32, num_attention_heads=4,
                            normalization="RMSNorm", sequence_parallel=True,
                            tensor_model_parallel_size=2, use_cpu_initialization=True)
    norm = WrappedTorchNorm(cfg, 32, eps=1e-6)
    assert isinstance(norm, torch.nn.RMSNorm)
    assert all(p.sequence_parallel for p in norm.parameters())


def test_moe_router_runs_without_te(runtime) -> None:
    from megatron.core.transformer.moe import moe_utils

    from swallow_train.mcore.config import Precision
    from swallow_train.mcore.model import build_model, transformer_config
    from swallow_train.parallel import ParallelConfig

    _, model, layout = runtime
    assert moe_utils.te_general_gemm is None
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


def test_distributed_optimizer_load_gives_each_param_its_own_step(runtime, tmp_path) -> None:
    """Resume exactness hinges on this: a shared `step` tensor advances once per parameter."""
    from swallow_train.config import compose
    from swallow_train.mcore.checkpoint import MegatronCheckpointer, TrainState
    from swallow_train.mcore.config import CheckpointConfig
    from swallow_train.mcore.model import build_model, transformer_config
    from swallow_train.mcore.optim import build_optimizer, wrap_for_training

    _, model, layout = runtime
    recipe = compose("cpt", ["model=tiny_dense"])

    def make():
        config = transformer_config(model, recipe.parallel, layout,
                                    precision=recipe.train.precision)
        chunks = wrap_for_training(build_model(model, config), config, recipe.parallel)
        return (chunks, *build_optimizer(chunks, config, recipe.optim, recipe.parallel,
                                         train_steps=10))

    chunks, optimizer, scheduler = make()
    ids = torch.randint(0, 128, (2, 16))
    batch = {"tokens": ids, "labels": ids, "loss_mask": torch.ones(2, 16),
             "position_ids": torch.arange(16)[None].expand(2, -1)}
    from swallow_train.mcore.step import train_step

    for _ in range(2):
        train_step(chunks, optimizer, scheduler, [batch])
    ckpt = MegatronCheckpointer(tmp_path, CheckpointConfig(save_interval=1, keep_last=1))
    ckpt.save(chunks, optimizer, scheduler, TrainState(step=2, layout=asdict(layout)),
              blocking=True)
    chunks2, optimizer2, scheduler2 = make()
    ckpt.load(chunks2, optimizer2, scheduler2, layout)
    steps = [s["step"] for opt in optimizer2.chained_optimizers
             for s in opt.optimizer.state.values()]
    assert len({id(s) for s in steps}) == len(steps)
    assert [float(s) for s in steps] == [2.0] * len(steps)


def test_failed_megatron_save_keeps_the_previous_checkpoint(runtime, tmp_path, monkeypatch):
    """A full disk during dist_checkpointing.save: CheckpointError, old checkpoint untouched."""
    import errno

    from megatron.core import dist_checkpointing
    from torch.distributed.checkpoint.api import CheckpointException

    from swallow_train.checkpoint_files import CheckpointError, verify_checksums
    from swallow_train.config import compose
    from swallow_train.mcore import checkpoint as mckpt
    from swallow_train.mcore.checkpoint import MegatronCheckpointer, TrainState
    from swallow_train.mcore.config import CheckpointConfig
    from swallow_train.mcore.model import build_model, transformer_config
    from swallow_train.mcore.optim import build_optimizer, wrap_for_training

    _, model, layout = runtime
    recipe = compose("cpt", ["model=tiny_dense"])
    config = transformer_config(model, recipe.parallel, layout, precision=recipe.train.precision)
    chunks = wrap_for_training(build_model(model, config), config, recipe.parallel)
    optimizer, scheduler = build_optimizer(chunks, config, recipe.optim, recipe.parallel,
                                           train_steps=10)
    from swallow_train.mcore.step import train_step

    ids = torch.randint(0, 128, (2, 16))
    train_step(chunks, optimizer, scheduler, [{
        "tokens": ids, "labels": ids, "loss_mask": torch.ones(2, 16),
        "position_ids": torch.arange(16)[None].expand(2, -1)}])
    ckpt = MegatronCheckpointer(tmp_path, CheckpointConfig(save_interval=1, keep_last=3))
    ckpt.save(chunks, optimizer, scheduler, TrainState(step=1), blocking=True)

    def disk_full(state, path, *args, **kw):
        (tmp_path / ".tmp_iter_0000002" / "__0_0.distcp").write_bytes(b"partial")
        # what torch_dist raises: a CheckpointException, which is a BaseException
        raise CheckpointException("write", {0: OSError(errno.ENOSPC, "No space left on device")})

    monkeypatch.setattr(dist_checkpointing, "save", disk_full)
    assert mckpt.dist_checkpointing is dist_checkpointing
    with pytest.raises(CheckpointError, match=r"step 2 .*No space left.*step 1\) and its marker "
                                              r"are intact.*needs up to \d+\.\d GB.* free"):
        ckpt.save(chunks, optimizer, scheduler, TrainState(step=2), blocking=True)
    assert ckpt.latest_step() == 1
    assert not (tmp_path / ".tmp_iter_0000002").exists()
    verify_checksums(tmp_path / "iter_0000001")


def test_every_patch_declares_the_megatron_core_versions_it_was_written_for() -> None:
    from swallow_train.mcore import cpu_runtime

    patches = cpu_runtime.NO_TE_PATCHES + cpu_runtime.CPU_PATCHES
    assert [p.__name__ for p in patches if not hasattr(p, "megatron_core")] == []
    cpu_runtime.check_versions(patches)  # the installed megatron-core is in every range


def test_a_megatron_core_outside_a_patch_range_is_refused_naming_the_patch() -> None:
    from packaging.version import Version

    from swallow_train.mcore import cpu_runtime
    from swallow_train.mcore.versions import MegatronVersionError, require_megatron_core

    with pytest.raises(MegatronVersionError,
                       match=r"cpu_runtime.patch_current_device replaces megatron-core internals "
                             r"of versions >=0.15,<0.20, but megatron-core 0.20.0 is installed: "
                             r"check whether that site still needs it"):
        cpu_runtime.check_versions(cpu_runtime.CPU_PATCHES, Version("0.20.0"))
    with pytest.raises(MegatronVersionError, match=r"patch_router_gemm_without_te .* 0.16.0 is"):
        cpu_runtime.check_versions(cpu_runtime.NO_TE_PATCHES, Version("0.16.0"))
    with pytest.raises(MegatronVersionError, match=r"x declares no megatron-core range"):
        require_megatron_core("x", "<undeclared>", Version("0.16.1"))


def test_writer_queue_swap_is_gated_too(monkeypatch) -> None:
    from packaging.version import Version

    from swallow_train.mcore import checkpoint_state, versions

    monkeypatch.setattr(checkpoint_state, "_WRITERS_TIED", False)
    monkeypatch.setattr(versions, "megatron_core_version", lambda: Version("0.21.0"))
    with pytest.raises(versions.MegatronVersionError,
                       match=r"checkpoint_state.tie_writers_to_this_process .* 0.21.0 is"):
        checkpoint_state.tie_writers_to_this_process()
