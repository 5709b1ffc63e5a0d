"""`swallow-train <command> [--dry-run] [key=value ...]`: one thin entry point per stage.

    swallow-train pipeline                                   # tiny CPU default, end to end
    swallow-train cpt --dry-run model=qwen3_8b cluster=abci3 cluster.nodes=16
    swallow-train launch stage=cpt model=qwen3_8b cluster=abci3 nodes=16 submit=true

Overrides are Hydra's: `group=preset` picks a preset, `a.b=value` sets a value. An unknown key
or a wrong type is an error before anything runs.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Command:
    recipe: str | None
    """The recipe composed from the overrides; None: the command reads its own arguments."""
    entry: str
    """"module:function" called with the typed recipe (or the raw argument list)."""
    help: str


COMMANDS: dict[str, Command] = {
    "prepare": Command("cpt", "swallow_train.stages.prepare:cpt",
                       "tokenize the corpora of a CPT manifest to megatron .bin/.idx"),
    "prepare-sft": Command("sft", "swallow_train.stages.prepare:sft",
                           "filter, render and pack the conversations of an SFT manifest"),
    "prepare-rl": Command("rl", "swallow_train.rl.prompts:main",
                          "turn the Dolci-Think-RL math subset into slime prompt JSONL"),
    "cpt": Command("cpt", "swallow_train.stages.cpt:main",
                   "continual pretraining (megatron-core)"),
    "sft": Command("sft", "swallow_train.stages.sft:main",
                   "supervised fine-tuning (megatron-core)"),
    "rl": Command("rl", "swallow_train.stages.rl:main",
                  "RLVR: slime on clusters, the local GRPO backend on CPU"),
    "pipeline": Command("pipeline", "swallow_train.stages.pipeline:main",
                        "CPT -> SFT -> RLVR, each stage from the last one's HF export"),
    "launch": Command(None, "swallow_train.launch.cli:main",
                      "render (and submit) PBS / Grid Engine / Slurm job scripts"),
    "export": Command(None, "swallow_train.convert.cli:main",
                      "megatron torch_dist checkpoint -> Hugging Face directory"),
    "doctor": Command(None, "swallow_train.doctor.cli:main",
                      "preflight of a node: versions, GPUs, NCCL, dirs, tokenizer, self-tests"),
    "serve": Command(None, "swallow_train.serve.cli:main",
                     "vLLM's OpenAI-compatible server on an export (here, or a 1-node job)"),
}


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
        recipe = compose(cmd.recipe, rest)
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
