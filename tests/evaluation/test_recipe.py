"""The eval recipe: what to evaluate (target / init), its directory contract (skip-if-done,
refusal of another recipe), clear errors for a bad target, and the lm-eval arguments it makes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from swallow_train.cli import main
from swallow_train.config import RecipeError, compose, to_yaml
from swallow_train.evaluation.config import Backend
from swallow_train.evaluation.harness import (
    HarnessRun,
    gen_kwargs,
    go_offline,
    model_args,
    resolve_backend,
)
from swallow_train.evaluation.runner import evaluate, read_summary, recipe_dir
from swallow_train.stage_dir import StageDir


def recipe(root: Path, *overrides: str):
    return compose("eval", ["model=tiny_dense", f"run.root={root}", "run.name=t",
                            "logging.wandb_mode=disabled", *overrides])


def finished_stage(root: Path, stage: str = "sft") -> Path:
    """A stage directory as a finished stage leaves it (an hf/ export and DONE)."""
    sd = StageDir(root / "t" / stage, stage)
    sd.hf.mkdir(parents=True)
    (sd.hf / "config.json").write_text("{}")
    sd.mark_done(step=3)
    return sd.path


def test_target_and_init_name_the_same_checkpoint_in_one_spelling(tmp_path) -> None:
    by_target = recipe(tmp_path, "target=sft")
    assert to_yaml(by_target) == to_yaml(recipe(tmp_path, "init.from_stage=sft"))
    assert recipe_dir(by_target).path == tmp_path / "t" / "sft" / "eval" / "tiny"
    base = recipe(tmp_path, "init.hf=Qwen/Qwen3-8B-Base", "eval_suite=swallow_pretrained")
    assert base.target == "base" and base.init.from_stage is None
    assert recipe_dir(base).path == tmp_path / "t" / "base" / "eval" / "swallow_pretrained"
    with pytest.raises(RecipeError, match=r"set target=<stage of this run>.*or init\.hf="):
        evaluate(recipe(tmp_path))


@pytest.mark.parametrize(("overrides", "says"), [
    (["eval_suite.sampling=false"], "set eval_suite.sampling=true, or eval_suite.samples=1"),
    (["eval_suite.thinking=true", "eval_suite.chat_template=false"],
     "needs eval_suite.chat_template=true"),
    (["eval_suite.tiny_math_items=65"], "lower it or raise TINY_EVAL_SIZE"),
    (["eval_suite.tasks=[tiny_mc_en,tiny_xx]"], "tiny_xx is no tiny task: pick from"),
    (["eval_suite.thinking=true", "eval_suite.stop=['\n']"], "stop on <|im_end|> instead"),
    (["eval_suite.samples=0"], "eval_suite.samples=0 must be >= 1"),
    (["generation.top_p=0"], "generation.top_p=0.0 must be in (0, 1]"),
])
def test_what_cannot_be_evaluated_is_refused_at_compose_time(tmp_path, overrides, says) -> None:
    with pytest.raises(RecipeError) as err:
        recipe(tmp_path, "target=sft", *overrides)
    assert says in str(err.value)


def test_a_target_without_an_export_names_the_fix(tmp_path) -> None:
    with pytest.raises(RecipeError) as err:
        evaluate(recipe(tmp_path, "target=sft"))
    message = str(err.value)
    assert "target=sft" in message and str(tmp_path / "t" / "sft" / "hf") in message
    assert "run `swallow-train sft`" in message and "init.hf=DIR" in message
    sd = finished_stage(tmp_path)
    (sd / "DONE").unlink()
    with pytest.raises(RecipeError, match=r"has no DONE.*rerun `swallow-train sft`"):
        evaluate(recipe(tmp_path, "target=sft"))
    with pytest.raises(RecipeError, match=r"no such directory: point init\.hf at"):
        evaluate(recipe(tmp_path, f"init.hf={tmp_path}/nothing"))
    assert not (sd / "eval").exists()  # nothing written


def test_a_finished_eval_is_skipped_and_another_recipe_refused(tmp_path, capsys) -> None:
    finished_stage(tmp_path)
    done = recipe(tmp_path, "target=sft")
    sd = recipe_dir(done)
    sd.write_config(done)
    summary = {"metrics": {"tiny_math/pass@1": 0.25, "tiny_mc_ja/acc": 0.5}}
    (sd.path / "summary.json").write_text(json.dumps(summary))
    assert read_summary(tmp_path / "t" / "sft") == {}  # not finished yet
    sd.mark_done(step=0)
    before = {p: p.read_bytes() for p in sd.path.iterdir()}
    assert evaluate(done) == 0 and "skipped" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in sd.path.iterdir()} == before
    assert read_summary(tmp_path / "t" / "sft") == summary["metrics"]
    assert read_summary(tmp_path / "t" / "sft", "swallow_posttrained") == {}
    with pytest.raises(RecipeError) as err:
        evaluate(recipe(tmp_path, "target=sft", "seed=1"))
    assert "seed: 0 there, 1 now" in str(err.value) and "another run.name" in str(err.value)
    assert {p: p.read_bytes() for p in sd.path.iterdir()} == before


def _run(r, backend: Backend) -> HarnessRun:
    return HarnessRun(hf="m", tokenizer="t", suite=r.eval_suite, generation=r.generation,
                      backend=backend, vllm=r.vllm, batch_size=r.batch_size, seed=r.seed)


def test_posttrained_suite_samples_as_the_model_card_says_and_thinks(tmp_path,
                                                                     monkeypatch) -> None:
    monkeypatch.setattr("swallow_train.evaluation.harness.cuda_available", lambda: False)
    r = recipe(tmp_path, "target=rl", "eval_suite=swallow_posttrained", "vllm.max_model_len=9")
    assert gen_kwargs(r.eval_suite, r.generation) == {
        "do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 20,
        "until": ["<|im_end|>", "<|endoftext|>"], "max_gen_toks": 32768}
    args = model_args(_run(r, Backend.vllm))
    assert args["think_end_token"] == "</think>" and "enable_thinking" not in args
    assert (args["pretrained"], args["tokenizer"], args["max_model_len"]) == ("m", "t", 9)
    pre = recipe(tmp_path, "target=cpt", "eval_suite=swallow_pretrained")
    assert gen_kwargs(pre.eval_suite, pre.generation) == {"do_sample": False, "temperature": 0.0}
    assert pre.eval_suite.num_fewshot is None and not pre.eval_suite.chat_template
    hf_args = model_args(_run(pre, Backend.hf))
    assert hf_args["dtype"] == "float32" and hf_args["device"] == "cpu"
    assert "think_end_token" not in hf_args and "enable_thinking" not in hf_args
    off = recipe(tmp_path, "target=sft", "eval_suite.thinking=false")
    assert model_args(_run(off, Backend.hf))["enable_thinking"] is False


def test_the_tiny_suite_goes_offline_by_itself(monkeypatch) -> None:
    import sys

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for module in ("datasets.config", "huggingface_hub.constants"):
        if module in sys.modules:  # restored after the test
            monkeypatch.setattr(sys.modules[module], "HF_HUB_OFFLINE", False)
    go_offline()
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["HF_DATASETS_OFFLINE"] == "1"
    for module in ("datasets.config", "huggingface_hub.constants"):
        if module in sys.modules:
            assert sys.modules[module].HF_HUB_OFFLINE is True


def test_cli_dry_run_and_a_bad_target_exit_cleanly(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--dry-run", "model=tiny_dense", "target=rl"]) == 0
    out = capsys.readouterr().out
    assert "eval_suite:\n  name: tiny" in out and "from_stage: rl" in out
    assert main(["eval", "model=tiny_dense", "target=rl"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("swallow-train eval: error: target=rl: runs/tiny_dense/rl/hf holds no")
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_auto_backend_is_vllm_with_cuda_and_hf_without(monkeypatch) -> None:
    monkeypatch.setattr("swallow_train.evaluation.harness.cuda_available", lambda: False)
    assert resolve_backend(Backend.auto) is Backend.hf
    monkeypatch.setattr("swallow_train.evaluation.harness.cuda_available", lambda: True)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # no vllm installed
    for backend in (Backend.auto, Backend.vllm):
        with pytest.raises(RecipeError, match=r"vllm is not installed.*or set backend=hf"):
            resolve_backend(backend)
    assert resolve_backend(Backend.hf) is Backend.hf
