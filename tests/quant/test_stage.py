"""`swallow-train quantize` end to end on CPU, on a tiny policy taught the `\\boxed{}` answer
format (as the tiny pipeline's SFT teaches it): a failing gate keeps the quantized model and
writes no DONE; rerun with looser thresholds, it reuses the calibration set and the quantized
model and finishes; run again, it is skipped. Needs llmcompressor (the /tmp/vq environment).

    /tmp/vq/bin/python -m pytest tests/quant/test_stage.py -q
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llmcompressor")

from swallow_train.config import compose
from swallow_train.quant import gate as gate_module
from swallow_train.quant.calibrate import EMPTY_THINK
from swallow_train.quant.filter import Generation, Reason, form_problem
from swallow_train.quant.gate import GateError
from swallow_train.stages.quantize import main
from tests.rl.policies import make_policy

pytestmark = pytest.mark.slow  # 50 format steps, sampling, AWQ and two gates: ~2-3 min CPU

SMALL = ["calibration.num_samples=6", "calibration.heldout=3", "calibration.min_samples=3",
         "calibration.samples_per_prompt=2", "calibration.max_prompts=96", "awq.n_grid=3",
         "gate.eval_prompts=8", "gate.samples_per_prompt=1", "logging.wandb_mode=disabled",
         "logging.progress_bar=false"]


def recipe(root: Path, *extra: str) -> Any:
    return compose("quantize", ["model=tiny_dense", f"run.root={root}", "run.name=q",
                                f"data.prepared_dir={root / 'prepared'}", *SMALL, *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Any]:
    """Run 1: the gate fails (the quantized model's measured perplexity made 1.5x worse);
    run 2: looser thresholds, passes; run 3: skipped. What each left behind."""
    root = tmp_path_factory.mktemp("quantize")
    make_policy(root / "q" / "rl" / "hf", sft_steps=50, seed=0)
    stage = root / "q" / "quantize"
    out: dict[str, Any] = {"stage": stage}
    real = gate_module.measure

    def worse(path: Path, *args: Any, **kwargs: Any) -> Any:
        quality = real(path, *args, **kwargs)
        if Path(path) == stage / "hf":
            return dataclasses.replace(quality, perplexity=quality.perplexity * 1.5)
        return quality

    gate_module.measure = worse
    try:
        with pytest.raises(GateError) as failed:
            main(recipe(root, "gate.max_perplexity_ratio=1.2", "gate.max_pass_at_1_drop=1.0"))
    finally:
        gate_module.measure = real
    out["error"] = str(failed.value)
    out["gate1"] = json.loads((stage / "gate.json").read_text())
    out["done1"] = (stage / "DONE").exists()
    out["hf1_mtime"] = (stage / "hf" / "config.json").stat().st_mtime_ns
    out["calib1_mtime"] = (stage / "calibration.jsonl").stat().st_mtime_ns
    loose = ("gate.max_perplexity_ratio=1.3", "gate.max_pass_at_1_drop=1.0")
    assert main(recipe(root, *loose)) == 0
    out["gate2"] = json.loads((stage / "gate.json").read_text())
    out["hf2_mtime"] = (stage / "hf" / "config.json").stat().st_mtime_ns
    out["calib2_mtime"] = (stage / "calibration.jsonl").stat().st_mtime_ns
    shutil.copy(stage / "summary.json", root / "summary2.json")
    (stage / "gate.json").unlink()
    assert main(recipe(root, *loose)) == 0  # skipped: DONE with this recipe
    out["skipped"] = not (stage / "gate.json").exists()
    return out


def test_a_failed_gate_names_both_numbers_and_keeps_the_model(runs) -> None:
    g = runs["gate1"]
    assert g["passed"] is False and not runs["done1"]
    before, after = g["bf16"]["perplexity"], g["quantized"]["perplexity"]
    assert f"held-out perplexity rose from {before:.4f} (bf16) to {after:.4f}" in runs["error"]
    assert "gate.max_perplexity_ratio=1.2" in runs["error"]
    assert str(runs["stage"] / "hf") in runs["error"]
    assert (runs["stage"] / "hf" / "config.json").is_file()


def test_the_rerun_reuses_calibration_and_model_and_finishes(runs) -> None:
    assert runs["hf2_mtime"] == runs["hf1_mtime"]
    assert runs["calib2_mtime"] == runs["calib1_mtime"]
    g = runs["gate2"]
    assert g["passed"] is True and (runs["stage"] / "DONE").is_file()
    ratio = g["quantized"]["perplexity"] / g["bf16"]["perplexity"]
    assert ratio < 1.2 and ratio == pytest.approx(runs["gate1"]["perplexity_ratio"] / 1.5,
                                                  rel=1e-4)
    assert runs["skipped"]


def test_the_calibration_set_holds_only_validated_generations(runs) -> None:
    stage = runs["stage"]
    stats = json.loads((stage / "calibration_stats.json").read_text())
    rows = [json.loads(line) for line in (stage / "calibration.jsonl").read_text().splitlines()]
    held = [json.loads(line) for line in (stage / "heldout.jsonl").read_text().splitlines()]
    assert len(rows) == stats["calibration"] and len(held) == stats["heldout"]
    assert len(rows) + len(held) == min(stats["rejected"]["kept"], stats["wanted"])
    assert set(stats["rejected"]) == {r.value for r in Reason} | {"kept"}
    assert sum(stats["rejected"].values()) == stats["generations"]
    root = stage.parent.parent
    train = (root / "prepared" / "rl" / "tiny_math" / "train.jsonl").read_text()
    # thinking off (the tiny preset): the template prefilled the empty think block, so the
    # response is judged, as the stage judges it, from that block on
    prefill = "" if recipe(root).calibration.enable_thinking else EMPTY_THINK
    for row in rows + held:
        assert form_problem(Generation(0, prefill + row["response"], (), "<|im_end|>")) is None
        assert row["text"].endswith(prefill + row["response"] + "<|im_end|>")
        assert json.dumps(row["prompt"], ensure_ascii=False) in train  # the train split


def test_the_output_keeps_lm_head_bf16_and_serves_as_it_is(runs) -> None:
    hf = runs["stage"] / "hf"
    config = json.loads((hf / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    assert "lm_head" in config["quantization_config"]["ignore"]
    for name in ("tokenizer.json", "generation_config.json", "recipe.yaml"):
        assert (hf / name).is_file()
