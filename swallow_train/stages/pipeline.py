"""CPT -> SFT -> RLVR -> quantize in one command, each stage starting from the previous stage's
HF export, and (`evaluate`, on by default) an eval of each export after its stage.

    swallow-train pipeline                    # tiny CPU default: runs/tiny/{cpt,sft,rl,quantize}
    swallow-train pipeline stages=[cpt,sft,rl] evaluate=false     # the training stages only
    swallow-train pipeline model=tiny_moe name=tiny_moe
    swallow-train pipeline cpt.train.train_steps=100 nproc=2     # one stage: its name first
    swallow-train pipeline logging.wandb_mode=online             # every stage

The pipeline's own keys are its recipe's fields (name, root, model, stages, nproc, ...); every
other `key=value` goes to every stage, `<stage>.key=value` to one (swallow_train/overrides.py).
Every stage is composed and validated before anything runs. A finished stage (its `DONE` file)
is skipped; an interrupted one resumes from its last checkpoint when the same command runs again.
Stages run as child processes that die with the pipeline (stages/procs.py).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path

from swallow_train.config import RecipeError, compose, to_yaml
from swallow_train.models.config import ModelConfig
from swallow_train.overrides import Override, check_claimed, merge, parse, sections
from swallow_train.registry import STAGES as STAGES_BY_NAME
from swallow_train.registry import Kind, chain, of_kind
from swallow_train.run import check_stage_dir_model, finished_stage
from swallow_train.run_lock import RunLock

STAGES: tuple[str, ...] = chain()
"""The stages the pipeline runs by default, in order (from the stage registry)."""
TRAINING_STAGES = of_kind(Kind.train)
"""Stages that run `nproc` ranks."""
EVAL = "eval"
"""The stage that scores each stage's export when `evaluate` is on."""

StageOverrides = make_dataclass(
    "StageOverrides", [(s, list[str], field(default_factory=list)) for s in (*STAGES, EVAL)],
    kw_only=True)
StageOverrides.__doc__ = ("Extra Hydra overrides of one stage; set them with `cpt.key=value` "
                          "(the old `'overrides.cpt=[...]'` still works, deprecated).")
StageOverrides.__module__ = __name__


@dataclass(kw_only=True)
class PipelineRecipe:
    name: str = "tiny"
    """Run name: every stage writes to `{root}/{name}/{stage}`."""
    root: str = "runs"
    model: ModelConfig
    """The model preset (`model=tiny_moe`); every stage gets `model=<its name>`."""
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    every_stage: list[str] = field(default_factory=list)
    """Hydra overrides given to every stage: the `key=value` arguments that are not the
    pipeline's own keys (`every_stage=[...]` is the deprecated way to set them)."""
    overrides: StageOverrides = field(default_factory=StageOverrides)
    """Extra Hydra overrides per stage, after `every_stage`: the `<stage>.key=value`
    arguments."""
    evaluate: bool = True
    """After each stage, score its export with the eval stage (its suite: `eval.eval_suite=`,
    the offline tiny suite by default); the scores go into the report."""
    nproc: int = 1
    """Processes per training stage (gloo on CPU when > 1)."""
    chat_prompt: str = "1+1は？ 答えを\\boxed{}で示してください。"
    """Asked of every exported checkpoint through the chat template at the end."""
    max_new_tokens: int = 32
    chat_thinking: bool = True
    """The chat template's `enable_thinking` for that question (false: the empty think block
    prefilled, how the tiny recipes train and sample)."""


def stage_overrides(recipe: PipelineRecipe, stage: str, target: str | None = None
                    ) -> list[str]:
    """What `stage` gets (the eval of `target`'s export: `target=`): the run's keys, the
    unscoped overrides of a section its recipe has, then its own."""
    base = [f"model={recipe.model.name}", f"run.name={recipe.name}", f"run.root={recipe.root}"]
    if stage in TRAINING_STAGES:
        base.append(f"cluster.gpus_per_node={recipe.nproc}")
    has = sections(STAGES_BY_NAME[stage].recipe_name)
    common = [o.hydra for o in parse(recipe.every_stage) if o.key.partition(".")[0] in has]
    return merge(base, common, getattr(recipe.overrides, stage),
                 [f"target={target}"] if target else [])


def runs(recipe: PipelineRecipe) -> list[str]:
    """The stages this pipeline runs: its `stages`, and eval when `evaluate` is on."""
    return [*recipe.stages, *([EVAL] if recipe.evaluate else [])]


OWN = tuple(f.name for f in fields(PipelineRecipe))
"""The pipeline's own keys; `model=<preset>` is one, `model.x=...` goes to the stages."""
DEPRECATED = ("every_stage", "overrides")


def _own(o: Override) -> bool:
    head = o.key.partition(".")[0]
    return o.stage is None and (o.key == "model" or (head in OWN and head != "model"))


def compose_pipeline(argv: list[str]) -> PipelineRecipe:
    """The pipeline recipe from its command line: its own keys compose it, the others become
    `every_stage` (unscoped) and `overrides.<stage>` (`<stage>.key=value`)."""
    items = parse(argv)
    own = [o for o in items if _own(o)]
    old = [o.arg for o in own if o.key.partition(".")[0] in DEPRECATED]
    if old:
        print(f"swallow-train pipeline: warning: {' '.join(old)}: deprecated; give key=value "
              "(every stage) or <stage>.key=value (one stage) directly", file=sys.stderr)
    recipe = compose("pipeline", [o.hydra for o in own])
    stray = sorted({o.stage for o in items if o.stage and o.stage not in runs(recipe)})
    if stray:
        raise RecipeError(f"{', '.join(s + '.' for s in stray)}* arguments name a stage that "
                          f"the pipeline does not run (stages={recipe.stages})")
    recipe.every_stage += [o.hydra for o in items if not _own(o) and o.stage is None]
    for o in items:
        if o.stage:
            getattr(recipe.overrides, o.stage).append(o.hydra)
    return recipe


def command(argv: list[str]) -> int:
    """`swallow-train pipeline [--dry-run] [key=value ...]`."""
    if any(a in ("-h", "--help") for a in argv):
        print((__doc__ or "").strip())
        return 0
    recipe = compose_pipeline([a for a in argv if a != "--dry-run"])
    if "--dry-run" in argv:  # every stage composed and validated; nothing runs
        plan(recipe)
        evals = plan_evals(recipe)
        print(to_yaml(recipe))
        for stage in recipe.stages:
            print(f"# {stage}: {' '.join(stage_overrides(recipe, stage))}")
            if stage in evals:
                print(f"# {EVAL} {stage}: {' '.join(stage_overrides(recipe, EVAL, stage))}")
        return 0
    return main(recipe)


def plan(recipe: PipelineRecipe) -> dict[str, object]:
    """Compose (and for CPT/SFT validate the layout of) every stage before running any."""
    unknown = [s for s in recipe.stages if s not in STAGES]
    if unknown:
        raise RecipeError(f"pipeline: unknown stage(s) {unknown}; stages are {STAGES}")
    order = [s for s in STAGES if s in recipe.stages]
    if order != list(recipe.stages):
        raise RecipeError(f"pipeline.stages={recipe.stages} must keep the order {STAGES}")
    if compose("pipeline", [f"model={recipe.model.name}"]).model != recipe.model:
        raise RecipeError("pipeline: model.* overrides of the pipeline recipe do not reach the "
                          "stages; give them on the command line (`swallow-train pipeline "
                          "model.x=...`), which passes them to every stage")
    check_claimed(parse(recipe.every_stage), [STAGES_BY_NAME[s].recipe_name for s in runs(recipe)])
    recipes = {}
    for stage in recipe.stages:
        recipes[stage] = compose(stage, stage_overrides(recipe, stage))
        if hasattr(recipes[stage], "layout"):
            recipes[stage].layout()
        check_stage_dir_model(recipes[stage].run.stage_dir(stage), recipes[stage].model,
                              fix="give the pipeline another name= (or root=)")
    return recipes


def plan_evals(recipe: PipelineRecipe) -> dict[str, object]:
    """stage -> the eval recipe of its export ({} when `evaluate` is off)."""
    if not recipe.evaluate:
        return {}
    return {stage: compose(EVAL, stage_overrides(recipe, EVAL, stage))
            for stage in recipe.stages}


def _run(label: str, args: list[str], stage_dir: Path, stage_recipe: object, nproc: int,
         timings: dict[str, float]) -> int:
    """One stage as child processes, unless it finished already with this recipe."""
    from swallow_train.stages.procs import run_stage

    if finished_stage(stage_dir, stage_recipe):  # another recipe: RecipeError
        print(f"[pipeline] {label}: already finished ({stage_dir}/DONE), skipping")
        return 0
    print(f"[pipeline] {label}: starting in {stage_dir}", flush=True)
    start = time.perf_counter()
    code = run_stage(args, nproc=nproc)
    timings[label] = time.perf_counter() - start
    if code != 0:
        print(f"[pipeline] {label} exited with {code}; run the same command again: finished "
              "stages are skipped, a training stage resumes from its last checkpoint")
    return code


def main(recipe: PipelineRecipe) -> int:
    from swallow_train.evaluation.runner import recipe_dir
    from swallow_train.stages.pipeline_report import report

    recipes, evals = plan(recipe), plan_evals(recipe)
    run_dir = Path(recipe.root) / recipe.name
    timings: dict[str, float] = {}
    with RunLock(run_dir / ".pipeline.lock", what="pipeline",
                 fix="wait for it, or use another name=..."):
        for stage in recipe.stages:
            nproc = recipe.nproc if stage in TRAINING_STAGES else 1
            code = _run(stage, [stage, *stage_overrides(recipe, stage)],
                        recipes[stage].run.stage_dir(stage), recipes[stage], nproc, timings)
            if code == 0 and stage in evals:
                code = _run(f"{EVAL} {stage}", [EVAL, *stage_overrides(recipe, EVAL, stage)],
                            recipe_dir(evals[stage]).path, evals[stage], 1, timings)
            if code != 0:
                return code
        report(recipe, recipes, run_dir, timings, evals)
    return 0


def redo_report(argv: list[str]) -> int:
    """`python -m swallow_train.stages.pipeline runs/tiny [model=tiny_moe ...]`: the report of
    a finished run again (its overrides as given to the pipeline)."""
    from swallow_train.stages.pipeline_report import report

    run = Path(argv[0])
    pipeline = compose_pipeline([f"name={run.name}", f"root={run.parent}", *argv[1:]])
    report(pipeline, plan(pipeline), run, {}, plan_evals(pipeline))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(redo_report(sys.argv[1:]))
