"""`swallow-train eval`: evaluate one checkpoint with one suite, into the stage-directory
contract at `runs/<name>/<target>/eval/<suite>/`:

    config.yaml            the resolved recipe (skip-if-done: same recipe -> skipped)
    tasks/                 the tiny suite's generated JSONL and task YAMLs (tiny suites)
    results.json           lm-eval's results (metrics, task configs, versions), no samples
    samples/<task>.jsonl   every logged sample (prompt arguments, responses, filtered, metrics)
    verified/<task>.jsonl  math tasks: per prompt the verifier's score of each of the k samples
    summary.json           {"metrics": {"<task>/<metric>": value}, target, checkpoint, ...}
    metrics.jsonl          the same metrics through MetricsLogger (and W&B, offline by default)
    DONE                   written last

    read_summary(Path("runs/tiny/sft"))     # {"tiny_math/pass@1": 0.41, "tiny_mc_ja/acc": ...}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swallow_train.config import RecipeError
from swallow_train.evaluation.config import SuiteKind
from swallow_train.evaluation.recipe import EvalRecipe
from swallow_train.metrics.logger import MetricsLogger
from swallow_train.stage_dir import StageDir
from swallow_train.tokenizer import load_tokenizer, resolve_tokenizer_path

SUMMARY = "summary.json"


def eval_dir(target_stage_dir: Path, suite: str) -> StageDir:
    """The eval stage directory of one suite under a target's stage directory."""
    return StageDir(Path(target_stage_dir) / "eval" / suite, "eval")


def recipe_dir(recipe: EvalRecipe) -> StageDir:
    return eval_dir(recipe.run.stage_dir(recipe.target_name()), recipe.eval_suite.name)


def read_summary(target_stage_dir: Path, suite: str = "tiny") -> dict[str, float]:
    """The metrics of a finished eval of `suite` under `target_stage_dir` (`runs/<name>/sft`),
    or {} when there is none (not run, or not finished)."""
    sd = eval_dir(target_stage_dir, suite)
    if not sd.is_done() or not (sd.path / SUMMARY).is_file():
        return {}
    metrics = json.loads((sd.path / SUMMARY).read_text(encoding="utf-8"))["metrics"]
    return {str(k): float(v) for k, v in metrics.items()}


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or spec.count("/") != 1


def resolve_checkpoint(recipe: EvalRecipe) -> str:
    """The HF directory (or hub id) to evaluate; RecipeError naming the fix when it is not
    there."""
    hf = recipe.init.hf
    if hf:
        path = Path(hf).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise RecipeError(f"init.hf={hf} has no config.json: point init.hf at a Hugging "
                                  "Face model directory (a stage's hf/ export)")
            return str(path)
        if _looks_like_path(hf):
            raise RecipeError(f"init.hf={hf}: no such directory: point init.hf at a Hugging Face "
                              "model directory or a hub id (org/name)")
        return hf
    stage = recipe.init.from_stage
    sd = StageDir.of(recipe.run, str(stage))
    if not (sd.hf / "config.json").is_file():
        raise RecipeError(
            f"target={stage}: {sd.hf} holds no Hugging Face export (no config.json): run "
            f"`swallow-train {stage}` for run.name={recipe.run.name} first (a stage writes hf/ "
            "when it ends), convert a megatron checkpoint with `swallow-train export`, or "
            "evaluate any HF directory with init.hf=DIR")
    if not sd.is_done():
        raise RecipeError(
            f"target={stage}: {sd.path} has no DONE, the stage has not finished and {sd.hf} may "
            f"be stale: finish it (rerun `swallow-train {stage}`), or evaluate that directory "
            f"as it is with init.hf={sd.hf} target={stage}")
    return str(sd.hf)


def tokenizer_for(checkpoint: str, recipe: EvalRecipe) -> str:
    """The checkpoint's own tokenizer (and chat template) when it has one, else the preset's."""
    path = Path(checkpoint)
    if not path.is_dir() or (path / "tokenizer_config.json").is_file():
        return checkpoint
    return resolve_tokenizer_path(recipe.model.tokenizer)


def harness_metrics(results: dict[str, Any]) -> dict[str, float]:
    """`<task>/<metric>` (`<metric>[<filter>]` for a named filter) of lm-eval's results, every
    task and group, without the standard errors."""
    out: dict[str, float] = {}
    for task, values in sorted(results.get("results", {}).items()):
        for key, value in values.items():
            if "," not in key or "_stderr" in key or isinstance(value, bool):
                continue
            if not isinstance(value, int | float) or math.isnan(value):
                continue
            metric, filt = key.split(",", 1)
            out[f"{task}/{metric if filt == 'none' else f'{metric}[{filt}]'}"] = float(value)
    return out


def token_counter(tokenizer: str) -> Callable[[str], int]:
    """Tokens of a text as the checkpoint's tokenizer splits it (no special tokens)."""
    tok = load_tokenizer(tokenizer)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_outputs(directory: Path, output: dict[str, Any],
                  verified: dict[str, list[dict[str, Any]]]) -> None:
    """results.json, samples/<task>.jsonl and verified/<task>.jsonl (each atomically)."""
    samples = output.get("samples") or {}
    _write(directory / "results.json",
           json.dumps({k: v for k, v in output.items() if k != "samples"}, indent=2,
                      ensure_ascii=False, default=str) + "\n")
    for task, rows in samples.items():
        _write(directory / "samples" / f"{task}.jsonl", "".join(_dump(r) + "\n" for r in rows))
    for task, rows in verified.items():
        _write(directory / "verified" / f"{task}.jsonl", "".join(_dump(r) + "\n" for r in rows))


def evaluate(recipe: EvalRecipe) -> int:
    """Run the suite on the target's checkpoint (skipped when this recipe already finished)."""
    from swallow_train.evaluation import harness
    from swallow_train.evaluation.math_score import score_math, verify_pooled
    from swallow_train.evaluation.tiny_suite import TEXT_TASK, text_loss, write_tiny_tasks

    sd, suite = recipe_dir(recipe), recipe.eval_suite
    if sd.finished(recipe, recipe.model):
        print(f"eval: {sd.path} is done with this recipe; skipped")
        return 0
    checkpoint = resolve_checkpoint(recipe)
    tokenizer = tokenizer_for(checkpoint, recipe)
    backend = harness.resolve_backend(recipe.backend)
    with sd.lock():
        sd.write_config(recipe)
        include = None
        if suite.kind is SuiteKind.tiny:
            harness.go_offline()
            include = write_tiny_tasks(sd.path / "tasks", suite.tasks, seed=recipe.seed,
                                       items=suite.tiny_items, math_items=suite.tiny_math_items,
                                       split_seed=suite.tiny_split_seed)
        output = harness.run_harness(harness.HarnessRun(
            hf=checkpoint, tokenizer=tokenizer, suite=suite,
            generation=recipe.generation, backend=backend, vllm=recipe.vllm,
            batch_size=recipe.batch_size, seed=recipe.seed, include_path=include))
        samples = output.get("samples") or {}
        scores = score_math(samples, suite.math, verify_pooled(recipe.verify))
        metrics = harness_metrics(output) | scores.metrics
        if TEXT_TASK in samples:
            metrics[f"{TEXT_TASK}/loss"] = text_loss(samples[TEXT_TASK], token_counter(tokenizer))
        write_outputs(sd.path, output, scores.rows)
        _write(sd.path / SUMMARY, json.dumps({
            "target": recipe.target, "checkpoint": checkpoint, "suite": suite.name,
            "backend": backend.value, "samples": suite.samples, "metrics": metrics,
        }, indent=2, ensure_ascii=False) + "\n")
        log = MetricsLogger(sd.path, recipe.logging, stage=f"eval-{recipe.target}-{suite.name}",
                            run_name=recipe.run.name, config={"suite": suite.name,
                                                              "checkpoint": checkpoint})
        log.log(0, metrics)
        log.close()
        sd.mark_done(step=0)
    width = max((len(k) for k in metrics), default=10)
    print(f"eval {recipe.target} ({checkpoint}), suite {suite.name}, {backend.value}:")
    for key, value in metrics.items():
        print(f"  {key:<{width}}  {value:.4f}")
    print(f"-> {sd.path}")
    return 0
