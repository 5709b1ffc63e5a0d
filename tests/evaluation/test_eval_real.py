"""`swallow-train eval` for real: lm-eval's HF backend on a tiny random Qwen3 written by the
project's own exporter, the tiny suite fully offline; and every task of the real suites exists
in the installed lm-eval (its task index, no dataset download). Needs lm-eval (/tmp/vq).

    /tmp/vq/bin/python -m pytest tests/evaluation/test_eval_real.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("lm_eval")

from swallow_train.config import compose
from swallow_train.evaluation.runner import read_summary
from swallow_train.stage_dir import StageDir
from swallow_train.stages.eval import main

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
TASKS = ["tiny_mc_en", "tiny_mc_ja", "tiny_qa_en", "tiny_qa_ja", "tiny_text", "tiny_math"]


@pytest.fixture(scope="module")
def run_root(tmp_path_factory) -> Path:
    """runs/t/sft as the SFT stage leaves it: a random tiny_dense export (the project's writer,
    with the Qwen3 tokenizer and chat template) and DONE."""
    from swallow_train.convert.hf_io import write_hf_checkpoint
    from tests.convert.helpers import random_hf_state_dict

    root = tmp_path_factory.mktemp("runs")
    model = compose("cpt", ["model=tiny_dense"]).model
    sd = StageDir(root / "t" / "sft", "sft")
    write_hf_checkpoint(random_hf_state_dict(model, seed=0), model, sd.hf,
                        tokenizer=model.tokenizer, progress=False)
    sd.mark_done(step=1)
    return root


def test_tiny_suite_runs_offline_and_writes_results_samples_and_summary(
        run_root, hub_offline, capsys) -> None:
    """With the hub unreachable (`hub_offline`): nothing may be downloaded."""
    k = 2
    recipe = compose("eval", ["model=tiny_dense", "target=sft", f"run.root={run_root}",
                              "run.name=t", "logging.wandb_mode=disabled", "eval_suite.limit=2",
                              "eval_suite.tiny_math_items=2", f"eval_suite.samples={k}",
                              "eval_suite.max_gen_toks=6", "verify.workers=1"])
    assert main(recipe) == 0
    out = run_root / "t" / "sft" / "eval" / "tiny"
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(results["results"]) == set(TASKS)
    for task in TASKS:
        rows = [json.loads(line) for line in
                (out / "samples" / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert len(rows) == 2
        first = rows[0]["arguments"][0][0]
        if task == "tiny_text":  # a document's rolling log-likelihood: no chat template
            assert "<|im_start|>" not in first and first == rows[0]["doc"]["text"]
            continue
        # the chat template of the export was applied, its empty think block prefilled
        assert first.startswith("<|im_start|>user\n")
        assert first.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        if task == "tiny_math":
            assert all(len(r["resps"][0]) == k for r in rows)  # k samples per prompt
    verified = [json.loads(line) for line in (out / "verified" / "tiny_math.jsonl").read_text(
        encoding="utf-8").splitlines()]
    assert [len(v["scores"]) for v in verified] == [k, k]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    metrics = summary["metrics"]
    assert (summary["target"], summary["backend"], summary["samples"]) == ("sft", "hf", k)
    assert metrics["tiny_math/pass@1"] == sum(v["pass@1"] for v in verified) / 2
    assert metrics["tiny_mc_ja/acc"] == results["results"]["tiny_mc_ja"]["acc,none"]
    assert {"tiny_mc_en/acc", "tiny_qa_ja/exact_match[answer]", "tiny_math/boxed"} <= set(metrics)
    assert metrics["tiny_text/loss"] > 5.0  # random init: near ln(151,936) = 11.9 nats/token
    logged = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert logged == {"step": 0, **metrics}
    assert read_summary(run_root / "t" / "sft") == metrics
    assert (out / "DONE").exists() and (out / "config.yaml").exists()
    assert "tiny_math/pass@1" in capsys.readouterr().out
    assert main(recipe) == 0 and "skipped" in capsys.readouterr().out


def _real_suites() -> dict[str, list[str]]:
    suites = {}
    for path in sorted((RECIPES / "eval_suite").glob("*.yaml")):
        suite = yaml.safe_load(path.read_text(encoding="utf-8"))
        if suite["kind"] == "harness":
            suites[path.stem] = list(suite["tasks"]) + list(suite.get("math") or {})
    return suites


def test_every_task_of_the_real_suites_is_in_the_installed_lm_eval() -> None:
    """Indexed as lm-eval indexes its tasks, over the task folders whose YAML names them (the
    whole index takes a minute on a loaded machine)."""
    import lm_eval.tasks
    from lm_eval.tasks._index import TaskIndex

    suites = _real_suites()
    assert set(suites) >= {"swallow_pretrained", "swallow_posttrained"}
    names = {n for tasks in suites.values() for n in tasks}
    root = Path(lm_eval.tasks.__file__).parent
    folders = set()
    for path in root.glob("**/*.yaml"):
        text = path.read_text(encoding="utf-8", errors="replace")
        if any(f" {n}\n" in text or f" {n}\r" in text for n in names):
            folders.add(path.parent)
    index = TaskIndex.build(sorted(folders))
    missing = {suite: [n for n in tasks if n not in index] for suite, tasks in suites.items()}
    assert missing == {suite: [] for suite in suites}
