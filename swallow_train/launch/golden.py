"""The example job scripts in `launch/` (also the golden files of tests/launch): every cluster x
stage x model size, rendered exactly as `swallow-train launch` renders them.

    python -m swallow_train.launch.golden            # re-render launch/<cluster>/<stage>_<model>.sh
    python -m swallow_train.launch.golden --check    # exit 1 if any file differs

GPUs per job (nodes = GPUs / GPUs per node: 8 on ABCI 3.0 and Slurm, 4 on TSUBAME 4.0):
  CPT  8B 128 (16 ABCI nodes, as the Swallow 30B-A3B test job), 30B-A3B 128, 32B 256
  SFT  64 for every size
  RL   8B 16, 30B-A3B 32, 32B 32
and the CPU jobs of the data preparation: prepare_qwen3_8b.sh (the array of
`cluster.prepare_tasks` tasks), prepare-final_qwen3_8b.sh (checks every shard, writes the
stats), prepare-sft_qwen3_8b.sh and prepare-rl_qwen3_8b.sh; the 1-node jobs after RL:
quantize_<model>.sh for every size, and the evals of the 8B CPT export (Swallow's pretrained
suite) and RL export (the post-trained suite), eval-cpt_qwen3_8b.sh and eval-rl_qwen3_8b.sh.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from swallow_train.launch.args import parse
from swallow_train.launch.render import build

ROOT = Path(__file__).resolve().parents[2] / "launch"
MODELS = ("qwen3_8b", "qwen3_30b_a3b", "qwen3_32b")
GPUS: dict[str, dict[str, int]] = {
    "cpt": {"qwen3_8b": 128, "qwen3_30b_a3b": 128, "qwen3_32b": 256},
    "sft": {"qwen3_8b": 64, "qwen3_30b_a3b": 64, "qwen3_32b": 64},
    "rl": {"qwen3_8b": 16, "qwen3_30b_a3b": 32, "qwen3_32b": 32},
}
CLUSTERS: dict[str, tuple[int, list[str]]] = {
    "abci3": (8, ["group=gxx00000"]),
    "tsubame4": (4, ["group=tga-xxxxx"]),
    "slurm": (8, ["queue=gpu"]),
}


FIT: dict[tuple[str, str, str], list[str]] = {
    ("tsubame4", "cpt", "qwen3_8b"): ["parallel.cp=2"],
    ("tsubame4", "sft", "qwen3_8b"): ["parallel.cp=2", "data.pad_to_multiple=4"],
    ("tsubame4", "cpt", "qwen3_32b"): ["parallel.recompute=full"],
    ("tsubame4", "sft", "qwen3_32b"): ["parallel.recompute=full"],
}
"""The Swallow layouts (the size recipes) fit ABCI 3.0's H200 141 GB at 32K; on TSUBAME 4.0's
H100 94 GB the memory plan refuses them and names these fixes, which its scripts carry."""


def argv(cluster: str, stage: str, model: str) -> list[str]:
    """The launch arguments of one golden file."""
    gpus_per_node, extra = CLUSTERS[cluster]
    nodes = GPUS[stage][model] // gpus_per_node
    return [f"stage={stage}", f"cluster={cluster}", f"nodes={nodes}", *extra,
            f"model={model}", f"run.name={model}", *FIT.get((cluster, stage, model), [])]


EVAL_FILES = {"eval-cpt": ("cpt", "swallow_pretrained"), "eval-rl": ("rl", "swallow_posttrained")}
"""The eval jobs (8B): file stem -> (the stage whose export it scores, the suite)."""
SINGLE = ("quantize", *EVAL_FILES)
TRAINED = tuple(GPUS)


def single_argv(cluster: str, stem: str, model: str) -> list[str]:
    """The launch arguments of a 1-node job: quantize, or an eval of one stage's export."""
    base = [f"cluster={cluster}", *CLUSTERS[cluster][1], f"model={model}", f"run.name={model}"]
    if stem == "quantize":
        return ["stage=quantize", *base]
    target, suite = EVAL_FILES[stem]
    return ["stage=eval", *base, f"eval.target={target}", f"eval.eval_suite={suite}"]


PREPARE_FILES = {"prepare": ("prepare", 0), "prepare-final": ("prepare", 1),
                 "prepare-sft": ("prepare-sft", 0), "prepare-rl": ("prepare-rl", 0)}
"""The CPU jobs (8B recipes; the other sizes differ only in the SFT manifest): file stem ->
(stage, which of its jobs: the array or the final step)."""


def prepare_argv(cluster: str, stage: str) -> list[str]:
    return [f"stage={stage}", f"cluster={cluster}", *CLUSTERS[cluster][1],
            "model=qwen3_8b", "run.name=qwen3_8b"]


def cases(stages: tuple[str, ...] = (*TRAINED, *PREPARE_FILES, *SINGLE)
          ) -> list[tuple[Path, list[str], int]]:
    """(golden file, launch arguments, index of the job among the stage's jobs)."""
    out = []
    for cluster in CLUSTERS:
        for stage in stages:
            if stage in SINGLE:
                out += [(ROOT / cluster / f"{stage}_{model}.sh",
                         single_argv(cluster, stage, model), 0)
                        for model in (MODELS if stage == "quantize" else MODELS[:1])]
                continue
            if stage in PREPARE_FILES:
                name, index = PREPARE_FILES[stage]
                out.append((ROOT / cluster / f"{stage}_qwen3_8b.sh",
                            prepare_argv(cluster, name), index))
                continue
            out += [(ROOT / cluster / f"{stage}_{model}.sh", argv(cluster, stage, model), 0)
                    for model in MODELS]
    return out


def render(args: list[str], index: int = 0) -> str:
    launch = parse(args)
    return build(launch.stages[0], launch, args)[index].script


def main(argv_: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swallow_train.launch.golden")
    parser.add_argument("--check", action="store_true", help="compare; write nothing")
    parser.add_argument("--stages", default=",".join((*TRAINED, *PREPARE_FILES, *SINGLE)),
                        help="e.g. cpt,sft or prepare,prepare-final")
    opts = parser.parse_args(argv_)
    stale = []
    for path, args, index in cases(tuple(opts.stages.split(","))):
        text = render(args, index)
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not opts.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o755)
    verb = "differ" if opts.check else "written"
    for path in stale:
        print(f"{verb}: {path.relative_to(ROOT.parent)}")
    if not stale:
        print("launch/: up to date")
    return 1 if opts.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
