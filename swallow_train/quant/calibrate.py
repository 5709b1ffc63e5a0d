"""Build the calibration set: sample the RL model on the RL train prompts (seeded order, the
model card's sampling), keep the validated generations (`quant/filter.py`), and split them into
`num_samples` for AWQ and `heldout` for the gate. Prompts are tried in rounds sized by the yield
seen so far, until enough are kept or the prompts run out.

    result = build_calibration(model_path, tok, cfg, train_path, progress=True)
    write_jsonl(stage_dir / "calibration.jsonl", result.calibration)
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from swallow_train.errors import SwallowError
from swallow_train.quant.config import CalibrationConfig
from swallow_train.quant.filter import IM_END, Generation, judge, reject_counts
from swallow_train.quant.generate import Sampler, progress_bar
from swallow_train.rl.prompt_rows import read_prompt_file
from swallow_train.rl.rollout import Prompt


class CalibrationError(SwallowError):
    """Too few validated generations to calibrate on."""


@dataclass
class Calibration:
    calibration: list[dict[str, Any]]
    """Rows for AWQ: `text` (the chat, prompt and response, as the model saw and wrote it),
    `prompt` (messages), `response`, `label`, `source`, `id`."""
    heldout: list[dict[str, Any]]
    """Rows of the same form, never calibrated on (the gate's perplexity set)."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Prompts tried, generations, every reject reason's count, kept, the split."""


EMPTY_THINK = "<think>\n\n</think>\n\n"
"""What Qwen3's chat template appends to the prompt with enable_thinking=False."""


def load_prompts(path: Path, tok: Any, max_prompt_len: int, enable_thinking: bool = True,
                 ) -> tuple[list[Prompt], list[dict]]:
    """Every row of a prepared prompt JSONL, chat-templated with `enable_thinking` (as the RL
    stage samples), with the rows; prompts over `max_prompt_len` tokens are skipped."""
    import torch

    prompts, rows = [], []
    for _line, row in read_prompt_file(path):
        text = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True,
                                       enable_thinking=enable_thinking)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= max_prompt_len:
            prompts.append(Prompt(torch.tensor([ids]), row["label"],
                                  str(row["metadata"].get("source_name", ""))))
            rows.append({**row, "templated": text})
    return prompts, rows


def _row(gen: Generation, row: dict[str, Any]) -> dict[str, Any]:
    return {"text": row["templated"] + gen.text + IM_END, "prompt": row["prompt"],
            "response": gen.text, "label": row["label"], "response_tokens": len(gen.token_ids),
            "source": row["metadata"].get("source_name", ""),
            "id": row["metadata"].get("id", "")}


def _round_size(need: int, kept: int, tried: int, n: int, floor: int) -> int:
    """Prompts for the next round: what the yield so far says is needed, plus a quarter."""
    yield_per_prompt = max(kept / tried, 0.05) if tried else 1.0
    return max(floor, math.ceil(1.25 * (need - kept) / yield_per_prompt / n))


def build_calibration(model_path: str | Path, tok: Any, cfg: CalibrationConfig,
                      train_path: Path, *, progress: bool) -> Calibration:
    """Sample, validate and split; CalibrationError (with every reject count and the fixes)
    when fewer than `cfg.min_samples` generations pass."""
    prompts, rows = load_prompts(train_path, tok, cfg.max_prompt_len, cfg.enable_thinking)
    order = list(range(len(prompts)))
    random.Random(cfg.seed).shuffle(order)
    if cfg.max_prompts is not None:
        order = order[: cfg.max_prompts]
    need, n = cfg.num_samples + cfg.heldout, cfg.samples_per_prompt
    kept: list[dict[str, Any]] = []
    verdicts: list[Any] = []
    tried = 0
    with Sampler(model_path, tok, backend=cfg.backend, max_new_tokens=cfg.max_new_tokens,
                 sampling=cfg.sampling, batch_size=cfg.batch_size,
                 max_prompt_len=cfg.max_prompt_len) as sampler:
        bar = progress_bar(len(order), "calibration", progress)
        while len(kept) < need and tried < len(order):
            size = _round_size(need, len(kept), tried, n, min(cfg.batch_size, need))
            chosen = order[tried: tried + size]
            gens = sampler.sample([prompts[i] for i in chosen], n=n,
                                  seed=cfg.seed * 1_000_003 + tried, bar=bar)
            labels = [prompts[chosen[g.prompt_index]].label for g in gens]
            judged = gens if cfg.enable_thinking else [  # the template prefilled the thinking
                replace(g, text=EMPTY_THINK + g.text) for g in gens]
            round_verdicts = judge(judged, labels)
            verdicts += round_verdicts
            kept += [_row(g, rows[chosen[g.prompt_index]])
                     for g, v in zip(gens, round_verdicts, strict=True) if v is None]
            tried += len(chosen)
            bar.set_postfix(kept=len(kept))
        bar.close()
    counts = reject_counts(verdicts)
    stats: dict[str, Any] = {"prompts_available": len(order), "prompts_tried": tried,
                             "generations": len(verdicts), "rejected": counts, "wanted": need}
    if len(kept) < cfg.min_samples:
        raise CalibrationError(
            f"only {len(kept)} of {len(verdicts)} generations from {tried} train prompts pass "
            f"the calibration filter, fewer than calibration.min_samples={cfg.min_samples}; "
            f"rejects: " + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "kept" and v)
            + ". Fix: raise calibration.max_new_tokens (truncated), calibration.max_prompts or "
              "calibration.samples_per_prompt (more tries), or lower calibration.min_samples")
    kept = kept[:need]
    heldout = min(cfg.heldout, max(1, round(len(kept) * cfg.heldout / need))) if cfg.heldout \
        else 0
    calib = kept[: len(kept) - heldout] if heldout else kept
    stats |= {"calibration": len(calib), "heldout": heldout,
              "shortfall": need - len(kept)}
    return Calibration(calib, kept[len(calib):], stats)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows as JSONL, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
