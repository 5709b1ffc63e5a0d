r"""Is a stage's prepared data there and current? A multi-node CPT/SFT job does not tokenize
(global rank 0 would work for hours while every GPU waits under the process-group timeout), so
it refuses to start without it and names the command that prepares it.

    python -m swallow_train.data.ready cpt model=qwen3_8b cluster=abci3 cluster.nodes=16
    # exit 0: ready; exit 1: what is missing or stale, and the command that prepares it

The job scripts of `swallow-train launch` run this before the launcher when nodes > 1; the
stage itself checks again before it builds the model (`require_prepared`).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from swallow_train.data.sources import DataError

PREPARE = {"cpt": "prepare", "sft": "prepare-sft", "rl": "prepare-rl"}
_LAUNCH_OWNED = ("cluster=", "cluster.nodes=", "cluster.queue=", "cluster.group=",
                 "cluster.walltime=")


def multi_node(recipe: Any) -> bool:
    """More than one node: the recipe's cluster.nodes, or the launcher's world vs its local
    size (torchrun's WORLD_SIZE / LOCAL_WORLD_SIZE, Open MPI's OMPI_COMM_WORLD_[LOCAL_]SIZE)."""
    if recipe.cluster.nodes > 1:
        return True
    for world, local in (("WORLD_SIZE", "LOCAL_WORLD_SIZE"),
                         ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE")):
        if os.environ.get(world, "").isdigit() and os.environ.get(local, "").isdigit():
            return int(os.environ[world]) > int(os.environ[local])
    return False


def _argv_overrides(stage: str) -> list[str] | None:
    """This process's recipe overrides, when it runs `swallow_train <stage|its prepare> ...`."""
    args = sys.argv[1:]
    if args and args[0] in (stage, PREPARE[stage]):
        return [a for a in args[1:] if a != "--dry-run"]
    return None


def _explicit_overrides(stage: str, recipe: Any) -> list[str]:
    """The recipe fields that decide the prepared data, as overrides (exact in any context)."""
    d = recipe.data
    out = [f"data.manifest={d.manifest}", f"data.prepared_dir={d.prepared_dir}",
           f"model.tokenizer={recipe.model.tokenizer}"]
    if stage == "cpt":
        out.append(f"data.docs_per_shard={d.docs_per_shard}")
    else:
        out += [f"train.seq_length={recipe.train.seq_length}", f"data.seed={d.seed}",
                f"data.too_long={d.too_long.value}", f"data.pad_to_multiple={d.pad_to_multiple}"]
    if d.fingerprint_content:
        out.append("data.fingerprint_content=true")
    return out


def prepare_command(stage: str, recipe: Any, overrides: list[str] | None = None) -> str:
    """`swallow-train prepare[-sft] <overrides>` that prepares exactly this recipe's data."""
    given = overrides if overrides is not None else _argv_overrides(stage)
    keep = [o for o in given or [] if not o.lstrip("+~").startswith("data.task_index=")
            and not o.lstrip("+~").startswith("data.num_tasks=")]
    return shlex.join(["swallow-train", PREPARE[stage],
                       *(keep if given is not None else _explicit_overrides(stage, recipe))])


def launch_command(stage: str, recipe: Any, overrides: list[str] | None = None) -> str:
    """The `swallow-train launch stage=prepare ...` that prepares it on the cluster's CPU nodes."""
    given = overrides if overrides is not None else _argv_overrides(stage)
    rest = [o for o in (given if given is not None else _explicit_overrides(stage, recipe))
            if not o.startswith(_LAUNCH_OWNED)]
    c = recipe.cluster
    head = ["swallow-train", "launch", f"stage={PREPARE[stage]}", f"cluster={c.name}"]
    return shlex.join(head + ([f"group={c.group}"] if c.group else []) + rest)


def cpt_problems(recipe: Any) -> list[str]:
    """What is missing or stale in the prepared CPT corpora ([] when ready)."""
    from swallow_train.data.prepared import cpt_manifest
    from swallow_train.data.shards import (
        changed_inputs,
        fingerprint,
        input_identity,
        read_json,
        tokenizer_identity,
        verify_shards,
    )

    d = recipe.data
    manifest = cpt_manifest(recipe.data)
    out, synth = Path(d.prepared_dir) / manifest.name, Path(d.prepared_dir) / "synthetic"
    tok_id = tokenizer_identity(recipe.model.tokenizer)[0]
    problems = []
    for i, corpus in enumerate(manifest.corpora):
        cdir = out / corpus.name
        inputs = input_identity(corpus.source, manifest.base, synth, d.fingerprint_content)
        fp = fingerprint(manifest, i, tok_id, d.docs_per_shard, inputs)
        done = read_json(cdir / "done.json")
        if done is None:
            problems.append(f"corpus {corpus.name}: not prepared ({cdir}/done.json is missing)")
            continue
        if done.get("fingerprint") != fp:
            changed = changed_inputs(done.get("inputs"), inputs)
            why = ("its input changed: " + "; ".join(changed)) if changed else (
                "prepared from another source, tokenizer or data.docs_per_shard")
            problems.append(f"corpus {corpus.name}: stale, {why} (remove {cdir} first)")
            continue
        try:
            verify_shards(cdir, int(done["shards"]), fp)
        except DataError as exc:
            problems.append(f"corpus {corpus.name}: {exc}")
    if not problems and not (out / "stats.json").is_file():
        problems.append(f"{out / 'stats.json'} is missing (the final prepare step did not run)")
    return problems


def sft_problems(recipe: Any) -> list[str]:
    """What is missing or stale in the packed SFT data ([] when ready)."""
    from swallow_train.data.sft_prepare import expected_fingerprint
    from swallow_train.data.shards import changed_inputs, read_json

    out, fp, inputs = expected_fingerprint(recipe)
    stats = read_json(out / "stats.json")
    if stats is None:
        return [f"{out}: not prepared ({out / 'stats.json'} is missing)"]
    if stats.get("fingerprint") != fp:
        changed = changed_inputs(stats.get("inputs"), inputs)
        why = ("an input changed: " + "; ".join(changed)) if changed else (
            "prepared from other sources, tokenizer, seq_length, seed or too_long rule")
        return [f"{out}: stale, {why} (remove {out} first)"]
    return []


def problems(stage: str, recipe: Any) -> list[str]:
    try:
        return cpt_problems(recipe) if stage == "cpt" else sft_problems(recipe)
    except DataError as exc:  # a missing input file, a bad manifest
        return [str(exc)]


def message(stage: str, recipe: Any, found: list[str],
            overrides: list[str] | None = None) -> str:
    return (
        f"{stage}: the prepared data is missing or stale, and a multi-node job does not prepare "
        "it (rank 0 would tokenize for hours while every GPU waits):\n  - "
        + "\n  - ".join(found)
        + f"\nprepare it first on CPU nodes:\n  {launch_command(stage, recipe, overrides)}"
        + f"\nor on one machine:\n  {prepare_command(stage, recipe, overrides)}"
    )


def require_prepared(stage: str, recipe: Any) -> None:
    """In a multi-node job, DataError unless the stage's prepared data is there and current;
    a single-node job prepares on first use (rank 0), so nothing is checked here."""
    if not multi_node(recipe):
        return
    found = problems(stage, recipe)
    if found:
        raise DataError(message(stage, recipe, found))


def main(argv: list[str]) -> int:
    from swallow_train.config import compose
    from swallow_train.errors import SwallowError

    if not argv or argv[0] not in ("cpt", "sft"):
        print("usage: python -m swallow_train.data.ready {cpt,sft} [overrides...]",
              file=sys.stderr)
        return 2
    stage, overrides = argv[0], argv[1:]
    try:
        recipe = compose(stage, overrides)
        found = problems(stage, recipe)
    except SwallowError as exc:
        print(f"swallow-train {stage}: error: {exc}", file=sys.stderr)
        return 2
    if found:
        print(f"swallow-train {stage}: error: {message(stage, recipe, found, overrides)}",
              file=sys.stderr)
        return 1
    print(f"{stage}: prepared data is ready")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
