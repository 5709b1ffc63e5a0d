"""The default tiny pipeline (`make pipeline`, run once per session by tests/stages/conftest.py):
CPT -> SFT -> RL -> quantize with an eval of every export after its stage; each export is a
checkpoint transformers loads and vLLM can read, the report has its stage x task table and
`eval.png`, and the same command run again skips every stage and every eval.

    python -m pytest tests/stages/test_pipeline_release.py -q -m slow
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swallow_train.serve.export_check import check_export
from tests.stages.conftest import PipelineRun, run_pipeline
from tests.test_serve_exports import MODEL_CARD, STOPS

pytestmark = pytest.mark.slow
STAGES = ("cpt", "sft", "rl", "quantize")


def test_default_pipeline_quantizes_and_evaluates_every_stage(
        default_pipeline: PipelineRun) -> None:
    run, out = default_pipeline.run, default_pipeline.output
    summary = json.loads((run / "summary.json").read_text())
    assert [row["stage"] for row in summary["stages"]] == list(STAGES)
    assert summary["stages"][-1]["reply"] is None  # the quantized export is not chatted with
    assert list(summary["eval"]) == list(STAGES)
    for stage, scores in summary["eval"].items():
        assert (run / stage / "eval/tiny/DONE").exists()
        assert {"tiny_math/pass@1", "tiny_math/pass@4", "tiny_math/boxed",
                "tiny_text/loss"} <= set(scores), (stage, scores)
        rates = {k: v for k, v in scores.items() if not k.startswith("tiny_text/")}
        assert all(0.0 <= value <= 1.0 for value in rates.values()), scores
    assert (run / "eval.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "pipeline.png").read_bytes()[:4] == b"\x89PNG"
    assert "eval (stage x task)" in out
    # each stage started from the one before (CPT from a random init: loss ~ ln 151,936)
    assert f"initialising from HF checkpoint {run / 'cpt/hf'}" in out
    assert f"rl: starting from {run / 'sft/hf'}" in out


def test_every_export_loads_and_answers_the_report_prompt(default_pipeline: PipelineRun) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    summary = json.loads((default_pipeline.run / "summary.json").read_text())
    for row in summary["stages"]:
        hf = Path(row["hf"])
        assert hf == default_pipeline.run / row["stage"] / "hf" and (hf.parent / "DONE").exists()
        served = check_export(hf, cpu=True)  # what vLLM reads (tests/test_serve_exports.py)
        assert served.sampling == MODEL_CARD and served.stop_ids == STOPS
        if row["stage"] == "quantize":  # compressed-tensors: tests/quant and tests/serve
            continue
        model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
        assert model.config.architectures == ["Qwen3ForCausalLM"]
        tok = AutoTokenizer.from_pretrained(hf)
        text = tok.apply_chat_template([{"role": "user", "content": summary["prompt"]}],
                                       tokenize=False, add_generation_prompt=True,
                                       enable_thinking=summary["thinking"])
        ids = tok(text, return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=32, do_sample=False,
                             pad_token_id=tok.pad_token_id)
        reply = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=False)
        assert reply == row["reply"]  # the report's answer came from this very checkpoint


def test_the_same_command_again_skips_every_stage_and_eval(
        default_pipeline: PipelineRun) -> None:
    again, wall = run_pipeline(default_pipeline.args)
    for stage in STAGES:
        assert f"[pipeline] {stage}: already finished" in again
        assert f"[pipeline] eval {stage}: already finished" in again
    assert wall < 120, f"a finished pipeline took {wall:.0f} s to skip"
