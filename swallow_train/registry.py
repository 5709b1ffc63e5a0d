"""The stage registry: each stage's recipe class, entry point, job template and place in the
chain, in one table. The recipes Hydra composes (`config.RECIPES`), the CLI's stage commands
(`cli.COMMANDS`), the pipeline's stages and the launch order are all derived from it.

    python -c "from swallow_train.registry import STAGES; print(*STAGES, sep='\\n')"

Only dotted names live here: importing it imports no stage module, so `compose()` stays light.
A new stage is one `Stage(...)` line below (plus its recipe module and, if launched, template).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    """What a stage is, which decides how the pipeline and `launch` run it."""

    train = "train"
    """megatron-core training (CPT, SFT): `nproc` ranks, a parallel layout, prepared data."""
    rl = "rl"
    """RLVR: slime on a Ray cluster, or the local GRPO backend as one process."""
    prepare = "prepare"
    """A CPU job that prepares the data of the stage named by `recipe`."""
    eval = "eval"
    """Scores the HF export of another stage (one 1-node job after each stage it follows)."""
    quantize = "quantize"
    """Quantizes the HF export of the stage named by `after` (a 1-node job)."""
    driver = "driver"
    """Runs other stages (the pipeline); never a job of its own."""


@dataclass(frozen=True)
class Stage:
    name: str
    """The command (`swallow-train <name>`), the stage directory and the override prefix."""
    kind: Kind
    entry: str
    """"module:function" called with the typed recipe (a driver's: with its arguments)."""
    help: str
    schema: str | None = None
    """"module:RootDataclass" of its own recipe; None: it composes the recipe `recipe`."""
    recipe: str = ""
    """The recipe it composes ('' : its own, `name`)."""
    template: str | None = None
    """Its job template in `swallow_train/launch/templates/`; None: `launch` cannot run it."""
    after: str | None = None
    """The stage whose HF export it starts from, and whose job its job waits for."""
    curve: tuple[str, ...] = ()
    """The `metrics.jsonl` keys that tell how it went, first present wins (pipeline report)."""
    nodes: int | None = None
    """Its job's fixed node count (eval, quantize: 1); None: `launch nodes=`."""

    @property
    def recipe_name(self) -> str:
        return self.recipe or self.name


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage(name="prepare", kind=Kind.prepare, recipe="cpt", template="prepare.sh",
          entry="swallow_train.stages.prepare:cpt",
          help="tokenize the corpora of a CPT manifest to megatron .bin/.idx"),
    Stage(name="cpt", kind=Kind.train, template="train.sh", curve=("loss",),
          schema="swallow_train.stages.cpt:CPTRecipe", entry="swallow_train.stages.cpt:main",
          help="continual pretraining (megatron-core)"),
    Stage(name="prepare-sft", kind=Kind.prepare, recipe="sft", template="prepare.sh",
          entry="swallow_train.stages.prepare:sft",
          help="filter, render and pack the conversations of an SFT manifest"),
    Stage(name="sft", kind=Kind.train, template="train.sh", after="cpt", curve=("loss",),
          schema="swallow_train.stages.sft:SFTRecipe", entry="swallow_train.stages.sft:main",
          help="supervised fine-tuning (megatron-core)"),
    Stage(name="prepare-rl", kind=Kind.prepare, recipe="rl", template="prepare.sh",
          entry="swallow_train.stages.prepare:rl",
          help="turn the Dolci-Think-RL math subset into slime prompt JSONL"),
    Stage(name="rl", kind=Kind.rl, template="rl.sh", after="sft",
          curve=("reward_mean", "reward", "loss"),
          schema="swallow_train.stages.rl:RLRecipe", entry="swallow_train.stages.rl:main",
          help="RLVR: slime on clusters, the local GRPO backend on CPU"),
    Stage(name="quantize", kind=Kind.quantize, after="rl", template="single.sh", nodes=1,
          curve=("perplexity_ratio", "pass_at_1_drop"),
          schema="swallow_train.stages.quantize:QuantizeRecipe",
          entry="swallow_train.stages.quantize:main",
          help="AWQ-INT4 (W4A16) of the RL export, calibrated on validated generations, gated"),
    Stage(name="eval", kind=Kind.eval, template="single.sh", nodes=1,
          schema="swallow_train.stages.eval:EvalRecipe",
          entry="swallow_train.stages.eval:main",
          help="evaluate an HF checkpoint with lm-eval (tiny offline suite, Swallow suites)"),
    Stage(name="pipeline", kind=Kind.driver,
          schema="swallow_train.stages.pipeline:PipelineRecipe",
          entry="swallow_train.stages.pipeline:command",
          help="CPT -> SFT -> RLVR -> quantize, each from the last one's export, with evals"),
)}
"""Every stage, in the order `launch stage=all` submits them."""


def of_kind(*kinds: Kind) -> tuple[str, ...]:
    """The names of the stages of these kinds, in registry order."""
    return tuple(name for name, stage in STAGES.items() if stage.kind in kinds)


def recipes() -> dict[str, str]:
    """stage -> "module:RootDataclass" of every stage with a recipe of its own."""
    return {name: stage.schema for name, stage in STAGES.items() if stage.schema}


def chain() -> tuple[str, ...]:
    """The model stages in chain order (each starts from the export of its `after`)."""
    return of_kind(Kind.train, Kind.rl, Kind.quantize)


def prepares() -> dict[str, str]:
    """prepare command -> the stage whose recipe (and data) it prepares."""
    return {name: STAGES[name].recipe_name for name in of_kind(Kind.prepare)}


def launchable() -> tuple[str, ...]:
    """Every stage `launch` renders a job for, in submission order."""
    return tuple(name for name, stage in STAGES.items() if stage.template)
