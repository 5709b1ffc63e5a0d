"""Strict YAML -> typed dataclass loading with errors that name the file, the line and the field.

Supports the types manifests use: str, int, float, bool, Enum, `X | None`, `int | str`,
`list[...]` and nested dataclasses. Unknown keys, duplicate keys, missing required fields and
wrong types are all DataErrors; fields with `metadata={"yaml": False}` are not settable.

    from swallow_train.data.strict_yaml import load_typed
    manifest = load_typed(Path("data_manifests/tiny_cpt.yaml"), CPTManifest)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import yaml

from swallow_train.data.sources import DataError, read_text

T = TypeVar("T")
Key = tuple[str | int, ...]


def _dotted(path: Key) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


class _Reader:
    def __init__(self, file: Path) -> None:
        self.file = file
        self.lines: dict[Key, int] = {}
        self._loader = yaml.SafeLoader("")

    def error(self, path: Key, message: str) -> DataError:
        line = self.lines.get(path)
        at = f"{self.file}:{line}" if line else str(self.file)
        return DataError(f"{at}: {_dotted(path)}: {message}")

    def to_python(self, node: yaml.Node, path: Key) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for knode, vnode in node.value:
                key = str(self._loader.construct_object(knode))
                self.lines[(*path, key)] = knode.start_mark.line + 1
                if key in out:
                    raise self.error((*path, key), "appears twice")
                out[key] = self.to_python(vnode, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.to_python(v, (*path, i)) for i, v in enumerate(node.value)]
        return self._loader.construct_object(node)

    def convert(self, tp: Any, value: Any, path: Key) -> Any:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = typing.get_args(tp)
            if value is None:
                if type(None) in args:
                    return None
                raise self.error(path, "must not be empty")
            options = [a for a in args if a is not type(None)]
            if len(options) == 1:
                return self.convert(options[0], value, path)
            for arg in options:
                try:
                    return self.convert(arg, value, path)
                except DataError:
                    continue
            names = " or ".join(getattr(a, "__name__", str(a)) for a in options)
            raise self.error(path, f"expected {names}, got {type(value).__name__} {value!r}")
        if origin is list:
            if not isinstance(value, list):
                raise self.error(path, f"expected a list, got {type(value).__name__}")
            (item,) = typing.get_args(tp)
            return [self.convert(item, v, (*path, i)) for i, v in enumerate(value)]
        if dataclasses.is_dataclass(tp):
            return self.build(tp, value, path)
        if isinstance(tp, type) and issubclass(tp, Enum):
            choices = [e.value for e in tp]
            if value not in choices:
                raise self.error(
                    path, f"must be one of {', '.join(map(str, choices))}; got {value!r}"
                )
            return tp(value)
        if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if (
            tp in (str, int, bool)
            and isinstance(value, tp)
            and not (tp is int and isinstance(value, bool))
        ):
            return value
        hint = " (quote it to make it a string)" if tp is str else ""
        raise self.error(
            path, f"expected {tp.__name__}, got {type(value).__name__} {value!r}{hint}"
        )

    def build(self, cls: type[T], value: Any, path: Key) -> T:
        if not isinstance(value, dict):
            raise self.error(
                path, f"expected a mapping for {cls.__name__}, got {type(value).__name__}"
            )
        hints = typing.get_type_hints(cls)
        settable = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)}
        unknown = sorted(set(value) - set(settable))
        if unknown:
            raise self.error(
                (*path, unknown[0]),
                f"unknown field of {cls.__name__}; known fields: {', '.join(settable)}",
            )
        kwargs: dict[str, Any] = {}
        for name, f in settable.items():
            if name in value:
                kwargs[name] = self.convert(hints[name], value[name], (*path, name))
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise self.error(path, f"missing required field {name!r} of {cls.__name__}")
        return cls(**kwargs)


def _compose(file: Path) -> yaml.Node:
    try:
        node = yaml.compose(read_text(file), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{file}:{mark.line + 1}" if mark else str(file)
        raise DataError(f"{at}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if node is None:
        raise DataError(f"{file}: the file is empty")
    return node


def load_typed(file: Path, cls: type[T]) -> T:
    """An instance of dataclass `cls` from the YAML mapping in `file`."""
    reader = _Reader(file)
    data = reader.to_python(_compose(file), ())
    return reader.build(cls, data, ())


def peek_key(file: Path, key: str) -> Any:
    """The value of one top-level key (None when absent), to pick the schema to load with."""
    data = _Reader(file).to_python(_compose(file), ())
    return data.get(key) if isinstance(data, dict) else None
