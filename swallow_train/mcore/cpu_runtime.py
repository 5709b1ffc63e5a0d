"""Make megatron-core run on a CPU-only torch build with gloo, and without Transformer Engine.

megatron-core assumes CUDA (and TE) in a handful of places; `cpu_patches.PATCHES` declares one
patch per place: what it replaces, the megatron-core versions it was written for, and why. This
module installs what the machine needs: nothing CUDA-related on a GPU machine, the two TE gaps
wherever TE is absent. A megatron-core outside a patch's versions is refused before anything is
patched (`MegatronVersionError` naming the patch, the installed version and the fix).

Two scopes. Attribute replacements are installed once per process (`install()`, done by
`distributed.init_process_group`). The TorchFunctionMode that rewrites `device="cuda"` to the CPU
and makes `Tensor.type()` name CUDA types is entered only inside `active()`, around model build
and steps; outside it, tensors report their real type:

    from swallow_train.mcore import cpu_runtime
    with cpu_runtime.active():          # build the model, train, checkpoint, export
        ...
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator

import torch
from packaging.version import Version

from swallow_train.mcore.cpu_patches import BY_NAME, PATCHES, Need, Patch, Scope, Undo
from swallow_train.mcore.versions import require_megatron_core

_INSTALLED: dict[str, Undo] = {}
"""Process-scope patches installed in this process, in order, with their undo."""


class _ThreadState(threading.local):
    """torch keeps the TorchFunctionMode stack per thread, so `active()` counts per thread."""

    def __init__(self) -> None:
        self.depth = 0
        self.undo: dict[str, Undo] = {}


_THREAD = _ThreadState()


def needs_cpu_runtime() -> bool:
    return not torch.cuda.is_available()


def _have_te() -> bool:
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        return False
    return True


def needed() -> list[Patch]:
    """The patches this machine needs, in table order."""
    missing = set()
    if not _have_te():
        missing.add(Need.no_te)
    if needs_cpu_runtime():
        missing.add(Need.no_cuda)
    return [patch for patch in PATCHES if patch.need in missing]


def check_versions(patches: Iterable[Patch], installed: Version | None = None) -> None:
    """MegatronVersionError naming the first patch whose declared range excludes `installed`
    (default: the installed megatron-core), before any patch is applied."""
    for patch in patches:
        require_megatron_core(f"swallow_train/mcore/cpu_patches.py patch {patch.name!r}",
                              patch.versions, installed)


def install() -> list[str]:
    """Install the process-scope patches this machine needs (idempotent, version-checked first);
    return the names installed."""
    patches = needed()
    check_versions(patches)
    for patch in patches:
        if patch.scope is Scope.process and patch.name not in _INSTALLED:
            _INSTALLED[patch.name] = patch.install()
    return list(_INSTALLED)


@contextlib.contextmanager
def active() -> Iterator[None]:
    """`install()`, then the active-scope patches (the CUDA-to-CPU TorchFunctionMode) for the
    block. Re-entrant; a no-op scope on a CUDA machine. Per thread, as torch's mode stack."""
    install()
    entered: list[str] = []
    if _THREAD.depth == 0:
        for patch in needed():
            if patch.scope is Scope.active:
                _THREAD.undo[patch.name] = patch.install()
                entered.append(patch.name)
    _THREAD.depth += 1
    try:
        yield
    finally:
        _THREAD.depth -= 1
        for name in reversed(entered):
            undo = _THREAD.undo.pop(name, None)
            if undo is not None:  # None: suspended() holds it off right now
                undo()


def is_active() -> bool:
    return _THREAD.depth > 0


def installed() -> list[str]:
    """Names of the patches in force in this thread now."""
    return list(_INSTALLED) + list(_THREAD.undo)


@contextlib.contextmanager
def suspended(name: str) -> Iterator[None]:
    """Run the block without one patch that is in force (tests show the megatron-core failure
    it exists for: a patch no longer needed gets noticed), then put it back."""
    patch = BY_NAME[name]
    holder = _INSTALLED if patch.scope is Scope.process else _THREAD.undo
    if name not in holder:
        raise KeyError(f"patch {name!r} is not in force here (installed: {installed()})")
    holder.pop(name)()
    try:
        yield
    finally:
        if patch.scope is Scope.process or _THREAD.depth > 0:
            holder[name] = patch.install()
