"""The eval recipe (`recipes/eval.yaml` + an `eval_suite/` preset): what to evaluate, with which
suite, backend and generation settings. Composed by `swallow-train eval`.

    swallow-train eval --dry-run model=tiny_dense target=sft
    swallow-train eval model=qwen3_8b init.hf=Qwen/Qwen3-8B-Base target=base \\
        eval_suite=swallow_pretrained
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swallow_train.cluster import ClusterConfig
from swallow_train.config import RecipeError
from swallow_train.data.tiny_math import TINY_EVAL_SIZE
from swallow_train.evaluation.config import (
    Backend,
    GenerationConfig,
    SuiteConfig,
    SuiteKind,
    VerifyConfig,
    VLLMConfig,
)
from swallow_train.metrics.config import LoggingConfig
from swallow_train.models.config import ModelConfig
from swallow_train.run import InitConfig, RunConfig

BASE = "base"
"""The target name of a checkpoint given by `init.hf` alone (the model before CPT)."""


@dataclass(kw_only=True)
class EvalRecipe:
    model: ModelConfig
    """The preset: its tokenizer is used when the checkpoint has none."""
    cluster: ClusterConfig
    eval_suite: SuiteConfig
    target: str | None = None
    """What is evaluated, by name: the results go to `runs/<name>/<target>/eval/<suite>/`.
    Alone (`target=sft`), the export `runs/<name>/<target>/hf` of that stage of this run."""
    init: InitConfig = field(default_factory=InitConfig)
    """Or the checkpoint as other stages name their start: `init.from_stage=sft` (= target=sft)
    or `init.hf=DIR|hub-id` (any HF checkpoint: the base model, a quantized one; target
    defaults to `base`)."""
    backend: Backend = Backend.auto
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    batch_size: int = 32
    """Requests per forward pass of the HF backend (vLLM batches by itself). On CPU a step's
    cost is mostly reading the 151,936-row LM head, so larger batches are nearly free."""
    seed: int = 0
    """lm-eval's seeds (Python, NumPy, torch, few-shot sampling) and vLLM's; the tiny tasks'."""
    run: RunConfig = field(default_factory=RunConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self) -> None:
        # one spelling per checkpoint, so that config.yaml (skip-if-done) does not depend on it
        if self.init.hf is None and self.init.from_stage is None and self.target:
            self.init.from_stage = self.target
        if self.target is None:
            self.target = BASE if self.init.hf else self.init.from_stage

    def recipe_errors(self) -> list[str]:
        """What cannot be evaluated as asked (config.check runs it at compose time)."""
        s, errors = self.eval_suite, []
        if s.samples > 1 and not s.sampling:
            errors.append(f"eval_suite.samples={s.samples} with greedy decoding gives k equal "
                          "answers: set eval_suite.sampling=true, or eval_suite.samples=1")
        if s.sampling and self.generation.temperature <= 0:
            errors.append("eval_suite.sampling=true needs generation.temperature > 0: set it "
                          "(the model card's 0.6), or eval_suite.sampling=false for greedy")
        if s.thinking and not s.chat_template:
            errors.append("eval_suite.thinking=true needs eval_suite.chat_template=true (the "
                          "think block is the chat template's)")
        if s.thinking and s.stop is not None and any(x.strip() == "" for x in s.stop):
            errors.append(f"eval_suite.stop={s.stop} holds a whitespace stop string: a thinking "
                          "model would stop right after <think>; stop on <|im_end|> instead")
        unmatched = [k for k in s.math if not any(t == k or t.startswith(k + "_") or
                                                  k.startswith(t + "_") for t in s.tasks)]
        if unmatched:
            errors.append(f"eval_suite.math names {', '.join(unmatched)}, not among "
                          "eval_suite.tasks (or their subtasks): add them to the tasks or drop "
                          "them from eval_suite.math")
        if s.kind is SuiteKind.tiny:
            errors += self._tiny_errors()
        return errors

    def target_name(self) -> str:
        """The target; RecipeError naming the fix when nothing says what to evaluate (checked
        when the stage runs, so that `--dry-run` and launch rendering work without one)."""
        if self.target is None:
            raise RecipeError("nothing to evaluate: set target=<stage of this run> (e.g. "
                              "target=sft) or init.hf=<HF directory or hub id>")
        return self.target

    def _tiny_errors(self) -> list[str]:
        from swallow_train.evaluation.tiny_suite import TASKS

        s, errors = self.eval_suite, []
        unknown = [t for t in s.tasks if t not in TASKS]
        if unknown:
            errors.append(f"eval_suite.tasks: {', '.join(unknown)} is no tiny task: pick from "
                          f"{', '.join(TASKS)}")
        if s.tiny_math_items > TINY_EVAL_SIZE:
            errors.append(f"eval_suite.tiny_math_items={s.tiny_math_items} > {TINY_EVAL_SIZE}, "
                          "the tiny prompts SFT and RL hold out (TINY_EVAL_SIZE in "
                          "data/tiny_math.py): more would evaluate trained-on prompts; lower it "
                          "or raise TINY_EVAL_SIZE and the tiny RL recipe's data.eval_size")
        return errors
