"""The megatron-core versions a patch of its internals was written for. Code here that replaces a
private megatron-core attribute (the rows of `cpu_patches.PATCHES`, `checkpoint_state.py`'s
writer queue) declares a PEP 440 range and fails loudly outside it, naming the patch and the fix,
instead of patching a site that may have moved or silently doing nothing.

    require_megatron_core("checkpoint_state.tie_writers_to_this_process", TESTED)
"""

from __future__ import annotations

from importlib import metadata

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from swallow_train.errors import SwallowError

TESTED = ">=0.15,<0.20"
"""The megatron-core versions the patches in swallow_train/mcore/ were written and tested for."""


class MegatronVersionError(SwallowError, RuntimeError):
    """A patch of megatron-core internals met a megatron-core it was not written for."""


def megatron_core_version() -> Version:
    return Version(metadata.version("megatron-core"))


def require_megatron_core(what: str, spec: str, installed: Version | None = None) -> None:
    """MegatronVersionError unless the installed megatron-core is in `spec` (PEP 440)."""
    installed = installed or megatron_core_version()
    try:
        allowed = SpecifierSet(spec)
    except InvalidSpecifier:
        raise MegatronVersionError(f"{what} declares no megatron-core range ({spec!r}): give "
                                   "it one (a PEP 440 range, e.g. '>=0.16,<0.20')") from None
    if installed not in allowed:
        raise MegatronVersionError(
            f"{what} replaces megatron-core internals of versions {spec}, but megatron-core "
            f"{installed} is installed: check whether that site still needs it "
            "(tests/mcore/test_cpu_runtime.py), then widen or drop its range in "
            f"swallow_train/mcore/, or install a megatron-core {spec} (constraints.txt)")
