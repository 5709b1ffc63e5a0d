"""The whole default pipeline on the tiny CPU model, shortened: CPT -> SFT -> RL -> quantize with
an eval of every export after its stage; the report's stage x task table, `eval.png`, and a
second run that skips every stage and every eval. Needs lm-eval and llm-compressor (the /tmp/vq
environment):

    /tmp/vq/bin/python -m pytest tests/stages/test_pipeline_release.py -q -m slow
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.stages.test_pipeline import SHORT, _run

pytestmark = pytest.mark.slow
STAGES = ("cpt", "sft", "rl", "quantize")


@pytest.mark.xfail(run=False, strict=True, reason=(
    "not yet run to the end: on a 2-core machine each of the four tiny evals took ~25 min "
    "under load, and the tiny RL model answers too few calibration prompts correctly for the "
    "quantize stage's filter (issues 17.3 and 18); run by hand with --runxfail"))
def test_default_pipeline_quantizes_and_evaluates_every_stage(tmp_path: Path) -> None:
    pytest.importorskip("lm_eval")
    pytest.importorskip("llmcompressor")
    scoped = [f"{stage}.{value}" for stage, values in SHORT.items() for value in values]
    args = ["pipeline", f"root={tmp_path / 'runs'}", "name=r", "max_new_tokens=4",
            "logging.wandb_mode=disabled", "logging.progress_bar=false",
            f"data.prepared_dir={tmp_path / 'prepared'}", *scoped]
    out = _run(args)
    run = tmp_path / "runs/r"
    summary = json.loads((run / "summary.json").read_text())
    assert [row["stage"] for row in summary["stages"]] == list(STAGES)
    assert summary["stages"][-1]["reply"] is None  # the quantized export is not chatted with
    assert all(row["reply"] for row in summary["stages"][:-1])
    assert list(summary["eval"]) == list(STAGES)
    for stage, scores in summary["eval"].items():
        assert scores, f"no eval scores for {stage}"
        assert all(0.0 <= value <= 1.0 for value in scores.values()), scores
        assert (run / stage / "eval/tiny/DONE").exists()
    assert (run / "eval.png").read_bytes()[:4] == b"\x89PNG"
    assert "eval (stage x task)" in out
    again = _run(args)
    for stage in STAGES:
        assert f"[pipeline] {stage}: already finished" in again
        assert f"[pipeline] eval {stage}: already finished" in again
