"""The declarative table of the patches that make megatron-core run without CUDA / Transformer
Engine: each `Patch` names what it replaces, the megatron-core versions it was written for and
why. `cpu_runtime.py` installs them; `tests/mcore/test_cpu_runtime*.py` shows, for each, the
failure of the megatron-core call WITHOUT it (so a patch that is no longer needed is noticed).

    python -c "from swallow_train.mcore.cpu_patches import PATCHES; print(*PATCHES, sep='\\n')"
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch

from swallow_train.mcore.cuda_to_cpu import CudaToCpuMode, NullEvent, NullStream
from swallow_train.mcore.versions import TESTED

Undo = Callable[[], None]
_MISSING = object()


class Need(Enum):
    no_cuda = "CPU-only torch"
    no_te = "no Transformer Engine"


class Scope(Enum):
    process = "process"
    """Installed once per process by `cpu_runtime.install()` (attribute replacements)."""
    active = "active"
    """Only while a `with cpu_runtime.active():` block runs (the TorchFunctionMode)."""


@dataclass(frozen=True, kw_only=True)
class Patch:
    name: str
    targets: tuple[str, ...]
    """What it replaces; `module:attribute.path` entries are resolvable (a test checks each)."""
    versions: str
    """PEP 440 range of megatron-core it was written for; another version is refused."""
    why: str
    need: Need
    install: Callable[[], Undo]
    """Applies the patch; returns what undoes it."""
    scope: Scope = Scope.process

    def __str__(self) -> str:
        return f"{self.name} [{self.versions}; {self.need.value}]: {', '.join(self.targets)}"


def resolve(target: str) -> tuple[Any, str]:
    """`module:a.b.c` -> (the object holding `c`, "c")."""
    module, _, path = target.partition(":")
    owner: Any = importlib.import_module(module)
    *parents, attr = path.split(".")
    for name in parents:
        owner = getattr(owner, name)
    return owner, attr


def swap(replacements: dict[str, Any]) -> Undo:
    """Set each `module:attribute` target; return what puts the originals back."""
    saved = []
    for target, new in replacements.items():
        owner, attr = resolve(target)
        saved.append((owner, attr, owner.__dict__.get(attr, _MISSING)))
        setattr(owner, attr, new)

    def undo() -> None:
        for owner, attr, old in reversed(saved):
            if old is _MISSING:
                delattr(owner, attr)
            else:
                setattr(owner, attr, old)
    return undo


# ---- needed only without CUDA -----------------------------------------------------------------


def _cpu_device() -> Undo:
    return swap({"torch.cuda:current_device": lambda: torch.device("cpu")})


def _rng_tracker() -> Undo:
    def get_state(*_args: object, **_kwargs: object) -> torch.Tensor:
        return torch.get_rng_state()

    def set_state(new_state: torch.Tensor, *_args: object, **_kwargs: object) -> None:
        torch.set_rng_state(new_state)

    def seed(value: int) -> None:  # not torch.manual_seed: that calls cuda.manual_seed_all
        torch.default_generator.manual_seed(int(value))

    random = "megatron.core.tensor_parallel.random"
    undo = swap({f"{random}:_get_cuda_rng_state": get_state,
                 f"{random}:_set_cuda_rng_state": set_state,
                 "torch.cuda:get_rng_state": get_state, "torch.cuda:set_rng_state": set_state,
                 "torch.cuda:manual_seed": seed, "torch.cuda:manual_seed_all": seed})
    # "CUDA" and CPU state are the same generator here: its "CPU RNG state changed" warning is
    # expected and says nothing
    logger = logging.getLogger(random)
    level = logger.level
    logger.setLevel(logging.ERROR)

    def undo_all() -> None:
        logger.setLevel(level)
        undo()
    return undo_all


def _streams() -> Undo:
    default = NullStream()
    return swap({"torch.cuda:Stream": NullStream, "torch.cuda:Event": NullEvent,
                 "torch.cuda:current_stream": lambda *_a, **_k: default,
                 "torch.cuda:default_stream": lambda *_a, **_k: default,
                 "torch.cuda:stream": lambda *_a, **_k: contextlib.nullcontext(),
                 "torch.cuda:synchronize": lambda *_a, **_k: None})


def _split_sizes_to_numpy() -> Undo:
    def maybe_move_tensor_to_cpu(tensor: torch.Tensor, as_numpy: bool = False,
                                 record_stream: bool = False) -> object:
        if torch.is_tensor(tensor) and as_numpy:
            return tensor.detach().cpu().numpy()
        return tensor

    moe = "megatron.core.transformer.moe"
    return swap({f"{moe}.moe_utils:maybe_move_tensor_to_cpu": maybe_move_tensor_to_cpu,
                 f"{moe}.token_dispatcher:maybe_move_tensor_to_cpu": maybe_move_tensor_to_cpu})


def _torch_norm_sp() -> Undo:
    def new(cls: type, config: Any, hidden_size: int, eps: float = 1e-5, **_kw: object):
        norms = {"LayerNorm": torch.nn.LayerNorm, "RMSNorm": torch.nn.RMSNorm}
        norm = norms[config.normalization](normalized_shape=hidden_size, eps=eps)
        for param in norm.parameters():
            param.sequence_parallel = config.sequence_parallel
        return norm

    return swap({"megatron.core.transformer.torch_norm:WrappedTorchNorm.__new__": new})


def _quiet_stream_advice() -> Undo:
    warnings.filterwarnings("ignore", message=r"When using sequence parallelism it is "
                            r"recommended to set the environment variable CUDA_DEVICE_MAX")
    entry = warnings.filters[0]

    def undo() -> None:
        if entry in warnings.filters:
            warnings.filters.remove(entry)
    return undo


def _cuda_to_cpu_mode() -> Undo:
    mode = CudaToCpuMode()
    mode.__enter__()
    return lambda: mode.__exit__(None, None, None)


# ---- needed whenever Transformer Engine / Apex are absent (GPU too) -------------------------


def _router_gemm() -> Undo:
    from megatron.core.transformer.moe import moe_utils

    if hasattr(moe_utils, "te_general_gemm"):
        return lambda: None
    return swap({"megatron.core.transformer.moe.moe_utils:te_general_gemm": None})


def _distopt_step() -> Undo:
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer as Cls

    set_states_original = Cls._set_main_param_and_optimizer_states
    load_original = Cls.load_state_dict

    def set_states(self, model_param, tensors):  # type: ignore[no-untyped-def]
        if self.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8:
            return set_states_original(self, model_param, tensors)
        group_index, group_order = self.model_param_group_index_map[model_param]
        main_param = self.optimizer.param_groups[group_index]["params"][group_order]
        targets = {"param": main_param, **self.optimizer.state[main_param]}
        with torch.no_grad():
            for key, dst in targets.items():
                # `step` comes from the checkpoint's param_groups (set by load_state_dict
                # before this); dp_reshardable hands over the *local* pre-load step here
                if key in tensors and key != "step":
                    dst.copy_(tensors[key])
        return None

    def load_state_dict(self, state_dict):  # type: ignore[no-untyped-def]
        load_original(self, state_dict)
        for state in self.optimizer.state.values():
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].detach().clone()

    cls = "megatron.core.optimizer.distrib_optimizer:DistributedOptimizer"
    return swap({f"{cls}._set_main_param_and_optimizer_states": set_states,
                 f"{cls}.load_state_dict": load_state_dict})


_RNG = "megatron.core.tensor_parallel.random"
_DISTOPT = "megatron.core.optimizer.distrib_optimizer:DistributedOptimizer"
PATCHES: tuple[Patch, ...] = (
    Patch(name="router_gemm_without_te", need=Need.no_te, versions=">=0.16.1,<0.20",
          targets=("megatron.core.transformer.moe.moe_utils:te_general_gemm",),
          why="the MoE router references te_general_gemm even when TE's import failed "
              "(NameError in RouterGatingLinearFunction, 0.16.1 - 0.19.2)",
          install=_router_gemm),
    Patch(name="distopt_torch_adam_step", need=Need.no_te, versions=TESTED,
          targets=(f"{_DISTOPT}._set_main_param_and_optimizer_states",
                   f"{_DISTOPT}.load_state_dict"),
          why="torch AdamW (no TE/Apex FusedAdam) keeps a per-param `step`: loading fails "
              "with KeyError 'step' (fully_reshardable) or copies the stale local step "
              "(dp_reshardable), and all params get one shared `step` tensor, so Adam's bias "
              "correction goes wrong from the 2nd step after a resume",
          install=_distopt_step),
    Patch(name="current_device_is_cpu", need=Need.no_cuda, versions=TESTED,
          targets=("torch.cuda:current_device",),
          why="used as an allocation device: RoPE's inv_freq.to(...), the attention's global "
              "memory buffer, DDP buffers",
          install=_cpu_device),
    Patch(name="rng_tracker_on_cpu_generator", need=Need.no_cuda, versions=TESTED,
          targets=(f"{_RNG}:_get_cuda_rng_state", f"{_RNG}:_set_cuda_rng_state",
                   "torch.cuda:get_rng_state", "torch.cuda:set_rng_state",
                   "torch.cuda:manual_seed", "torch.cuda:manual_seed_all"),
          why="model_parallel_cuda_manual_seed and the tracker's fork() (dropout, init) keep "
              "CUDA generator states; the CPU generator backs them, fork() still isolates",
          install=_rng_tracker),
    Patch(name="null_cuda_streams", need=Need.no_cuda, versions=TESTED,
          targets=tuple(f"torch.cuda:{n}" for n in ("Stream", "Event", "current_stream",
                                                     "default_stream", "stream",
                                                     "synchronize")),
          why="the MoE alltoall dispatcher and DDP's overlap create CUDA streams/events; on "
              "CPU every operation is already synchronous",
          install=_streams),
    Patch(name="alltoall_split_sizes_numpy", need=Need.no_cuda, versions=TESTED,
          targets=("megatron.core.transformer.moe.moe_utils:maybe_move_tensor_to_cpu",
                   "megatron.core.transformer.moe.token_dispatcher:maybe_move_tensor_to_cpu"),
          why="only CUDA tensors are converted, so with EP>1 the split sizes stay tensors and "
              "gloo's all_to_all_single rejects them",
          install=_split_sizes_to_numpy),
    Patch(name="torch_norm_sequence_parallel", need=Need.no_cuda, versions=TESTED,
          targets=("megatron.core.transformer.torch_norm:WrappedTorchNorm.__new__",),
          why="the local spec's WrappedTorchNorm refuses SP; a torch norm is correct under SP "
              "when its params are tagged sequence_parallel (finalize_model_grads all-reduces)",
          install=_torch_norm_sp),
    Patch(name="quiet_cuda_stream_advice", need=Need.no_cuda, versions=TESTED,
          targets=("warnings.filters (one message of tensor_parallel.layers)",),
          why="with SP megatron advises CUDA_DEVICE_MAX_CONNECTIONS=1 on every layer it "
              "builds: a CUDA stream setting (the cluster job scripts set it)",
          install=_quiet_stream_advice),
    Patch(name="cuda_to_cpu_mode", need=Need.no_cuda, versions=TESTED, scope=Scope.active,
          targets=("TorchFunctionMode: device='cuda', Tensor.cuda/.to('cuda'), Tensor.type()",),
          why="literal device='cuda' (schedules' total_num_tokens, DDP buffers, clip_grads, "
              "the default causal mask, dist-checkpoint exchange) and the optimizers' "
              "Tensor.type() == 'torch.cuda.FloatTensor' asserts; only inside active()",
          install=_cuda_to_cpu_mode),
)
BY_NAME = {patch.name: patch for patch in PATCHES}
