"""The shared megatron-core loop on CPU: exact resume, layouts that must agree, MoE, learning.

Each run is the real command line (`swallow-train cpt ...`, under torchrun with gloo for two
processes) on the tiny synthetic corpus.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.distributed import run_cli

pytestmark = pytest.mark.dist

STEPS = 6
SMALL = ("train.seq_length=64", "train.global_batch_size=4", "train.micro_batch_size=2")
"""A quarter of the tiny recipe's tokens per step (2 micro-batches of 64): what these tests
assert (bit-exact resume, layouts that agree, loss that falls) does not depend on the size, and
the 151,936-row output layer makes every token cost on 2 cores."""


def _args(root: Path, prepared: str, *extra: str) -> list[str]:
    """A key may be given once (as Hydra requires): `extra` may set its own train_steps."""
    steps = [] if any(e.startswith("train.train_steps=") for e in extra) \
        else [f"train.train_steps={STEPS}"]
    return ["cpt", "model=tiny_dense", f"run.root={root}", f"data.prepared_dir={prepared}",
            *steps, *SMALL, "checkpoint.export_hf=false",
            "logging.progress_bar=false", "logging.wandb_mode=disabled", *extra]


def _metrics(root: Path, model: str = "tiny_dense") -> list[dict]:
    """The run's metrics rows (`run.name` is the model's name when not set)."""
    lines = (root / model / "cpt/metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _final_model_state(root: Path) -> dict[str, torch.Tensor]:
    """The fp32 model tensors of the latest checkpoint, loaded through megatron at TP=1."""
    from megatron.core import dist_checkpointing

    from swallow_train.config import compose
    from swallow_train.mcore import distributed
    from swallow_train.mcore.config import Precision
    from swallow_train.mcore.model import build_model, transformer_config

    recipe = compose("cpt", ["model=tiny_dense"])
    layout = recipe.layout()
    distributed.init_parallel_state(layout, seed=0)
    config = transformer_config(recipe.model, recipe.parallel, layout, precision=Precision.fp32)
    chunk = build_model(recipe.model, config)[0]
    ckpt = root / "tiny_dense/cpt/checkpoints"
    step = int((ckpt / "latest_checkpointed_iteration.txt").read_text())
    loaded = dist_checkpointing.load({"model": chunk.sharded_state_dict()},
                                     str(ckpt / f"iter_{step:07d}"))
    return {k: v for k, v in loaded["model"].items() if torch.is_tensor(v)}


def test_resume_after_sigkill_is_bit_exact(tmp_path, tiny_prepared) -> None:
    """2N steps straight == N steps, SIGKILL, rerun: same losses, same data, same weights."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_cli(_args(straight, tiny_prepared, "checkpoint.save_interval=3"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "-m", "swallow_train",
                             *_args(resumed, tiny_prepared, "checkpoint.save_interval=3")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = resumed / "tiny_dense/cpt/checkpoints/latest_checkpointed_iteration.txt"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-stage, right after the step-3 checkpoint
    proc.wait()
    assert marker.read_text().strip() == "3"
    assert not (resumed / "tiny_dense/cpt/DONE").exists()
    out = run_cli(_args(resumed, tiny_prepared, "checkpoint.save_interval=3"))
    assert "resumed from" in out.stdout
    a, b = _metrics(straight), _metrics(resumed)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))
    for key in ("loss", "grad_norm", "lr", "data_crc"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    sa, sb = _final_model_state(straight), _final_model_state(resumed)
    assert sa.keys() == sb.keys() and len(sa) > 10
    for key in sa:
        if torch.is_tensor(sa[key]):
            assert torch.equal(sa[key], sb[key]), key


def test_loss_falls_on_the_tiny_corpus(tmp_path, tiny_prepared) -> None:
    run_cli(_args(tmp_path, tiny_prepared, "train.train_steps=12",
                  "checkpoint.save_interval=0"))
    losses = [r["loss"] for r in _metrics(tmp_path)]
    assert losses[0] > 11.5  # ~ln(151,936) = 11.93 at init
    assert losses[-1] < losses[0] - 1.0  # 12 steps, 5 of them warm-up


def _losses(root: Path) -> list[float]:
    return [r["loss"] for r in _metrics(root)]


def test_tp2_and_pp2_match_tp1(tmp_path, tiny_prepared, tiny_hf_init) -> None:
    """From the same HF weights (megatron's random init differs per TP rank by design)."""
    steps = ["train.train_steps=3", "checkpoint.save_interval=0", f"init.hf={tiny_hf_init}"]
    run_cli(_args(tmp_path / "tp1", tiny_prepared, *steps))
    run_cli(_args(tmp_path / "tp2", tiny_prepared, *steps, "parallel=tp2",
                  "cluster.gpus_per_node=2"), nproc=2)
    run_cli(_args(tmp_path / "pp2", tiny_prepared, *steps, "parallel=pp2",
                  "cluster.gpus_per_node=2"), nproc=2)
    tp1 = _losses(tmp_path / "tp1")
    assert _losses(tmp_path / "tp2") == pytest.approx(tp1, rel=1e-5)
    assert _losses(tmp_path / "pp2") == pytest.approx(tp1, rel=1e-5)
    crc = [r["data_crc"] for r in _metrics(tmp_path / "tp1")]
    assert [r["data_crc"] for r in _metrics(tmp_path / "pp2")] == crc


def test_tp2_checkpoint_loads_at_tp1_dp2(tmp_path, tiny_prepared) -> None:
    """Save at TP=2, continue at TP=1 x DP=2 (optimizer state resharded): the next step's loss
    is the one the TP=2 run itself computed."""
    tp2 = tmp_path / "tp2"
    # periodic saves are dp_reshardable unless asked: ask, as the refusal message says
    run_cli(_args(tp2, tiny_prepared, "train.train_steps=3", "checkpoint.save_interval=2",
                  "checkpoint.keep_last=3", "parallel=tp2", "cluster.gpus_per_node=2",
                  "checkpoint.optim_format=fully_reshardable"), nproc=2)
    (tp2 / "tiny_dense/cpt/checkpoints/latest_checkpointed_iteration.txt").write_text("2\n")
    dp2 = tmp_path / "dp2"
    out = run_cli(_args(dp2, tiny_prepared, "train.train_steps=3",
                        f"checkpoint.load={tp2 / 'tiny_dense/cpt/checkpoints'}",
                        "checkpoint.save_interval=0", "cluster.gpus_per_node=2"), nproc=2)
    assert "(step 2)" in out.stdout
    (step3,) = _metrics(dp2)
    assert step3["step"] == 3
    assert step3["loss"] == pytest.approx(_metrics(tp2)[2]["loss"], rel=1e-5)
    assert step3["grad_norm"] == pytest.approx(_metrics(tp2)[2]["grad_norm"], rel=1e-4)


def test_tiny_moe_trains_with_ep2(tmp_path, tiny_prepared) -> None:
    run_cli(["cpt", "model=tiny_moe", f"run.root={tmp_path}", f"data.prepared_dir={tiny_prepared}",
             "train.train_steps=8", "checkpoint.save_interval=0", "checkpoint.export_hf=false",
             "parallel=ep2", "cluster.gpus_per_node=2", "logging.progress_bar=false", *SMALL],
            nproc=2)
    rows = _metrics(tmp_path, "tiny_moe")
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.5  # 8 steps, 5 of them warm-up
    assert all(0.5 < r["moe_aux_loss"] < 3.0 for r in rows)  # ~1 for balanced routing
