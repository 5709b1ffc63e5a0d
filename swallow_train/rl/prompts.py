"""`swallow-train prepare-rl`: RL prompts as slime's JSONL (`prompt` message list, `label`,
`metadata` object), deduplicated, with a held-out eval split and the counts of every step.

The cluster source is the math subset of `allenai/Dolci-Think-RL-7B` (rows whose `dataset` is
`math`; the answer is `ground_truth`; a leading "user: " is stripped; the OLMo-tokenised
`input_ids_prompt` is never read). The CPU default is the tiny synthetic set (`tiny_math`).

    swallow-train prepare-rl                                          # Dolci, streamed from the hub
    swallow-train prepare-rl data.dolci.path=/data/Dolci-Think-RL-7B data.dolci.hf=null
    swallow-train prepare-rl model=tiny_dense                         # the tiny synthetic set
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from swallow_train.data.decontam import DecontamConfig, identity
from swallow_train.data.decontam_check import check_rows, report
from swallow_train.data.sources import DataError, SourceConfig, iter_records
from swallow_train.data.tiny_math import fact, prompt_key, split_held_out, tiny_problems
from swallow_train.rl.prompt_rows import RejectCounts, Rejected, clean_row

DOLCI = "allenai/Dolci-Think-RL-7B"
class PromptSource(Enum):
    dolci = "dolci"
    """The math subset of allenai/Dolci-Think-RL-7B."""
    tiny = "tiny"
    """The tiny synthetic EN/JA arithmetic set (generated, no download)."""


@dataclass(kw_only=True)
class RLDataConfig:
    source: PromptSource
    dolci: SourceConfig = field(default_factory=lambda: SourceConfig(hf=DOLCI))
    """Where Dolci-Think-RL-7B is read from: the hub (streamed) or a local copy (`path`)."""
    prepared_dir: str = "prepared"
    """Output: `{prepared_dir}/rl/{name}/train.jsonl`, `eval.jsonl`, `stats.json`."""
    eval_size: int = 256
    """Prompts held out for evaluation (chosen by a hash of the prompt: stable across runs)."""
    max_prompts: int | None = None
    """Keep at most this many training prompts (after deduplication); None: all."""
    seed: int = 0
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    """N-gram overlap of the training prompts with eval sets: reported; with `drop`, left out
    (after the held-out split, which stays the one SFT's tiny math set agrees on)."""

    @property
    def name(self) -> str:
        return "dolci_think_rl_7b_math" if self.source is PromptSource.dolci else "tiny_math"

    @property
    def out_dir(self) -> Path:
        return Path(self.prepared_dir) / "rl" / self.name

    @property
    def train_path(self) -> Path:
        return self.out_dir / "train.jsonl"

    @property
    def eval_path(self) -> Path:
        return self.out_dir / "eval.jsonl"

    @property
    def stats_path(self) -> Path:
        """Written last: its presence marks a complete preparation."""
        return self.out_dir / "stats.json"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | int | float):
        return [value]
    return list(value)


def dolci_math_rows(records: Iterable[tuple[str, dict[str, Any]]],
                    counts: Counter[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, slime row) of the math records of Dolci-Think-RL, the label as it is (`prepare`
    validates it); `counts` gets what was skipped."""
    for where, record in records:
        counts["read"] += 1
        missing = [k for k in ("prompt", "ground_truth", "dataset") if k not in record]
        if missing:
            raise DataError(f"{where}: no {', '.join(missing)} column; is this "
                            f"{DOLCI}? (expected prompt, ground_truth, dataset)")
        datasets = _as_list(record["dataset"])
        if not datasets or datasets[0] != "math":
            counts["not_math"] += 1
            continue
        prompt = str(record["prompt"] or "").strip()
        if prompt.startswith("user: "):
            prompt = prompt[len("user: "):].strip()
        if not prompt:
            counts["empty_prompt"] += 1
            continue
        source = str(record.get("original_dataset") or "dolci-math")
        row_id = str(record.get("custom_id") or record.get("id") or where)
        yield where, {
            "prompt": [{"role": "user", "content": prompt}],
            "label": record["ground_truth"],
            "metadata": {"source_name": source, "id": row_id},
        }


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def prepare(cfg: RLDataConfig) -> dict[str, Any]:
    """Write train/eval JSONL and stats.json for `cfg`; return the stats."""
    counts: Counter[str] = Counter()
    rejects = RejectCounts()
    if cfg.source is PromptSource.dolci:
        cfg.dolci.check("data.dolci")
        rows: Iterable[tuple[str, dict[str, Any]]] = dolci_math_rows(iter_records(cfg.dolci),
                                                                     counts)
    else:
        rows = ((f"tiny_math[{i}]", row) for i, row in enumerate(tiny_problems(cfg.seed)))
    kept: dict[str, dict[str, Any]] = {}
    for where, raw in rows:
        counts["math"] += 1
        try:
            row = clean_row(raw)  # label: one answer that math-verify parses
        except Rejected as exc:
            rejects.add(exc, where)
            continue
        key = prompt_key(row)
        if key in kept:
            counts["duplicates"] += 1
            if kept[key]["label"] != row["label"]:
                counts["duplicates_with_other_label"] += 1
            continue
        kept[key] = row
    if len(kept) <= cfg.eval_size:
        raise DataError(f"{cfg.name}: only {len(kept)} unique prompts, not more than "
                        f"data.eval_size={cfg.eval_size}; lower data.eval_size")
    tiny = cfg.source is PromptSource.tiny  # no held-out fact without a trained phrasing
    train, evals = split_held_out(kept, cfg.eval_size, cfg.seed, group=fact if tiny else None)
    train, decontam = check_rows(cfg.decontam, Path(cfg.prepared_dir), train, "data.decontam")
    if cfg.max_prompts is not None:
        train = train[: cfg.max_prompts]
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    _write_jsonl(cfg.train_path, train)
    _write_jsonl(cfg.eval_path, evals)
    stats = {
        "source": cfg.source.value if cfg.source is PromptSource.tiny else cfg.dolci.describe(),
        **{k: counts[k] for k in ("read", "not_math", "empty_prompt")
           if cfg.source is PromptSource.dolci},
        "math": counts["math"],
        "rejected": dict(sorted(rejects.counts.items())),
        "rejected_examples": rejects.examples,
        "duplicates": counts["duplicates"],
        "duplicates_with_other_label": counts["duplicates_with_other_label"],
        "unique": len(kept),
        "train": len(train),
        "eval": len(evals),
        "train_by_source": dict(Counter(r["metadata"]["source_name"] for r in train)),
        **({"decontam": decontam} if decontam else {}),
        **({"decontam_inputs": ids} if (ids := identity(cfg.decontam, "data.decontam")) else {}),
    }
    tmp = cfg.stats_path.with_name("stats.json.tmp")
    tmp.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, cfg.stats_path)
    return stats


def ensure_prepared(cfg: RLDataConfig) -> RLDataConfig:
    """Prepare the prompts unless a complete preparation exists (the tiny set is generated;
    Dolci is read from `data.dolci`)."""
    if not cfg.stats_path.exists() or json.loads(cfg.stats_path.read_text()).get(
            "decontam_inputs", {}) != identity(cfg.decontam, "data.decontam"):
        prepare(cfg)
    return cfg


def prepare_rl(cfg: RLDataConfig) -> int:
    """`swallow-train prepare-rl` (`stages/prepare.py:rl` passes the RL recipe's `data`):
    prepare the prompts and print the counts of every step."""
    stats = prepare(cfg)
    print(f"prepare-rl: {cfg.name} -> {cfg.out_dir}")
    for key, value in stats.items():
        if key not in ("rejected", "rejected_examples", "decontam", "decontam_inputs"):
            print(f"  {key}: {value}")
    for line in report(stats.get("decontam")):
        print(f"  {line}")
    rejected = sum(stats["rejected"].values())
    print(f"  rejected: {rejected} rows" + ("" if not rejected else " (dropped; first "
          f"locations in {cfg.stats_path})"))
    for key, n in stats["rejected"].items():
        print(f"    {key}: {n}, e.g. {stats['rejected_examples'][key][0]}")
    return 0
