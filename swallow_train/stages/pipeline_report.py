"""The end of a pipeline run: every HF export is loaded with `transformers` and asked a chat
question through its chat template (not the quantized one: its evals stand for it); a table of
per-stage results, one of each stage's eval scores (stage x task), `summary.json`, a
`pipeline.png` of the stages' curves and an `eval.png` of the scores are written next to the run.

    python -m swallow_train.stages.pipeline runs/tiny [model=tiny_moe]  # redo a run's report
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from swallow_train.checkpoint_files import write_atomic
from swallow_train.metrics.plot import read_jsonl
from swallow_train.models.config import ModelConfig
from swallow_train.registry import STAGES, Kind
from swallow_train.run import RunConfig


class Asked(Protocol):
    """The pipeline recipe's fields the report reads (`stages/pipeline.py:PipelineRecipe`,
    which imports this module: a Protocol instead of an import cycle)."""

    @property
    def name(self) -> str: ...
    @property
    def model(self) -> ModelConfig: ...
    @property
    def chat_prompt(self) -> str: ...
    @property
    def max_new_tokens(self) -> int: ...
    @property
    def chat_thinking(self) -> bool: ...


class StageRecipe(Protocol):
    """Any stage's composed recipe, as far as the report goes: where its stage wrote."""

    @property
    def run(self) -> RunConfig: ...


def curve(stage_dir: Path, stage: str) -> tuple[str, list[tuple[int, float]]]:
    """The curve that tells how a stage went (the registry's `curve` keys, first logged)."""
    rows = read_jsonl(stage_dir / "metrics.jsonl")
    for key in STAGES[stage].curve or ("loss",):
        points = [(r["step"], float(r[key])) for r in rows if r.get(key) is not None]
        if points:
            return key, points
    return "-", []


def chat(hf_dir: Path, prompt: str, max_new_tokens: int, thinking: bool = True) -> str:
    """Greedy answer of the exported checkpoint to one user message (chat template, its
    `enable_thinking` = `thinking`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                   add_generation_prompt=True, enable_thinking=thinking)
    ids = tok(text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=False)


def _plot(curves: dict[str, tuple[str, list[tuple[int, float]]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (stage, (key, points)) in zip(axes[0], curves.items(), strict=True):
        ax.plot([p[0] for p in points], [p[1] for p in points])
        ax.set_title(f"{stage}: {key}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)


def eval_scores(recipes: Mapping[str, StageRecipe], evals: Mapping[str, Any]
                ) -> dict[str, dict[str, float]]:
    """stage -> {"<task>/<metric>": score} of its finished eval ({} when it has none)."""
    from swallow_train.evaluation.runner import read_summary

    return {stage: read_summary(recipes[stage].run.stage_dir(stage), e.eval_suite.name)
            for stage, e in evals.items()}


def _plot_scores(scores: dict[str, dict[str, float]], out: Path) -> None:
    """Grouped bars: one group per task/metric, one bar per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({task for row in scores.values() for task in row})
    width = 0.8 / max(1, len(scores))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(tasks) * max(1, len(scores))), 3.4))
    for i, (stage, row) in enumerate(scores.items()):
        ax.bar([t + i * width for t in range(len(tasks))],
               [row.get(task, float("nan")) for task in tasks], width, label=stage)
    ax.set_xticks([t + width * (len(scores) - 1) / 2 for t in range(len(tasks))], tasks,
                  rotation=20, ha="right", fontsize=8)
    ax.set_title("eval scores by stage")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)


def _score_table(scores: dict[str, dict[str, float]]) -> Any:
    from rich.table import Table

    tasks = sorted({task for row in scores.values() for task in row})
    table = Table(title="eval (stage x task)")
    for column in ("stage", *tasks):
        table.add_column(column)
    for stage, row in scores.items():
        table.add_row(stage, *(f"{row[t]:.4f}" if t in row else "-" for t in tasks))
    return table


def report(recipe: Asked, recipes: Mapping[str, StageRecipe], run_dir: Path,
           timings: dict[str, float], evals: Mapping[str, Any] | None = None
           ) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    rows, curves = [], {}
    for stage, stage_recipe in recipes.items():
        stage_dir = stage_recipe.run.stage_dir(stage)
        key, points = curve(stage_dir, stage)
        curves[stage] = (key, points)
        hf = stage_dir / "hf"
        rows.append({
            "stage": stage, "metric": key, "steps": len(points),
            "first": points[0][1] if points else None, "last": points[-1][1] if points else None,
            "seconds": round(timings[stage], 1) if stage in timings else None,
            "hf": str(hf), "reply": None if STAGES[stage].kind is Kind.quantize
            else chat(hf, recipe.chat_prompt, recipe.max_new_tokens, recipe.chat_thinking),
        })
    scores = eval_scores(recipes, evals or {})
    summary = {"name": recipe.name, "model": recipe.model.name, "prompt": recipe.chat_prompt,
               "thinking": recipe.chat_thinking, "stages": rows, "eval": scores}
    write_atomic(run_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False))
    if any(points for _, points in curves.values()):
        _plot(curves, run_dir / "pipeline.png")
    if any(scores.values()):
        _plot_scores(scores, run_dir / "eval.png")
    table = Table(title=f"swallow-train pipeline: {recipe.name} ({recipe.model.name})")
    for column in ("stage", "metric", "steps", "first", "last", "time (s)", "HF export"):
        table.add_column(column)
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    for r in rows:
        table.add_row(r["stage"], r["metric"], str(r["steps"]), fmt(r["first"]), fmt(r["last"]),
                      "-" if r["seconds"] is None else str(r["seconds"]), r["hf"])
    console = Console()
    console.print(table)
    if any(scores.values()):
        console.print(_score_table(scores))
    for r in rows:
        if r["reply"] is not None:
            console.print(f"[bold]{r['stage']}[/bold] answers {recipe.chat_prompt!r}: "
                          f"{r['reply']!r}", markup=True, highlight=False)
    charts = "pipeline.png" + (", eval.png" if any(scores.values()) else "")
    console.print(f"summary: {run_dir / 'summary.json'}; charts: {charts} in {run_dir}")
    return summary

