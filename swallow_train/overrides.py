"""One override syntax for the stage commands, `pipeline` and `launch`: `key=value` sets a
value in every stage, `<stage>.key=value` in that stage only.

    swallow-train cpt optim.lr=1e-5                         # a stage command: its own recipe
    swallow-train pipeline optim.lr=1e-5 cpt.train.train_steps=100 sft.optim.lr=5e-6
    swallow-train launch stage=chain cluster=abci3 nodes=16 sft.nodes=8 cpt.optim.lr=1e-5

A key is Hydra's (`group=preset`, `a.b=value`, `+a.b=value`, `~a.b`); its first dotted part
scopes it when that part names a stage of the registry (`swallow_train/registry.py`). Each
command first takes its own keys (the pipeline's `name=`, launch's `stage=`); the rest go to
the stages' recipes, where an unknown key fails when the recipe is composed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from swallow_train.errors import SwallowError
from swallow_train.registry import STAGES, Kind

SCOPES: tuple[str, ...] = tuple(n for n, s in STAGES.items() if s.kind is not Kind.driver)
"""The prefixes that scope an override to one stage."""
_KEY = re.compile(r"^[A-Za-z_][\w.\-@/]*$")


class OverrideError(SwallowError, ValueError):
    """An argument that is not `key=value`, or a key given twice or to the wrong command."""


@dataclass(frozen=True)
class Override:
    """One `[stage.]key=value` argument."""

    arg: str
    """As given on the command line (what error messages quote)."""
    key: str
    """Without the stage prefix and Hydra's `+`/`~`: `optim.lr`."""
    stage: str | None = None
    prefix: str = ""
    """Hydra's `+`, `++` or `~`."""
    value: str | None = None
    """None only for `~key` (delete)."""

    @property
    def hydra(self) -> str:
        """The override as the stage's recipe gets it, without the stage prefix."""
        return self.prefix + self.key + ("" if self.value is None else "=" + self.value)


def parse_one(arg: str, scopes: Collection[str] = SCOPES) -> Override:
    if arg.startswith("-"):
        raise OverrideError(f"unknown option {arg!r}; give key=value (and --dry-run)")
    head, eq, value = arg.partition("=")
    key = head.lstrip("+~")
    prefix = head[: len(head) - len(key)]
    if not (eq or prefix == "~") or not _KEY.match(key) or prefix not in ("", "+", "++", "~"):
        raise OverrideError(f"expected key=value, got {arg!r}")
    scope, _, rest = key.partition(".")
    stage = scope if scope in scopes and rest else None
    return Override(arg=arg, key=rest if stage else key, stage=stage, prefix=prefix,
                    value=value if eq else None)


def parse(argv: Iterable[str], scopes: Collection[str] = SCOPES) -> list[Override]:
    """Every argument parsed; the same (stage, key) twice is an error naming both."""
    seen: dict[tuple[str | None, str], str] = {}
    out = []
    for arg in argv:
        o = parse_one(arg, scopes)
        if (o.stage, o.key) in seen:
            raise OverrideError(f"{arg}: {o.stage + '.' if o.stage else ''}{o.key} is given "
                                f"twice (also {seen[o.stage, o.key]!r})")
        seen[o.stage, o.key] = arg
        out.append(o)
    return out


def merge(*layers: Iterable[str]) -> list[str]:
    """Hydra overrides, later layers first in authority: a key a later layer sets is dropped
    from the earlier ones (Hydra takes one value per key)."""
    result: list[str] = []
    for layer in layers:
        items = list(layer)
        keys = {item.partition("=")[0].lstrip("+~") for item in items}
        result = [r for r in result if r.partition("=")[0].lstrip("+~") not in keys] + items
    return result


def sections(recipe: str) -> frozenset[str]:
    """The top-level keys of a recipe (the fields of its root dataclass)."""
    from dataclasses import fields

    from swallow_train.config import recipe_class

    return frozenset(f.name for f in fields(recipe_class(recipe)))


def _section(o: Override) -> str:
    return o.key.partition(".")[0]


def for_stage(overrides: Iterable[Override], stage: str, aliases: Collection[str] = (),
              recipe: str | None = None) -> list[str]:
    """What `stage` gets: the unscoped overrides (with `recipe`: only those of a section its
    recipe has, so `data.prepared_dir=...` skips the eval stage, which has no `data`), then its
    own (`<stage>.` or an alias of it), which replace an unscoped one of the same key."""
    items = list(overrides)
    has = sections(recipe) if recipe else None
    mine = (stage, *aliases)
    return merge([o.hydra for o in items if o.stage is None and (has is None or
                                                               _section(o) in has)],
                 [o.hydra for o in items if o.stage in mine])


def check_claimed(overrides: Iterable[Override], recipes: Iterable[str]) -> None:
    """OverrideError when an unscoped override names a section none of `recipes` has (a typo
    such as `optmi.lr=`, which would otherwise reach no stage at all)."""
    known = frozenset().union(*(sections(r) for r in set(recipes)))
    lost = [o for o in overrides if o.stage is None and _section(o) not in known]
    if lost:
        raise OverrideError(f"{', '.join(o.arg for o in lost)}: no stage here has a section "
                            f"{', '.join(sorted({_section(o) for o in lost}))}; check the "
                            f"spelling (the sections: {', '.join(sorted(known))})")


def for_command(command: str, recipe: str, argv: Iterable[str]) -> list[str]:
    """The Hydra overrides of a single-stage command (`swallow-train cpt ...`): unscoped keys
    and its own prefix (`cpt.optim.lr=...`, or its recipe's); another stage's prefix is refused,
    since this command does not run that stage."""
    items = parse(argv)
    for o in items:
        if o.stage not in (None, command, recipe):
            raise OverrideError(
                f"{o.arg}: the prefix {o.stage}. sets stage {o.stage}, which `swallow-train "
                f"{command}` does not run; give {o.key}=... without the prefix, or pass it to "
                f"`swallow-train pipeline` / `swallow-train launch`, which run several stages")
    return for_stage(items, command, (recipe,))
