"""Evaluate a Hugging Face checkpoint with lm-evaluation-harness: a stage's export, the base
model, or a quantized one, into `runs/<name>/<target>/eval/<suite>/` (swallow_train/evaluation).

    swallow-train eval model=tiny_dense target=sft               # the offline tiny suite, CPU
    swallow-train eval model=qwen3_8b target=rl eval_suite=swallow_posttrained   # vLLM on a GPU
    swallow-train eval model=qwen3_8b init.hf=Qwen/Qwen3-8B-Base eval_suite=swallow_pretrained
"""

from __future__ import annotations

from swallow_train.evaluation.recipe import EvalRecipe
from swallow_train.evaluation.runner import read_summary

__all__ = ["EvalRecipe", "main", "read_summary"]


def main(recipe: EvalRecipe) -> int:
    from swallow_train.evaluation.runner import evaluate

    return evaluate(recipe)
