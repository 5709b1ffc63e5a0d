"""Every patch of swallow_train.mcore.cpu_runtime (table: cpu_patches.PATCHES): the megatron-core
call it exists for fails WITHOUT it (`cpu_runtime.suspended`) and works with it, so both an
upgrade that moves a site and a patch that is no longer needed fail here. Also: the version gate
and the scope of the CUDA-to-CPU mode. The training-path patches: test_cpu_runtime_training.py.

    .venv/bin/python -m pytest tests/mcore/test_cpu_runtime.py -q
"""

from __future__ import annotations

import warnings

import pytest
import torch

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU runtime only")
NO_CUDA = r"Torch not compiled with CUDA enabled"


@pytest.fixture(scope="module")
def runtime():
    from swallow_train.mcore import cpu_runtime, distributed
    from swallow_train.models.config import ModelConfig
    from swallow_train.parallel import ParallelConfig, validate_layout

    model = ModelConfig(name="t", hidden_size=32, num_layers=1, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=8, ffn_hidden_size=64, vocab_size=128)
    layout = validate_layout(model, ParallelConfig(), world_size=1, global_batch_size=2,
                             micro_batch_size=2, seq_length=16)
    distributed.init_parallel_state(layout, seed=7)  # installs the process-scope patches
    return cpu_runtime


def test_every_patch_without_cuda_and_te_is_installed_and_replaces_its_targets(runtime) -> None:
    from swallow_train.mcore.cpu_patches import PATCHES, Scope, resolve

    process = [p for p in PATCHES if p.scope is Scope.process]
    assert sorted(runtime.install()) == sorted(p.name for p in process)
    assert [p.name for p in PATCHES if p.scope is Scope.active] == ["cuda_to_cpu_mode"]
    missing = object()
    for patch in process:
        attrs = [t for t in patch.targets if ":" in t]
        now = [getattr(*resolve(t), missing) for t in attrs]
        with runtime.suspended(patch.name):
            before = [getattr(*resolve(t), missing) for t in attrs]
        assert all(a is not b for a, b in zip(now, before, strict=True)), patch.name
        after = [getattr(*resolve(t), missing) for t in attrs]  # installed again
        assert all(a is not b for a, b in zip(after, before, strict=True)), patch.name


def test_mode_only_inside_active(runtime) -> None:
    from megatron.core.transformer.utils import get_default_causal_mask

    t = torch.zeros(3)
    with pytest.raises(AssertionError, match=NO_CUDA):  # the site: literal device="cuda"
        get_default_causal_mask(4)
    assert t.type() == "torch.FloatTensor" and not runtime.is_active()
    with runtime.active():
        with runtime.active():  # re-entrant: the inner exit keeps the mode
            pass
        assert runtime.is_active() and "cuda_to_cpu_mode" in runtime.installed()
        assert torch.zeros(3, device="cuda").device.type == "cpu"
        assert t.cuda() is t and t.to("cuda").device.type == "cpu"
        assert t.type() == "torch.cuda.FloatTensor"  # what megatron's optimizers assert
        mask = get_default_causal_mask(4)
        with runtime.suspended("cuda_to_cpu_mode"), pytest.raises(AssertionError,
                                                                   match=NO_CUDA):
            get_default_causal_mask(4)
        assert t.type() == "torch.cuda.FloatTensor"  # back after the suspension
    assert mask.tolist() == [[False, True, True, True], [False, False, True, True],
                             [False, False, False, True], [False, False, False, False]]
    assert t.type() == "torch.FloatTensor" and "cuda_to_cpu_mode" not in runtime.installed()
    with pytest.raises(RuntimeError, match="boom"), runtime.active():
        raise RuntimeError("boom")
    assert t.type() == "torch.FloatTensor"  # left on an exception too


def test_current_device_is_cpu(runtime) -> None:
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

    def rope() -> torch.Tensor:  # megatron moves inv_freq to torch.cuda.current_device()
        return RotaryEmbedding(kv_channels=8, rotary_percent=1.0, rotary_base=10000)(16)

    with runtime.suspended("current_device_is_cpu"), pytest.raises(AssertionError,
                                                                    match=NO_CUDA):
        rope()
    emb = rope()
    assert emb.shape == (16, 1, 1, 8) and emb.device.type == "cpu"
    # position 0 has zero angle; position 1, frequency 0 has angle 1 radian
    assert emb[0].abs().max().item() == 0.0
    assert emb[1, 0, 0, 0].item() == pytest.approx(1.0)


def test_rng_tracker_forks_an_independent_reproducible_stream(runtime) -> None:
    from megatron.core import tensor_parallel

    tracker = tensor_parallel.get_cuda_rng_tracker()
    with runtime.suspended("rng_tracker_on_cpu_generator"):
        with pytest.raises(AssertionError, match=NO_CUDA):
            tensor_parallel.model_parallel_cuda_manual_seed(7)
        with pytest.raises(Exception, match="model-parallel-rng is not added"):
            tracker.fork().__enter__()
    tensor_parallel.model_parallel_cuda_manual_seed(7)
    torch.manual_seed(123)
    default_before = torch.get_rng_state()
    with tracker.fork():
        a = torch.rand(4)
    assert torch.equal(torch.get_rng_state(), default_before)  # default stream untouched
    with tracker.fork():
        b = torch.rand(4)
    assert not torch.equal(a, b)  # the forked stream advanced
    results = []
    for _ in range(2):
        tensor_parallel.model_parallel_cuda_manual_seed(7)
        with tracker.fork():
            results.append(torch.rand(4))
    assert torch.equal(*results)


def test_alltoall_dispatcher_streams_are_synchronous_no_ops(runtime) -> None:
    from megatron.core.process_groups_config import ProcessGroupCollection
    from megatron.core.transformer.moe.token_dispatcher import MoEAlltoAllTokenDispatcher
    from megatron.core.transformer.transformer_config import TransformerConfig

    cfg = TransformerConfig(num_layers=1, hidden_size=32, num_attention_heads=4,
                            num_moe_experts=4, moe_router_topk=2, moe_ffn_hidden_size=16,
                            moe_token_dispatcher_type="alltoall", use_cpu_initialization=True)
    groups = ProcessGroupCollection.use_mpu_process_groups()

    def dispatcher() -> MoEAlltoAllTokenDispatcher:
        MoEAlltoAllTokenDispatcher.cuda_dtoh_stream = None  # a class-level cache
        return MoEAlltoAllTokenDispatcher(4, [0, 1, 2, 3], cfg, pg_collection=groups)

    with runtime.suspended("null_cuda_streams"), pytest.raises(RuntimeError, match="CUDA"):
        dispatcher()
    stream = dispatcher().cuda_dtoh_stream
    with torch.cuda.stream(stream):
        x = torch.ones(2) + 1
    torch.cuda.current_stream().wait_stream(stream)
    stream.record_event().synchronize()
    torch.cuda.synchronize()
    assert x.tolist() == [2.0, 2.0]


def test_alltoall_split_sizes_become_numpy(runtime) -> None:
    from megatron.core.transformer.moe import moe_utils, token_dispatcher

    with runtime.suspended("alltoall_split_sizes_numpy"):  # gloo rejects the tensor
        out = token_dispatcher.maybe_move_tensor_to_cpu(torch.tensor([1, 2]), as_numpy=True)
        assert torch.is_tensor(out)
    out = token_dispatcher.maybe_move_tensor_to_cpu(torch.tensor([1, 2]), as_numpy=True)
    assert out.tolist() == [1, 2] and type(out).__module__ == "numpy"
    assert moe_utils.maybe_move_tensor_to_cpu is token_dispatcher.maybe_move_tensor_to_cpu


def _sp_config():
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(num_layers=1, hidden_size=32, num_attention_heads=4,
                             normalization="RMSNorm", sequence_parallel=True,
                             tensor_model_parallel_size=2, use_cpu_initialization=True)


def test_torch_norm_accepts_sequence_parallel(runtime) -> None:
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    with runtime.suspended("torch_norm_sequence_parallel"), pytest.raises(
            AssertionError, match="sequence parallel not supported by torch LayerNorm"):
        WrappedTorchNorm(_sp_config(), 32, eps=1e-6)
    norm = WrappedTorchNorm(_sp_config(), 32, eps=1e-6)
    assert isinstance(norm, torch.nn.RMSNorm)
    assert all(p.sequence_parallel for p in norm.parameters())


def test_cuda_stream_advice_is_quiet(runtime, monkeypatch) -> None:
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import layers

    from swallow_train.mcore.cpu_patches import BY_NAME

    monkeypatch.delenv("CUDA_DEVICE_MAX_CONNECTIONS", raising=False)
    linear = layers.linear_with_grad_accumulation_and_async_allreduce

    def advice(quiet: bool) -> list[str]:
        monkeypatch.setattr(linear, "warned", False)  # megatron warns once per process
        with warnings.catch_warnings(record=True) as seen:  # filters restored on exit
            warnings.simplefilter("always")  # what a user sees, pytest's filters aside
            if quiet:
                BY_NAME["quiet_cuda_stream_advice"].install()
            out = linear(torch.ones(4, 1, 8), torch.ones(8, 8), None,
                         gradient_accumulation_fusion=False, allreduce_dgrad=False,
                         sequence_parallel=True,
                         tp_group=parallel_state.get_tensor_model_parallel_group())
        assert out.tolist() == [[[8.0] * 8]] * 4
        return [str(w.message) for w in seen if "CUDA_DEVICE_MAX" in str(w.message)]

    assert [m[:48] for m in advice(quiet=False)] == [
        "When using sequence parallelism it is recommende"]
    assert advice(quiet=True) == []


def test_router_gemm_without_te(runtime) -> None:
    from megatron.core.transformer.moe import moe_utils

    def route() -> torch.Tensor:
        return moe_utils.router_gating_linear(torch.ones(2, 4), torch.ones(3, 4), None,
                                              torch.float32)

    with runtime.suspended("router_gemm_without_te"), pytest.raises(
            NameError, match="te_general_gemm"):
        route()
    assert route().tolist() == [[4.0] * 3] * 2


def test_every_patch_declares_versions_and_the_installed_one_is_in_them(runtime) -> None:
    from packaging.specifiers import SpecifierSet

    from swallow_train.mcore.cpu_patches import PATCHES
    from swallow_train.mcore.versions import megatron_core_version

    assert all(p.versions and p.why and p.targets for p in PATCHES)
    assert [p.name for p in PATCHES if megatron_core_version() not in SpecifierSet(p.versions)
            ] == []
    runtime.check_versions(PATCHES)


def test_a_megatron_core_outside_a_patch_range_is_refused_naming_patch_version_and_fix(
        runtime, monkeypatch) -> None:
    from packaging.version import Version

    from swallow_train.mcore import cpu_patches, versions
    from swallow_train.mcore.versions import MegatronVersionError

    with pytest.raises(MegatronVersionError,
                       match=r"cpu_patches.py patch 'current_device_is_cpu' replaces megatron-"
                             r"core internals of versions >=0.15,<0.20, but megatron-core "
                             r"0.20.0 is installed: check whether that site still needs it"):
        runtime.check_versions([cpu_patches.BY_NAME["current_device_is_cpu"]],
                               Version("0.20.0"))
    with pytest.raises(MegatronVersionError, match=r"'router_gemm_without_te' .* 0.16.0 is"):
        runtime.check_versions(cpu_patches.PATCHES, Version("0.16.0"))
    # install() checks before it patches anything: nothing changes
    monkeypatch.setattr(versions, "megatron_core_version", lambda: Version("0.21.0"))
    before = runtime.installed()
    with pytest.raises(MegatronVersionError, match=r"0.21.0 is installed.*constraints.txt"):
        runtime.install()
    assert runtime.installed() == before
    with pytest.raises(MegatronVersionError, match=r"x declares no megatron-core range"):
        versions.require_megatron_core("x", "<undeclared>", Version("0.16.1"))


def test_writer_queue_swap_is_gated_too(monkeypatch) -> None:
    from packaging.version import Version

    from swallow_train.mcore import checkpoint_state, versions

    monkeypatch.setattr(checkpoint_state, "_WRITERS_TIED", False)
    monkeypatch.setattr(versions, "megatron_core_version", lambda: Version("0.21.0"))
    with pytest.raises(versions.MegatronVersionError,
                       match=r"checkpoint_state.tie_writers_to_this_process .* 0.21.0 is"):
        checkpoint_state.tie_writers_to_this_process()


def test_the_readme_table_lists_every_patch_with_its_versions() -> None:
    from pathlib import Path

    from swallow_train.mcore.cpu_patches import PATCHES

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in readme.splitlines()
            if line.startswith("| `")}
    assert [p.name for p in PATCHES if f"| {p.versions} |" not in rows.get(p.name, "")] == []
