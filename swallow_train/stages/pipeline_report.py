"""The end of a pipeline run: every HF export is loaded with `transformers` and asked a chat
question through its chat template; a table of per-stage results, `summary.json` and a
`pipeline.png` of the three curves are written next to the run.

    python -m swallow_train.stages.pipeline runs/tiny [model=tiny_moe]  # redo a run's report
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from swallow_train.checkpoint_files import write_atomic
from swallow_train.metrics.plot import read_jsonl

# The curve that tells how a stage went, by the key its metrics.jsonl logs.
CURVES = {"cpt": ("loss",), "sft": ("loss",), "rl": ("reward_mean", "reward", "loss")}


def curve(stage_dir: Path, stage: str) -> tuple[str, list[tuple[int, float]]]:
    rows = read_jsonl(stage_dir / "metrics.jsonl")
    for key in CURVES.get(stage, ("loss",)):
        points = [(r["step"], float(r[key])) for r in rows if r.get(key) is not None]
        if points:
            return key, points
    return "-", []


def chat(hf_dir: Path, prompt: str, max_new_tokens: int) -> str:
    """Greedy answer of the exported checkpoint to one user message (chat template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                   add_generation_prompt=True)
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


def report(recipe: Any, recipes: dict[str, Any], run_dir: Path,
           timings: dict[str, float]) -> dict[str, Any]:
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
            "hf": str(hf), "reply": chat(hf, recipe.chat_prompt, recipe.max_new_tokens),
        })
    summary = {"name": recipe.name, "model": recipe.model.name, "prompt": recipe.chat_prompt,
               "stages": rows}
    write_atomic(run_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False))
    if any(points for _, points in curves.values()):
        _plot(curves, run_dir / "pipeline.png")
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
    for r in rows:
        console.print(f"[bold]{r['stage']}[/bold] answers {recipe.chat_prompt!r}: {r['reply']!r}",
                      markup=True, highlight=False)
    console.print(f"summary: {run_dir / 'summary.json'}; curves: {run_dir / 'pipeline.png'}")
    return summary

