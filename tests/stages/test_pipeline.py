"""`swallow-train pipeline` end to end on the tiny CPU default (fewer steps than the default):
three HF exports that `transformers` loads and that answer a chat prompt, and a pipeline that is
SIGKILLed in the middle of each stage and run again ends in the same bits as one that was not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swallow_train.metrics.plot import read_jsonl
from swallow_train.serve.export_check import check_export
from tests.distributed import cli_env
from tests.test_serve_exports import MODEL_CARD, STOPS

pytestmark = pytest.mark.slow

STAGES = ("cpt", "sft", "rl")
SHORT = {
    # a quarter of the tiny recipe's CPT tokens per step (2 micro-batches of 64)
    "cpt": ["train.train_steps=6", "checkpoint.save_interval=2", "train.seq_length=64",
            "train.global_batch_size=4", "train.micro_batch_size=2"],
    # the whole tiny chat set, reasoning traces included (the default trains the math rows alone)
    "sft": ["train.train_steps=4", "checkpoint.save_interval=2",
            "data.manifest=data_manifests/tiny_sft.yaml"],
    "rl": ["rollout.num_rollout=3", "rollout.rollout_batch_size=2",
           "rollout.n_samples_per_prompt=4", "loss.global_batch_size=4",
           "checkpoint.save_interval=1", "evaluation.interval=0"],
}


def _args(root: Path, name: str, prepared: Path, model: str = "tiny_dense") -> list[str]:
    """The training stages only (quantize and the evals: tests/stages/test_pipeline_release.py),
    in the one override syntax: `key=value` for every stage, `<stage>.key=value` for one."""
    every = ["logging.wandb_mode=disabled", "logging.progress_bar=false",
             f"data.prepared_dir={prepared}"]
    scoped = [f"{stage}.{value}" for stage, values in SHORT.items() for value in values]
    return ["pipeline", f"root={root}", f"name={name}", f"model={model}",
            f"stages=[{','.join(STAGES)}]", "evaluate=false", *every, *scoped,
            "max_new_tokens=8"]


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "swallow_train", *args], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run(args: list[str]) -> str:
    proc = _start(args)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-6000:]
    return out


def _kill_mid_stage(args: list[str], stage_dir: Path) -> str:
    """Start the pipeline, SIGKILL it once `stage_dir` has a checkpoint, wait for its stage
    process to die with it; the pipeline's output."""
    import psutil

    proc = _start(args)
    marker = stage_dir / "checkpoints" / "latest_checkpointed_iteration.txt"
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert proc.poll() is None, f"the pipeline ended before {stage_dir} checkpointed"
        assert time.monotonic() < deadline, f"{stage_dir} never checkpointed"
        time.sleep(0.02)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    out, _ = proc.communicate(timeout=120)
    _, alive = psutil.wait_procs(children, timeout=60)
    assert not alive, f"stage processes outlived the killed pipeline: {alive}"
    assert not (stage_dir / "DONE").exists(), f"{stage_dir} finished before the kill"
    return out


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def _curve(stage_dir: Path) -> list[tuple[int, float]]:
    key = "reward" if stage_dir.name == "rl" else "loss"
    return [(r["step"], r[key]) for r in read_jsonl(stage_dir / "metrics.jsonl")]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """An uninterrupted tiny pipeline: its run directory and output (removed after this module:
    its three runs hold ~7 GB of checkpoints)."""
    root = tmp_path_factory.mktemp("pipeline")
    out = _run(_args(root / "runs", "straight", root / "prepared"))
    yield root / "runs" / "straight", out
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def straight(straight_run: tuple[Path, str]) -> Path:
    return straight_run[0]


def test_exports_load_and_answer_a_chat_prompt(straight_run: tuple[Path, str]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    straight, output = straight_run
    summary = json.loads((straight / "summary.json").read_text())
    assert [row["stage"] for row in summary["stages"]] == list(STAGES)
    assert (straight / "pipeline.png").read_bytes()[:4] == b"\x89PNG"
    for row in summary["stages"]:
        hf = Path(row["hf"])
        assert hf == straight / row["stage"] / "hf" and (hf.parent / "DONE").exists()
        assert row["steps"] == {"cpt": 6, "sft": 4, "rl": 3}[row["stage"]]
        served = check_export(hf, cpu=True)  # what vLLM reads (tests/test_serve_exports.py)
        assert served.sampling == MODEL_CARD and served.stop_ids == STOPS
        model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
        assert model.config.architectures == ["Qwen3ForCausalLM"]
        tok = AutoTokenizer.from_pretrained(hf)
        text = tok.apply_chat_template([{"role": "user", "content": summary["prompt"]}],
                                       tokenize=False, add_generation_prompt=True,
                                       enable_thinking=summary["thinking"])
        assert not summary["thinking"]  # recipes/pipeline.yaml: asked as the tiny stages sample
        assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        ids = tok(text, return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=8, do_sample=False,
                             pad_token_id=tok.pad_token_id)
        reply = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=False)
        assert len(out[0]) > ids["input_ids"].shape[1]
        assert reply == row["reply"]  # the report's answer came from this very checkpoint
    # each stage started from the one before (CPT from a random init: loss ~ ln 151,936)
    assert f"initialising from HF checkpoint {straight / 'cpt/hf'}" in output
    assert f"rl: starting from {straight / 'sft/hf'}" in output
    cpt, sft = summary["stages"][0], summary["stages"][1]
    assert sft["first"] < cpt["first"] < 12.0


def test_sigkill_in_every_stage_then_rerun_gives_the_same_bits(straight: Path) -> None:
    root = straight.parent
    args = _args(root, "killed", root.parent / "prepared")
    run = root / "killed"
    for i, stage in enumerate(STAGES):
        # each run finishes the stage the last one was killed in, then is killed in the next
        out = _kill_mid_stage(args, run / stage)
        assert all((run / done / "DONE").exists() for done in STAGES[:i])
        assert all(f"{done}: already finished" in out for done in STAGES[:max(i - 1, 0)])
    out = _run(args)
    assert "cpt: already finished" in out and "sft: already finished" in out
    assert "rl: already finished" not in out and "resumed at rollout" in out
    for stage in STAGES:
        assert (run / stage / "DONE").exists()
        assert _curve(run / stage) == _curve(straight / stage), stage
        exported = _files(run / stage / "hf")
        assert any(name.endswith(".safetensors") for name in exported)
        assert exported == _files(straight / stage / "hf"), f"{stage}/hf differs"
    # the finished pipeline is not run again
    assert all(f"{s}: already finished" in _run(args) for s in STAGES)


def test_the_same_command_runs_the_tiny_moe(tmp_path: Path, straight: Path) -> None:
    _run(_args(tmp_path / "runs", "moe", straight.parent.parent / "prepared", "tiny_moe"))
    config = json.loads((tmp_path / "runs/moe/rl/hf/config.json").read_text())
    assert config["architectures"] == ["Qwen3MoeForCausalLM"] and config["num_experts"] == 8
    assert check_export(tmp_path / "runs/moe/rl/hf", cpu=True).sampling == MODEL_CARD
    summary = json.loads((tmp_path / "runs/moe/summary.json").read_text())
    assert [row["steps"] for row in summary["stages"]] == [6, 4, 3]


def test_every_stage_is_composed_before_any_runs(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "swallow_train", "pipeline",
                           f"root={tmp_path}", "rl.rollout.num_rolout=3"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "num_rolout" in proc.stderr + proc.stdout
    assert not (tmp_path / "tiny" / "cpt").exists()  # nothing ran, nothing was written


def test_a_model_override_on_the_pipeline_itself_is_refused(tmp_path: Path) -> None:
    from swallow_train.config import RecipeError, compose
    from swallow_train.stages.pipeline import plan

    recipe = compose("pipeline", [f"root={tmp_path}", "model.hidden_size=32"])
    with pytest.raises(RecipeError, match=r"`swallow-train pipeline model\.x=\.\.\.`"):
        plan(recipe)
    assert not (tmp_path / "tiny").exists()
