"""`swallow-train <command> [--dry-run] [key=value ...]`: one thin entry point per stage.

    swallow-train pipeline                                   # tiny CPU default, end to end
    swallow-train cpt --dry-run model=qwen3_8b cluster=abci3 cluster.nodes=16
    swallow-train launch stage=cpt model=qwen3_8b cluster=abci3 nodes=16 submit=true

Overrides are Hydra's: `group=preset` picks a preset, `a.b=value` sets a value; `cpt.a.b=value`
sets it in one stage only (one syntax for every command: swallow_train/overrides.py). An unknown
key or a wrong type is an error before anything runs.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swallow_train.registry import STAGES, Kind, Stage


@dataclass(frozen=True)
class Command:
    recipe: str | None
    """The recipe composed from the overrides; None: the command reads its own arguments."""
    entry: str
    """"module:function" called with the typed recipe (or the raw argument list)."""
    help: str


def _stage_command(stage: Stage) -> Command:
    """A registry stage as a command; a driver (the pipeline) reads its own arguments."""
    recipe = None if stage.kind is Kind.driver else stage.recipe_name
    return Command(recipe, stage.entry, stage.help)


COMMANDS: dict[str, Command] = {
    **{name: _stage_command(stage) for name, stage in STAGES.items()},
    "launch": Command(None, "swallow_train.launch.cli:main",
                      "render (and submit) PBS / Grid Engine / Slurm job scripts"),
    "export": Command(None, "swallow_train.convert.cli:main",
                      "megatron torch_dist checkpoint -> Hugging Face directory"),
    "doctor": Command(None, "swallow_train.doctor.cli:main",
                      "preflight of a node: versions, GPUs, NCCL, dirs, tokenizer, self-tests"),
    "serve": Command(None, "swallow_train.serve.cli:main",
                     "vLLM's OpenAI-compatible server on an export (here, or a 1-node job)"),
}
"""The stage commands come from the stage registry (`swallow_train/registry.py`)."""


def _load(entry: str) -> Callable[..., Any]:
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def usage() -> str:
    lines = ["usage: swallow-train <command> [--dry-run] [key=value ...]", "", "commands:"]
    lines += [f"  {name:<12} {cmd.help}" for name, cmd in COMMANDS.items()]
    lines += ["  print-config <command> [key=value ...]   same as --dry-run"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from swallow_train.config import compose, describe
    from swallow_train.errors import SwallowError
    from swallow_train.overrides import for_command

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    dry_run = "--dry-run" in rest
    rest = [a for a in rest if a != "--dry-run"]
    if name == "print-config":
        if not rest:
            print(usage(), file=sys.stderr)
            return 2
        name, rest, dry_run = rest[0], rest[1:], True
    if name not in COMMANDS:
        print(f"swallow-train: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    cmd = COMMANDS[name]
    try:
        if cmd.recipe is None:
            return int(_load(cmd.entry)(rest + (["--dry-run"] if dry_run else [])) or 0)
        recipe = compose(cmd.recipe, for_command(name, cmd.recipe, rest))
        if dry_run:
            print(describe(recipe))
            return 0
        return int(_load(cmd.entry)(recipe) or 0)
    except SwallowError as exc:
        # every rank of a job meets the same error: one message, from global rank 0
        if os.environ.get("RANK", "0") == "0":
            print(f"swallow-train {name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
