"""Doctor's training-loop self-test: 10 steps of the real CPT loop (`trainer.train`) on a tiny
model with a checkpoint at step 5, then the run rolled back to that checkpoint (as a crash or a
requeue leaves it) and resumed; steps 6-10 must give the same losses bit for bit.

    swallow-train doctor cpt model=tiny_dense      # "self-test resume" line
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from swallow_train.check_report import Check, failed, passed
from swallow_train.checkpoint_files import MARKER, iter_name, write_atomic
from swallow_train.mcore.batches import Batch, collate, rank_sample_ranges
from swallow_train.mcore.selftest import SEQ, VOCAB
from swallow_train.parallel import Layout
from swallow_train.training import TrainConfig, TrainRecipe

STEPS, RESUME_AT = 10, 5
KEYS = ("tokens", "labels", "loss_mask", "position_ids")
ACTIVE_TOKENS = 64
"""Samples use 64 of the 1,024 ids, so the loss visibly falls within 10 steps."""


def tiny_train_recipe(root: Path) -> TrainRecipe:
    """A 10-step tiny CPT recipe writing under `root` (its data section is not read)."""
    from swallow_train.config import compose

    return compose("cpt", [
        "model=tiny_dense", f"model.vocab_size={VOCAB}", "cluster=local",
        "cluster.gpus_per_node=1", "parallel=single", f"run.root={root}", "run.name=selftest",
        f"train.train_steps={STEPS}", "train.global_batch_size=4", "train.micro_batch_size=2",
        f"train.seq_length={SEQ}", "train.deterministic=true", "train.eval_interval=0",
        "optim.lr=3e-3", "optim.min_lr=3e-4", "optim.warmup_steps=2",
        f"checkpoint.save_interval={RESUME_AT}", "checkpoint.keep_last=2",
        "checkpoint.export_hf=false", "logging.progress_bar=false",
        "logging.wandb_mode=disabled", "init.hf=null"])


class SyntheticTokens:
    """A BatchSource of seeded random tokens: sample i is the same on every run."""

    def __init__(self, train: TrainConfig) -> None:
        self.train = train

    def prepare(self, layout: Layout) -> None:
        pass

    def total_steps(self) -> int:
        return self.train.train_steps

    def global_batch_size(self) -> int:
        return self.train.global_batch_size

    def _sample(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.train.seed, index])
        ids = rng.integers(0, ACTIVE_TOKENS, self.train.seq_length + 1)
        return {"tokens": ids[:-1], "labels": ids[1:],
                "loss_mask": np.ones(self.train.seq_length, dtype=np.float32),
                "position_ids": np.arange(self.train.seq_length)}

    def train_microbatches(self, step: int) -> list[Batch]:
        return [collate([self._sample(i) for i in indices], KEYS) for indices in
                rank_sample_ranges(step, self.train.global_batch_size,
                                   self.train.micro_batch_size)]

    def eval_microbatches(self, index: int) -> list[Batch]:
        return []

    def summary(self) -> dict[str, Any]:
        return {"synthetic": f"{ACTIVE_TOKENS} of {VOCAB} ids"}


def _losses(stage_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    return [float(r["loss"]) for r in rows]


def _roll_back(stage_dir: Path, step: int) -> None:
    """Make the finished run look as if it had stopped right after checkpointing `step` (what
    a crash, a walltime kill or a requeue leaves): later checkpoints and DONE gone, the marker
    at `step`."""
    from swallow_train.run import DONE

    ckpts = stage_dir / "checkpoints"
    for later in ckpts.glob("iter_*"):
        if later.is_dir() and int(later.name.removeprefix("iter_")) > step:
            shutil.rmtree(later)
    write_atomic(ckpts / MARKER, f"{step}\n")
    (stage_dir / DONE).unlink()


def resume_check(workdir: Path) -> Check:
    """10 steps of `trainer.train` (checkpoints at 5 and 10), rolled back to step 5 and run
    again: steps 6-10 must give the same losses, bit for bit."""
    from swallow_train.mcore.trainer import train

    name = "self-test resume"
    recipe = tiny_train_recipe(workdir)
    stage_dir = recipe.run.stage_dir("cpt")
    code = train(recipe, stage="cpt", data=SyntheticTokens(recipe.train))
    first = _losses(stage_dir) if (stage_dir / "metrics.jsonl").exists() else []
    if code or len(first) != STEPS or not (stage_dir / "checkpoints" / iter_name(RESUME_AT)
                                           ).is_dir():
        return failed(name, f"{STEPS} CPT steps exited {code} with {len(first)} steps logged "
                      f"and {'a' if first else 'no'} checkpoint at step {RESUME_AT}")
    _roll_back(stage_dir, RESUME_AT)
    code = train(recipe, stage="cpt", data=SyntheticTokens(recipe.train))
    again = _losses(stage_dir)
    if code or len(again) != STEPS:
        return failed(name, f"the run resumed from step {RESUME_AT} exited {code} with "
                      f"{len(again)} of {STEPS} steps logged")
    diff = max(abs(x - y) for x, y in zip(first, again, strict=True))
    detail = (f"{STEPS} CPT steps, then resumed from the step-{RESUME_AT} checkpoint: max "
              f"|loss diff| of steps {RESUME_AT + 1}-{STEPS} (must be 0); loss "
              f"{first[0]:.3f} -> {first[-1]:.3f}")
    if diff != 0.0:
        step = next(i for i, (x, y) in enumerate(zip(first, again, strict=True)) if x != y) + 1
        return failed(name, f"{detail}: step {step} differs; a resumed run would not continue "
                      "where it stopped", value=diff, unit="nats", straight=first, resumed=again)
    if not first[-1] < first[0]:
        return failed(name, f"{detail}: the loss does not fall", value=diff, unit="nats",
                      straight=first)
    return passed(name, diff, "nats", detail, straight=first, resumed=again)
