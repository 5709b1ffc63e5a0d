"""Make megatron-core (0.15-0.19) run on a CPU-only torch build with the gloo backend.

megatron-core assumes CUDA in a handful of places. On a machine without CUDA, `apply()` patches
exactly those places and nothing else; on a GPU machine it only applies the two fixes that
concern a missing Transformer Engine / Apex (they are bugs or gaps there too). Every patch is a
named function below that states the megatron-core site it covers, and
`tests/mcore/test_cpu_runtime.py` exercises each one, so an upgrade that moves a site fails there
rather than deep inside a training run. Each patch also declares the megatron-core versions it
was written for (`@applies_to`); `apply()` refuses another installed version with a message that
names the patch, instead of patching a site that may have moved.

    from swallow_train.mcore import cpu_runtime
    cpu_runtime.apply()          # before building models or seeding megatron's RNG tracker
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import torch
from packaging.version import Version
from torch.overrides import TorchFunctionMode

from swallow_train.mcore.versions import TESTED, applies_to, require_megatron_core

_APPLIED: list[str] = []
def needs_cpu_runtime() -> bool:
    return not torch.cuda.is_available()


def _have_te() -> bool:
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        return False
    return True


# ---- patches needed only without CUDA ---------------------------------------------------------


@applies_to(TESTED)
def patch_current_device() -> None:
    """`torch.cuda.current_device()` is used as an allocation device (global memory buffer of
    DotProductAttention, RoPE's `inv_freq.to(...)`, DDP buffers): resolve it to the CPU."""
    torch.cuda.current_device = lambda: torch.device("cpu")


@applies_to(TESTED)
def patch_rng_tracker() -> None:
    """`tensor_parallel.random` keeps per-parallel-group CUDA generator states
    (`model_parallel_cuda_manual_seed`, `get_cuda_rng_tracker().fork()`): back them with the
    CPU generator. Forking still isolates streams: the tracker swaps the whole state in and out."""
    from megatron.core.tensor_parallel import random as mrandom

    def get_state(*_args: object, **_kwargs: object) -> torch.Tensor:
        return torch.get_rng_state()

    def set_state(new_state: torch.Tensor, *_args: object, **_kwargs: object) -> None:
        torch.set_rng_state(new_state)

    mrandom._get_cuda_rng_state = get_state
    mrandom._set_cuda_rng_state = set_state
    torch.cuda.get_rng_state = get_state
    torch.cuda.set_rng_state = set_state
    def seed(value: int) -> None:  # not torch.manual_seed: that calls cuda.manual_seed_all
        torch.default_generator.manual_seed(int(value))

    torch.cuda.manual_seed = seed
    torch.cuda.manual_seed_all = seed
    # Both "CUDA" and CPU states are the CPU generator here; its "CPU RNG state changed" warning
    # is expected and says nothing.
    logging.getLogger(mrandom.__name__).setLevel(logging.ERROR)


class _NullEvent:
    def record(self, *_a: object, **_k: object) -> None: ...
    def wait(self, *_a: object, **_k: object) -> None: ...
    def synchronize(self) -> None: ...
    def query(self) -> bool:
        return True


class _NullStream:
    def __init__(self, *_a: object, **_k: object) -> None: ...
    def wait_stream(self, *_a: object, **_k: object) -> None: ...
    def wait_event(self, *_a: object, **_k: object) -> None: ...
    def record_event(self, *_a: object, **_k: object) -> _NullEvent:
        return _NullEvent()
    def synchronize(self) -> None: ...
    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NullStream)
    def __hash__(self) -> int:
        return 0


@applies_to(TESTED)
def patch_streams() -> None:
    """The MoE alltoall dispatcher and the DDP/optimizer overlap code create CUDA streams and
    events for device-to-host copies; on CPU every operation is already synchronous."""
    default = _NullStream()
    torch.cuda.Stream = _NullStream  # type: ignore[misc,assignment]
    torch.cuda.Event = _NullEvent  # type: ignore[misc,assignment]
    torch.cuda.current_stream = lambda *_a, **_k: default
    torch.cuda.default_stream = lambda *_a, **_k: default
    torch.cuda.stream = lambda *_a, **_k: contextlib.nullcontext()
    torch.cuda.synchronize = lambda *_a, **_k: None


@applies_to(TESTED)
def patch_alltoall_split_sizes() -> None:
    """`maybe_move_tensor_to_cpu(t, as_numpy=True)` only converts CUDA tensors, so with EP>1 the
    alltoall split sizes stay tensors and gloo's `all_to_all_single` rejects them."""
    from megatron.core.transformer.moe import moe_utils, token_dispatcher

    def maybe_move_tensor_to_cpu(
        tensor: torch.Tensor, as_numpy: bool = False, record_stream: bool = False
    ) -> object:
        if torch.is_tensor(tensor) and as_numpy:
            return tensor.detach().cpu().numpy()
        return tensor

    moe_utils.maybe_move_tensor_to_cpu = maybe_move_tensor_to_cpu
    token_dispatcher.maybe_move_tensor_to_cpu = maybe_move_tensor_to_cpu


@applies_to(TESTED)
def patch_torch_norm_sequence_parallel() -> None:
    """The local (non-TE) spec's `WrappedTorchNorm` refuses sequence parallelism. A torch norm is
    correct under SP as long as its weight grads are all-reduced over TP, which
    `finalize_model_grads` does for parameters tagged `sequence_parallel`."""
    from megatron.core.transformer import torch_norm

    def new(cls: type, config: object, hidden_size: int, eps: float = 1e-5, **_kw: object):
        norms = {"LayerNorm": torch.nn.LayerNorm, "RMSNorm": torch.nn.RMSNorm}
        norm = norms[config.normalization](normalized_shape=hidden_size, eps=eps)
        for param in norm.parameters():
            param.sequence_parallel = config.sequence_parallel
        return norm

    torch_norm.WrappedTorchNorm.__new__ = new


def _is_cuda(device: object) -> bool:
    if isinstance(device, str):
        return device.startswith("cuda")
    if isinstance(device, torch.device):
        return device.type == "cuda"
    return False


class CudaToCpuMode(TorchFunctionMode):
    """Rewrites explicit requests for CUDA memory (`device="cuda"`, `.cuda()`, `.to("cuda")`) to
    the CPU, and makes `Tensor.type()` name the CUDA type that megatron's optimizers assert
    (`clip_grads`, `DistributedOptimizer`). Calls that do not ask for CUDA pass through."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return name if ".cuda." in name else name.replace("torch.", "torch.cuda.", 1)
        if _is_cuda(kwargs.get("device")):
            kwargs = {**kwargs, "device": "cpu"}
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda(args[1]):
            args = (args[0], "cpu", *args[2:])
        return func(*args, **kwargs)


_MODE: CudaToCpuMode | None = None


@applies_to(TESTED)
def patch_cuda_factory_calls() -> None:
    """Literal `device="cuda"` in the schedules (`total_num_tokens`), DDP buffers, grad scaler,
    clip_grads, the default causal mask and dist-checkpoint exchange; `.type()` checks."""
    global _MODE
    if _MODE is None:
        _MODE = CudaToCpuMode()
        _MODE.__enter__()


# ---- patches needed whenever Transformer Engine / Apex are absent -----------------------------


@applies_to(">=0.16.1,<0.20")
def patch_router_gemm_without_te() -> None:
    """moe_utils references `te_general_gemm` in the router even when the TE import failed
    (NameError in 0.16.1 - 0.19.2)."""
    from megatron.core.transformer.moe import moe_utils

    if not hasattr(moe_utils, "te_general_gemm"):
        moe_utils.te_general_gemm = None


@applies_to(TESTED)
def patch_distopt_torch_adam_step() -> None:
    """Two gaps of DistributedOptimizer's checkpoint load with torch's AdamW (used without
    TE/Apex FusedAdam), which keeps a per-param `step` that megatron stores per param group:
    (1) `_set_main_param_and_optimizer_states` copies every state key from the checkpoint and
    fails with KeyError 'step' (fully_reshardable), or copies the stale local `step` that
    dp_reshardable passes as a non-persistent object; (2) `load_state_dict` gives every param
    the *same* `step` tensor, so after one update the shared counter has advanced once per
    param and Adam's bias correction is wrong from the second step after a resume (resume is
    then not exact)."""
    from megatron.core.optimizer import distrib_optimizer

    cls = distrib_optimizer.DistributedOptimizer
    set_states_original = cls._set_main_param_and_optimizer_states
    load_original = cls.load_state_dict

    def set_states(self, model_param, tensors):  # type: ignore[no-untyped-def]
        if self.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8:
            return set_states_original(self, model_param, tensors)
        group_index, group_order = self.model_param_group_index_map[model_param]
        group = self.optimizer.param_groups[group_index]
        main_param = group["params"][group_order]
        state = self.optimizer.state[main_param]
        targets = {"param": main_param, **state}
        with torch.no_grad():
            for key, dst in targets.items():
                # `step` comes from the checkpoint's param_groups (set by load_state_dict before
                # this); dp_reshardable hands over the *local* pre-load step here instead
                if key in tensors and key != "step":
                    dst.copy_(tensors[key])
        return None

    def load_state_dict(self, state_dict):  # type: ignore[no-untyped-def]
        load_original(self, state_dict)
        for state in self.optimizer.state.values():
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].detach().clone()

    cls._set_main_param_and_optimizer_states = set_states
    cls.load_state_dict = load_state_dict


@applies_to(TESTED)
def quiet_cuda_stream_advice() -> None:
    """With sequence parallelism megatron advises CUDA_DEVICE_MAX_CONNECTIONS=1 on every layer
    it builds: a CUDA stream setting, meaningless on CPU (the cluster job scripts set it)."""
    import warnings

    warnings.filterwarnings("ignore", message=r"When using sequence parallelism it is "
                            r"recommended to set the environment variable CUDA_DEVICE_MAX")


CPU_PATCHES: tuple[Callable[[], None], ...] = (
    patch_current_device,
    patch_rng_tracker,
    patch_streams,
    patch_alltoall_split_sizes,
    patch_torch_norm_sequence_parallel,
    patch_cuda_factory_calls,
    quiet_cuda_stream_advice,
)
NO_TE_PATCHES: tuple[Callable[[], None], ...] = (
    patch_router_gemm_without_te,
    patch_distopt_torch_adam_step,
)


def apply() -> list[str]:
    """Apply what this machine needs (idempotent); return the names of the patches applied."""
    if _APPLIED:
        return list(_APPLIED)
    patches: list[Callable[[], None]] = []
    if not _have_te():
        patches += NO_TE_PATCHES
    if needs_cpu_runtime():
        patches += CPU_PATCHES
    check_versions(patches)
    for patch in patches:
        patch()
        _APPLIED.append(patch.__name__)
    return list(_APPLIED)


def check_versions(patches: list[Callable[[], None]] | tuple[Callable[[], None], ...],
                   installed: Version | None = None) -> None:
    """MegatronVersionError naming the first patch whose declared range excludes `installed`
    (default: the installed megatron-core), before any patch is applied."""
    for patch in patches:
        require_megatron_core(f"cpu_runtime.{patch.__name__}",
                              getattr(patch, "megatron_core", "<undeclared>"), installed)
