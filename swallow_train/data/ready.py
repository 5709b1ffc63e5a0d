r"""Is a stage's prepared data there and current? A multi-node CPT/SFT job does not tokenize
(global rank 0 would work for hours while every GPU waits under the process-group timeout), so
it refuses to start without it and names the command that prepares it.

    python -m swallow_train.data.ready cpt model=qwen3_8b cluster=abci3 cluster.nodes=16
    # exit 0: ready; exit 1: what is missing or stale, and the command that prepares it

The job scripts of `swallow-train launch` run this before the launcher when nodes > 1; the
stage itself checks again before it builds the model (`require_prepared`). Everything here reads
a `StageData`: the few recipe sections that decide the prepared data, never the whole recipe.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from swallow_train.cluster import ClusterConfig
from swallow_train.data.config import CPTDataConfig, SFTDataConfig
from swallow_train.data.manifest import CPTManifest, SFTManifest
from swallow_train.data.sources import DataError
from swallow_train.models.config import ModelConfig
from swallow_train.training import TrainConfig

PREPARE = {"cpt": "prepare", "sft": "prepare-sft", "rl": "prepare-rl"}
_LAUNCH_OWNED = ("cluster=", "cluster.nodes=", "cluster.queue=", "cluster.group=",
                 "cluster.walltime=")


class DataRecipe(Protocol):
    """A CPT or SFT recipe (`stages/cpt.py`, `stages/sft.py`: the stage layer, which this one
    cannot import), as far as its prepared data goes."""

    @property
    def data(self) -> CPTDataConfig | SFTDataConfig: ...
    @property
    def model(self) -> ModelConfig: ...
    @property
    def train(self) -> TrainConfig: ...
    @property
    def cluster(self) -> ClusterConfig: ...


@dataclass(frozen=True, kw_only=True)
class StageData:
    """What decides a training stage's prepared data, and the cluster it runs on."""

    data: CPTDataConfig | SFTDataConfig
    tokenizer: str
    """`model.tokenizer`."""
    seq_length: int
    """`train.seq_length`: the length of the SFT packs (CPT shards do not depend on it)."""
    cluster: ClusterConfig

    @classmethod
    def of(cls, recipe: DataRecipe) -> StageData:
        return cls(data=recipe.data, tokenizer=recipe.model.tokenizer,
                   seq_length=recipe.train.seq_length, cluster=recipe.cluster)

    @property
    def stage(self) -> str:
        """"cpt" or "sft", by the data section's type."""
        return "cpt" if isinstance(self.data, CPTDataConfig) else "sft"


def multi_node(cluster: ClusterConfig) -> bool:
    """More than one node: `cluster.nodes`, or the launcher's world vs its local size
    (torchrun's WORLD_SIZE / LOCAL_WORLD_SIZE, Open MPI's OMPI_COMM_WORLD_[LOCAL_]SIZE)."""
    if cluster.nodes > 1:
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


def _explicit_overrides(spec: StageData) -> list[str]:
    """The recipe fields that decide the prepared data, as overrides (exact in any context)."""
    d = spec.data
    out = [f"data.manifest={d.manifest}", f"data.prepared_dir={d.prepared_dir}",
           f"model.tokenizer={spec.tokenizer}"]
    if isinstance(d, CPTDataConfig):
        out.append(f"data.docs_per_shard={d.docs_per_shard}")
    else:
        out += [f"train.seq_length={spec.seq_length}", f"data.seed={d.seed}",
                f"data.too_long={d.too_long.value}", f"data.pad_to_multiple={d.pad_to_multiple}"]
    if d.fingerprint_content:
        out.append("data.fingerprint_content=true")
    return out


def prepare_command(spec: StageData, overrides: list[str] | None = None) -> str:
    """`swallow-train prepare[-sft] <overrides>` that prepares exactly this stage's data."""
    given = overrides if overrides is not None else _argv_overrides(spec.stage)
    keep = [o for o in given or [] if not o.lstrip("+~").startswith("data.task_index=")
            and not o.lstrip("+~").startswith("data.num_tasks=")]
    return shlex.join(["swallow-train", PREPARE[spec.stage],
                       *(keep if given is not None else _explicit_overrides(spec))])


def launch_command(spec: StageData, overrides: list[str] | None = None) -> str:
    """The `swallow-train launch stage=prepare ...` that prepares it on the cluster's CPU nodes."""
    given = overrides if overrides is not None else _argv_overrides(spec.stage)
    rest = [o for o in (given if given is not None else _explicit_overrides(spec))
            if not o.startswith(_LAUNCH_OWNED)]
    c = spec.cluster
    head = ["swallow-train", "launch", f"stage={PREPARE[spec.stage]}", f"cluster={c.name}"]
    return shlex.join(head + ([f"group={c.group}"] if c.group else []) + rest)


def cpt_problems(data: CPTDataConfig, tokenizer: str,
                 manifest: CPTManifest | None = None) -> list[str]:
    """What is missing or stale in the prepared CPT corpora ([] when ready); `manifest`:
    `data.manifest` when already parsed."""
    from swallow_train.data.decontam import identity
    from swallow_train.data.prepared import cpt_manifest
    from swallow_train.data.shards import (
        changed_inputs,
        fingerprint,
        input_identity,
        read_json,
        tokenizer_identity,
        verify_shards,
    )

    manifest = manifest or cpt_manifest(data)
    out, synth = Path(data.prepared_dir) / manifest.name, Path(data.prepared_dir) / "synthetic"
    tok_id = tokenizer_identity(tokenizer)[0]
    problems = []
    for i, corpus in enumerate(manifest.corpora):
        cdir = out / corpus.name
        inputs = {**input_identity(corpus.source, manifest.base, synth, data.fingerprint_content),
                  **identity(data.decontam, "data.decontam")}  # as data/prepare.py: drop on
        fp = fingerprint(manifest, i, tok_id, data.docs_per_shard, inputs)
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


def sft_problems(data: SFTDataConfig, tokenizer: str, seq_length: int,
                 manifest: SFTManifest | None = None) -> list[str]:
    """What is missing or stale in the packed SFT data ([] when ready)."""
    from swallow_train.data.sft_prepare import expected_fingerprint
    from swallow_train.data.shards import changed_inputs, read_json

    out, fp, inputs = expected_fingerprint(data, tokenizer, seq_length, manifest)
    stats = read_json(out / "stats.json")
    if stats is None:
        return [f"{out}: not prepared ({out / 'stats.json'} is missing)"]
    if stats.get("fingerprint") != fp:
        changed = changed_inputs(stats.get("inputs"), inputs)
        why = ("an input changed: " + "; ".join(changed)) if changed else (
            "prepared from other sources, tokenizer, seq_length, seed or too_long rule")
        return [f"{out}: stale, {why} (remove {out} first)"]
    return []


def problems(spec: StageData, manifest: CPTManifest | SFTManifest | None = None) -> list[str]:
    """What is missing or stale in the stage's prepared data ([] when ready)."""
    try:
        if isinstance(spec.data, CPTDataConfig):
            assert manifest is None or isinstance(manifest, CPTManifest)
            return cpt_problems(spec.data, spec.tokenizer, manifest)
        assert manifest is None or isinstance(manifest, SFTManifest)
        return sft_problems(spec.data, spec.tokenizer, spec.seq_length, manifest)
    except DataError as exc:  # a missing input file, a bad manifest
        return [str(exc)]


def message(spec: StageData, found: list[str], overrides: list[str] | None = None) -> str:
    return (
        f"{spec.stage}: the prepared data is missing or stale, and a multi-node job does not "
        "prepare it (rank 0 would tokenize for hours while every GPU waits):\n  - "
        + "\n  - ".join(found)
        + f"\nprepare it first on CPU nodes:\n  {launch_command(spec, overrides)}"
        + f"\nor on one machine:\n  {prepare_command(spec, overrides)}"
    )


def require_prepared(spec: StageData, manifest: CPTManifest | SFTManifest | None = None) -> None:
    """In a multi-node job, DataError unless the stage's prepared data is there and current;
    a single-node job prepares on first use (rank 0), so nothing is checked here. `manifest`:
    `spec.data.manifest` when the caller has parsed it already (it is parsed once per run)."""
    if not multi_node(spec.cluster):
        return
    found = problems(spec, manifest)
    if found:
        raise DataError(message(spec, found))


def main(argv: list[str]) -> int:
    from swallow_train.config import compose
    from swallow_train.errors import SwallowError

    if not argv or argv[0] not in ("cpt", "sft"):
        print("usage: python -m swallow_train.data.ready {cpt,sft} [overrides...]",
              file=sys.stderr)
        return 2
    stage, overrides = argv[0], argv[1:]
    try:
        spec = StageData.of(compose(stage, overrides))
        found = problems(spec)
    except SwallowError as exc:
        print(f"swallow-train {stage}: error: {exc}", file=sys.stderr)
        return 2
    if found:
        print(f"swallow-train {stage}: error: {message(spec, found, overrides)}",
              file=sys.stderr)
        return 1
    print(f"{stage}: prepared data is ready")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
