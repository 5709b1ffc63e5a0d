"""Read a torch_dist checkpoint's `common.pt` without importing (or running) what it references.

Megatron-LM, as slime runs it, pickles its whole `args` namespace into `common.pt`, slime's own
classes included (`slime.utils.eval_config.EvalDatasetConfig` whenever an eval set is set).
megatron-core 0.16.1 reads the file with `torch.load` in weights-only mode, which refuses them
(`UnpicklingError`). The export never needs the file for the weights (`swallow_train.mcore.
torch_dist_read` skips it); this reader gives what is useful in it (the iteration, the model
shape of `args`, megatron's `content_metadata`) for the plan and the shape check.

Restricted: only the globals torch's weights-only loader allows (tensors, dtypes, containers)
plus `argparse.Namespace` are real; every other class or function the pickle names becomes an
inert `Stub` that records its arguments. Nothing is imported and no pickled callable is called.

    state = read_common_pt("runs/x/rl/slime/iter_0000800/common.pt")
    state.data["iteration"], state.stubbed   # 800, ['slime.utils.eval_config.EvalDatasetConfig']
"""

from __future__ import annotations

import argparse
import pickle
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from swallow_train.convert.transforms import ConversionError

COMMON_FILE = "common.pt"


class Stub:
    """Stands for an object of a class the reader does not import: keeps what the pickle gave."""

    _stub_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        obj = object.__new__(cls)
        obj.__dict__.update(stub_args=args, stub_kwargs=kwargs, stub_state=None, stub_items=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__.update(stub_args=args, stub_kwargs=kwargs)

    def __setstate__(self, state: Any) -> None:
        self.__dict__["stub_state"] = state

    def __call__(self, *args: Any, **kwargs: Any) -> Stub:  # a stubbed callable's result
        return type(self)(*args, **kwargs)

    def append(self, item: Any) -> None:  # APPENDS on a pickled list subclass
        self.__dict__["stub_items"].append(item)

    def extend(self, items: Any) -> None:
        self.__dict__["stub_items"].extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEMS on a dict subclass
        self.__dict__["stub_items"].append((key, value))

    def __repr__(self) -> str:
        return f"<stub {self._stub_name}>"


def _allowed() -> dict[str, Any]:
    from torch._weights_only_unpickler import _get_allowed_globals

    allowed = dict(_get_allowed_globals())
    allowed["argparse.Namespace"] = argparse.Namespace
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """`find_class` returns allowed globals as they are and a fresh `Stub` subclass otherwise."""

    allowed: ClassVar[dict[str, Any]] = {}
    stubbed: ClassVar[set[str]] = set()
    stubs: ClassVar[dict[str, type[Stub]]] = {}

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if full in self.allowed:
            return self.allowed[full]
        self.stubbed.add(full)
        if full not in self.stubs:
            self.stubs[full] = type(name, (Stub,), {"_stub_name": full, "__module__": __name__})
        return self.stubs[full]


@dataclass
class CommonState:
    """What `common.pt` holds, with the names of the classes that were stubbed."""

    data: dict[str, Any]
    stubbed: list[str] = field(default_factory=list)

    @property
    def args(self) -> argparse.Namespace | None:
        args = self.data.get("args")
        return args if isinstance(args, argparse.Namespace) else None

    @property
    def content_metadata(self) -> dict[str, Any]:
        meta = self.data.get("content_metadata")
        return meta if isinstance(meta, dict) else {}

    def describe(self) -> str:
        parts = []
        if "iteration" in self.data:
            parts.append(f"iteration {self.data['iteration']}")
        if "checkpoint_version" in self.data:
            parts.append(f"checkpoint_version {self.data['checkpoint_version']}")
        if self.args is not None:
            parts.append("Megatron-LM args")
        if self.stubbed:
            parts.append(f"stubbed (not needed): {', '.join(self.stubbed)}")
        return "; ".join(parts) or "no iteration or args"


def read_common_pt(path: str | Path) -> CommonState:
    """The content of a `common.pt` through the restricted unpickler (see the module docstring).
    ConversionError names the file when it is missing or unreadable."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    unpickler = type("Unpickler", (_RestrictedUnpickler,),
                     {"allowed": _allowed(), "stubbed": set(), "stubs": {}})
    def load(file: Any, **kwargs: Any) -> Any:  # torch's legacy format reads headers with it
        return unpickler(file, **kwargs).load()

    module = types.SimpleNamespace(Unpickler=unpickler, load=load,
                                   __name__="swallow_train_restricted_pickle")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False, pickle_module=module)
    except Exception as exc:
        raise ConversionError(f"{path}: unreadable ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: holds a {type(data).__name__}, not a state dict")
    return CommonState(data=data, stubbed=sorted(unpickler.stubbed))
