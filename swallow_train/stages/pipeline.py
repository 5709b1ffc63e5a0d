"""CPT -> SFT -> RLVR in one command, each stage starting from the previous stage's HF export.

    swallow-train pipeline                    # tiny CPU default: runs/tiny/{cpt,sft,rl}/hf
    swallow-train pipeline model=tiny_moe name=tiny_moe
    swallow-train pipeline 'overrides.cpt=["train.train_steps=100"]' nproc=2
    swallow-train pipeline 'every_stage=["logging.wandb_mode=online"]'

Every stage is composed and validated before anything runs. A finished stage (its `DONE` file)
is skipped; an interrupted one resumes from its last checkpoint when the same command runs again.
Stages run as child processes that die with the pipeline (stages/procs.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from swallow_train.config import RecipeError, compose
from swallow_train.models.config import ModelConfig
from swallow_train.run import check_stage_dir_model, finished_stage
from swallow_train.run_lock import RunLock

STAGES = ("cpt", "sft", "rl")
TRAINING_STAGES = ("cpt", "sft")


@dataclass(kw_only=True)
class StageOverrides:
    """Extra Hydra overrides of one stage, e.g. `'overrides.cpt=["train.train_steps=10"]'`
    (list items that contain `=` are quoted)."""

    cpt: list[str] = field(default_factory=list)
    sft: list[str] = field(default_factory=list)
    rl: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class PipelineRecipe:
    name: str = "tiny"
    """Run name: every stage writes to `{root}/{name}/{stage}`."""
    root: str = "runs"
    model: ModelConfig
    """The model preset (`model=tiny_moe`); every stage gets `model=<its name>`."""
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    every_stage: list[str] = field(default_factory=list)
    """Hydra overrides given to every stage, e.g. [logging.wandb_mode=online]."""
    overrides: StageOverrides = field(default_factory=StageOverrides)
    """Extra Hydra overrides per stage (after `every_stage`)."""
    nproc: int = 1
    """Processes per training stage (gloo on CPU when > 1)."""
    chat_prompt: str = "1+1は？ 答えを\\boxed{}で示してください。"
    """Asked of every exported checkpoint through the chat template at the end."""
    max_new_tokens: int = 32


def stage_overrides(recipe: PipelineRecipe, stage: str) -> list[str]:
    base = [f"model={recipe.model.name}", f"run.name={recipe.name}", f"run.root={recipe.root}"]
    if stage in TRAINING_STAGES:
        base.append(f"cluster.gpus_per_node={recipe.nproc}")
    return base + list(recipe.every_stage) + list(getattr(recipe.overrides, stage))


def plan(recipe: PipelineRecipe) -> dict[str, object]:
    """Compose (and for CPT/SFT validate the layout of) every stage before running any."""
    unknown = [s for s in recipe.stages if s not in STAGES]
    if unknown:
        raise RecipeError(f"pipeline: unknown stage(s) {unknown}; stages are {STAGES}")
    order = [s for s in STAGES if s in recipe.stages]
    if order != list(recipe.stages):
        raise RecipeError(f"pipeline.stages={recipe.stages} must keep the order {STAGES}")
    if compose("pipeline", [f"model={recipe.model.name}"]).model != recipe.model:
        raise RecipeError("pipeline: model.* overrides are not passed to the stages; give "
                          "them to every stage instead: 'every_stage=[\"model.x=...\"]'")
    recipes = {}
    for stage in recipe.stages:
        recipes[stage] = compose(stage, stage_overrides(recipe, stage))
        if hasattr(recipes[stage], "layout"):
            recipes[stage].layout()
        check_stage_dir_model(recipes[stage].run.stage_dir(stage), recipes[stage].model,
                              fix="give the pipeline another name= (or root=)")
    return recipes


def main(recipe: PipelineRecipe) -> int:
    from swallow_train.stages.pipeline_report import report
    from swallow_train.stages.procs import run_stage

    recipes = plan(recipe)
    run_dir = Path(recipe.root) / recipe.name
    timings: dict[str, float] = {}
    with RunLock(run_dir / ".pipeline.lock", what="pipeline",
                 fix="wait for it, or use another name=..."):
        for stage in recipe.stages:
            stage_dir = recipes[stage].run.stage_dir(stage)
            if finished_stage(stage_dir, recipes[stage]):  # another recipe: RecipeError
                print(f"[pipeline] {stage}: already finished ({stage_dir}/DONE), skipping")
                continue
            print(f"[pipeline] {stage}: starting in {stage_dir}", flush=True)
            start = time.perf_counter()
            nproc = recipe.nproc if stage in TRAINING_STAGES else 1
            code = run_stage([stage, *stage_overrides(recipe, stage)], nproc=nproc)
            timings[stage] = time.perf_counter() - start
            if code != 0:
                print(f"[pipeline] {stage} exited with {code}; run the same command again to "
                      "resume it from its last checkpoint")
                return code
        report(recipe, recipes, run_dir, timings)
    return 0


def redo_report(argv: list[str]) -> int:
    """`python -m swallow_train.stages.pipeline runs/tiny [model=tiny_moe ...]`: the report of
    a finished run again (its overrides as given to the pipeline)."""
    from swallow_train.stages.pipeline_report import report

    run = Path(argv[0])
    pipeline = compose("pipeline", [f"name={run.name}", f"root={run.parent}", *argv[1:]])
    report(pipeline, plan(pipeline), run, {})
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(redo_report(sys.argv[1:]))
