"""Compose a stage recipe from `recipes/` with Hydra, into typed dataclasses.

Every section is a dataclass; the root recipe of each stage is registered in Hydra's
ConfigStore as `<stage>_schema` and is the first entry of `recipes/<stage>.yaml`'s defaults, so
an unknown key, a wrong type or a missing required value fails here, at compose time, with a
message naming the key. YAML only picks presets and sets values.

    from swallow_train.config import compose
    recipe = compose("cpt", ["model=qwen3_8b", "cluster=abci3", "cluster.nodes=16"])
"""

from __future__ import annotations

import importlib
import os
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from swallow_train.errors import SwallowError
from swallow_train.registry import recipes

# stage -> "module:RootDataclass", from the stage registry (swallow_train/registry.py). The
# modules must be light to import (no megatron, no slime).
RECIPES: dict[str, str] = recipes()


class RecipeError(SwallowError, ValueError):
    """A recipe that does not compose: unknown key, wrong type, missing value, bad preset."""


def recipes_dir() -> Path:
    """`$SWALLOW_RECIPES`, else the repository's `recipes/` next to the package."""
    env = os.environ.get("SWALLOW_RECIPES")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "recipes"
    if not path.is_dir():
        raise RecipeError(f"recipe directory {path} not found; set SWALLOW_RECIPES to it")
    return path


def recipe_class(stage: str) -> type:
    if stage not in RECIPES:
        raise RecipeError(f"unknown stage {stage!r}; one of {', '.join(RECIPES)}")
    module, _, name = RECIPES[stage].partition(":")
    return getattr(importlib.import_module(module), name)


def register(stage: str) -> None:
    """Store the stage's root schema (and, for reference, each section's schema under its group
    as `_schema`) in Hydra's ConfigStore. Idempotent; imports only that stage's module."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    root = recipe_class(stage)
    cs.store(name=f"{stage}_schema", node=root)
    for name, hint in get_type_hints(root).items():
        if isinstance(hint, type) and is_dataclass(hint):
            cs.store(group=name, name="_schema", node=hint)


def _message(exc: BaseException) -> str:
    """Hydra's error plus its causes, which hold the key and the type that failed."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        for line in str(seen).strip().splitlines():
            noise = "$VALUE" in line or line.strip().startswith(("reference_type", "object_type"))
            if line.strip() and not noise and line not in parts:
                parts.append(line)
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def compose_dict(stage: str, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The composed OmegaConf node (struct mode), before conversion to dataclasses."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register(stage)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(recipes_dir()), version_base="1.3"):
            return hydra_compose(config_name=stage, overrides=list(overrides))
    except Exception as exc:  # hydra raises several types; all are recipe errors to the user
        message = _message(exc)
        if "To append to your config use +" in message:  # we reject `+key=` (unknown keys)
            message = "\n".join(line for line in message.splitlines()
                                 if not line.startswith("To append to your config use +"))
            message += (f"\nno such key in recipe {stage!r}: check the spelling "
                        f"(swallow-train {stage} --dry-run prints every key)")
        raise RecipeError(f"recipe {stage!r} does not compose:\n{message}") from None


def _unknown_keys(node: Any, path: str = "") -> list[str]:
    """Keys present in the composed tree but absent from its dataclass (Hydra's `+key=value`
    opens struct mode, and OmegaConf.to_object would then drop them silently)."""
    from dataclasses import fields

    from omegaconf import DictConfig, OmegaConf

    if not isinstance(node, DictConfig):
        return []
    kind = OmegaConf.get_type(node)
    found: list[str] = []
    if kind is not None and is_dataclass(kind):
        declared = {f.name for f in fields(kind)}
        found += [f"{path}{k}" for k in node if k not in declared]
    for key in node:
        found += _unknown_keys(node._get_node(key), f"{path}{key}.")
    return found


def compose(stage: str, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The typed recipe of `stage` (an instance of its root dataclass)."""
    from omegaconf import OmegaConf

    node = compose_dict(stage, overrides)
    unknown = _unknown_keys(node)
    if unknown:
        raise RecipeError(
            f"recipe {stage!r} has unknown key(s): {', '.join(unknown)} "
            "(check the spelling; every recipe section is a typed dataclass)"
        )
    try:
        recipe = OmegaConf.to_object(node)
    except Exception as exc:  # MissingMandatoryValue, ValidationError
        raise RecipeError(f"recipe {stage!r} is incomplete:\n{_message(exc)}") from None
    check(stage, recipe)
    return recipe


def check(stage: str, recipe: object) -> None:
    """Every numeric field in its range (`swallow_train/ranges.py`), then the root recipe's own
    `recipe_errors()` (settings its stage or backend cannot honour); RecipeError lists all."""
    from swallow_train.ranges import range_errors

    errors = range_errors(recipe)
    if errors:
        raise RecipeError(f"recipe {stage!r} has values out of range:\n"
                          + "\n".join(f"  - {e}" for e in errors))
    refusals = recipe.recipe_errors() if hasattr(recipe, "recipe_errors") else []
    if refusals:
        raise RecipeError(f"recipe {stage!r} is inconsistent or asks for what it cannot do:\n"
                          + "\n".join(f"  - {e}" for e in refusals))


def to_yaml(recipe: object) -> str:
    """The resolved recipe as YAML (saved next to every run, printed by --dry-run)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(recipe))



def describe(recipe: object) -> str:
    """What `--dry-run` prints: the resolved recipe and, for stages with a parallel layout, the
    validated layout, then the per-GPU memory plan (`recipe_memory_plan`)."""
    text = to_yaml(recipe)
    if hasattr(recipe, "layout"):
        text += f"\n# parallel layout: {recipe.layout().describe()}\n"
    return text + recipe_memory_plan(recipe)


def recipe_memory_plan(recipe: object) -> str:
    """The printed plan of a composed stage recipe: CPT/SFT (anything with `layout()`) on its
    cluster, or the slime RL job; '' for the local RL backend. Raises LayoutError with the fix
    when it does not fit."""
    from swallow_train.memory_plan import check_training
    from swallow_train.memory_plan_rl import rl_memory_plan

    if hasattr(recipe, "layout"):
        return check_training(recipe.model, recipe.parallel, recipe.layout(),
                              seq_length=recipe.train.seq_length,
                              micro_batch_size=recipe.train.micro_batch_size,
                              cluster=recipe.cluster.name,
                              gpus_per_node=recipe.cluster.gpus_per_node).describe()
    if getattr(recipe, "backend", None) is not None and recipe.backend.value == "slime":
        return rl_memory_plan(recipe).describe()
    return ""
