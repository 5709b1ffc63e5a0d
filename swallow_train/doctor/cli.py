"""`swallow-train doctor [cpt|sft|rl] [key=value ...]`: check one node before a cluster
allocation is spent on it. Prints one PASS / FAIL / SKIP line per check with its number, writes
them as JSON (`runs/<name>/doctor.json`, or `--json PATH`) and exits 1 if any check failed.

    swallow-train doctor cpt model=qwen3_8b cluster=abci3             # on one allocated node
    swallow-train doctor sft model=tiny_dense --json /tmp/doctor.json # the CPU subset, ~1 min
    torchrun --nnodes 4 --nproc-per-node 1 ... -m swallow_train doctor cpt cluster=abci3 \\
        cluster.nodes=4        # adds: every node sees the same run root and prepared data

Under a launcher (WORLD_SIZE > 1) every process checks the shared filesystem; the first process
of each node (LOCAL_RANK 0) also runs the node's checks and writes `doctor-<host>.json`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from swallow_train.check_report import Check, Report, failed, guarded, skipped
from swallow_train.doctor import checks
from swallow_train.doctor.shared_fs import detach_from_launcher, launch_from_env, same_filesystem

STAGES = ("cpt", "sft", "rl")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swallow-train doctor [cpt|sft|rl]",
        description="Preflight of this node for a stage's recipe (default stage: cpt).")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, as for the stage")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write the JSON (default: runs/<name>/doctor.json)")
    parser.add_argument("--min-busbw", type=float, default=100.0,
                        help="GB/s of NCCL all-reduce bus bandwidth below which it FAILs "
                        "(NVLink H100/H200 nodes reach ~400; PCIe ~20)")
    parser.add_argument("--fs-timeout", type=float, default=120.0,
                        help="seconds to wait for the other nodes' tokens (multi-node)")
    parser.add_argument("--no-selftests", action="store_true",
                        help="skip the megatron-core self-tests (environment checks only)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved recipe and run nothing")
    return parser


def _selftests(recipe, stage: str) -> list[Check]:
    if importlib.util.find_spec("megatron") is None or \
            importlib.util.find_spec("megatron.core") is None:
        if stage == "rl":
            return [skipped("self-tests", "megatron-core not installed")]
        return [failed("self-tests", "megatron-core is not installed (see its line)")]
    from swallow_train.mcore.selftest_suite import selftests

    print("... self-tests on a tiny model in a temporary directory", file=sys.stderr, flush=True)
    return selftests(recipe, stage)


def _run(report: Report, name: str, fn) -> None:
    for check in guarded(name, fn):
        report.checks.append(check)
        print(report.line(check), flush=True)


def main(argv: list[str]) -> int:
    from swallow_train.config import compose
    from swallow_train.doctor.bandwidth import nccl_bus_bandwidth
    from swallow_train.rl.config import Backend
    from swallow_train.stages.rl import RLRecipe

    argv = list(argv)
    stage = argv.pop(0) if argv and argv[0] in STAGES else "cpt"
    args = _parser().parse_intermixed_args(argv)
    recipe = compose(stage, args.overrides)
    if args.dry_run:
        from swallow_train.config import describe

        print(describe(recipe))
        return 0
    launch = launch_from_env(os.environ)
    detach_from_launcher()
    host = checks.host()
    report = Report(stage=stage, overrides=list(args.overrides), host=host)
    run_root, prepared = recipe.run.root, recipe.data.prepared_dir
    slime = isinstance(recipe, RLRecipe) and recipe.backend is Backend.slime
    print(f"swallow-train doctor {stage} (model {recipe.model.name}, cluster "
          f"{recipe.cluster.name}) on {host}", flush=True)
    for label, key, path in (("run root", "run.root", run_root),
                             ("prepared data", "data.prepared_dir", prepared)):
        _run(report, f"{label} shared", lambda label=label, key=key, path=path: same_filesystem(
            label, key, path, launch, host, recipe.cluster.nodes, args.fs_timeout))
    if launch is not None and launch.local_rank != 0:
        print(report.summary(), flush=True)
        return 0 if report.ok else 1
    need = 0
    if stage != "rl":
        need = checks.checkpoint_bytes(recipe.model, recipe.checkpoint.keep_last)
    _run(report, "versions", lambda: checks.versions(stage, slime))
    _run(report, "GPUs", lambda: checks.gpus(recipe.cluster.gpus_per_node))
    _run(report, "parallel layout", lambda: checks.layout(recipe))
    _run(report, "run root writable",
         lambda: checks.writable("run root", "run.root", run_root, need))
    _run(report, "prepared data writable",
         lambda: checks.writable("prepared data", "data.prepared_dir", prepared))
    _run(report, "tokenizer",
         lambda: checks.tokenizer(recipe.model.tokenizer, recipe.model.vocab_size))
    _run(report, "NCCL all-reduce busbw", lambda: nccl_bus_bandwidth(args.min_busbw))
    if not args.no_selftests:
        _run(report, "self-tests", lambda: _selftests(recipe, stage))
    print(report.summary(), flush=True)
    multi = launch is not None and launch.world_size > 1
    path = args.json or (Path(run_root) / recipe.run.name /
                         (f"doctor-{host}.json" if multi else "doctor.json"))
    try:
        report.write(path)
        print(f"-> {path}", flush=True)
    except OSError as exc:
        print(f"swallow-train doctor: could not write {path} ({exc.strerror}); pass --json "
              "PATH to write it elsewhere", file=sys.stderr)
        return 1
    return 0 if report.ok else 1
