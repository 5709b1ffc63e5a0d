"""The import layers of swallow-train, lowest first (docs/architecture.md draws them).

A module may import modules of its own unit and of units in lower layers; never a unit of its
own layer (sideways) or of a higher one (upward), not even lazily inside a function. The units of
`core` may import each other. Every module must belong to a unit: a new package is placed here.

    .venv/bin/python -m pytest tests/test_layers.py -q      # walks every import (AST) against this

A unit is a dotted path under `swallow_train` (a package, or one module); the longest match
wins, so `convert.cli` (the `export` command, which calls megatron-core) sits above `convert`.
"""

from __future__ import annotations

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", (
        "__init__", "errors", "layers", "config", "ranges", "models", "parallel", "cluster",
        "run", "training", "metrics", "tokenizer", "checkpoint_files", "collectives",
        "run_lock", "signals", "memory_plan", "memory_plan_rl", "check_report", "spawn",
        "stage_dir", "lifecycle", "registry", "overrides",
    )),
    ("data", ("data", "convert")),
    ("engines", ("mcore", "rl")),
    ("evaluation", ("evaluation",)),
    ("release", ("quant",)),
    ("stages", ("stages",)),
    ("commands", ("launch", "doctor", "convert.cli")),
    ("serve", ("serve",)),
    ("entry", ("cli",)),
    ("main", ("__main__",)),
)
"""(layer, its units), lowest layer first."""

SHARED = "core"
"""The layer whose units may import each other (the schema and small utilities)."""


def unit_of(module: str) -> str | None:
    """The unit of a dotted module name (`swallow_train.data.prepare` -> `data`), or None when
    no unit holds it. The package itself (`swallow_train`) is the unit `__init__`."""
    parts = module.split(".")
    if parts[0] != "swallow_train":
        return None
    rel = ".".join(parts[1:]) or "__init__"
    best: str | None = None
    for _, units in LAYERS:
        for unit in units:
            if (rel == unit or rel.startswith(unit + ".")) and len(unit) > len(best or ""):
                best = unit
    return best


def layer_of(unit: str) -> int:
    """Index of the unit's layer in LAYERS (0: core)."""
    for index, (_, units) in enumerate(LAYERS):
        if unit in units:
            return index
    raise KeyError(unit)


def import_rule(source: str, target: str) -> str | None:
    """Why `source` may not import `target` (both units), or None when it may."""
    if source == target:
        return None
    low, high = layer_of(target), layer_of(source)
    name_of = [name for name, _ in LAYERS]
    if low < high or (low == high and name_of[low] == SHARED):
        return None
    where = "upward" if low > high else "sideways"
    return (f"{where}: {source} ({name_of[high]}) may import only its own unit and lower layers "
            f"({', '.join(name_of[:high]) or 'none'}), not {target} ({name_of[low]})")
