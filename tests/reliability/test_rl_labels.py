"""RL prompt rows and labels (issue 14.11): `label: null` never becomes "None", a list label never
becomes "['3', '4']", labels math-verify cannot parse are rejected, a string `metadata` or
`prompt` never crashes the rollout, a blank line at the end of a prompt file is accepted.
`prepare-rl` drops and counts every reject (exit 0, counts in stats.json); the `rl` stage's
loader refuses a file with any bad row (exit 2, each reason counted, its first `file:line`, the
field and the fix), before any model is loaded, and the file is left as it was."""

from __future__ import annotations

import json

import pytest

from swallow_train.cli import main as swallow_train
from swallow_train.rl.prompt_rows import FIX, Reject, clean_label
from swallow_train.rl.rollout import PromptSet

USER = [{"role": "user", "content": "What is 1/2 + 1/4?"}]


def _line(**row: object) -> str:
    return json.dumps(row) + "\n"


@pytest.fixture(scope="module")
def tok():
    from swallow_train.tokenizer import load_tokenizer

    return load_tokenizer("bundled:qwen3")


def test_the_rl_stage_refuses_bad_rows_naming_line_field_fix_and_counts(tmp_path, capsys):
    prepared = tmp_path / "prepared" / "rl" / "tiny_math"
    prepared.mkdir(parents=True)
    (prepared / "stats.json").write_text("{}\n")  # a finished preparation: not redone
    train = prepared / "train.jsonl"
    train.write_text(
        _line(prompt=USER, label="\\frac{3}{4}", metadata={"source_name": "x"})  # 1 ok
        + _line(prompt=USER, label=None)                                        # 2
        + _line(prompt=USER, label=["3", "4"])                                  # 3
        + _line(prompt=USER, label="\\frac{1}{")                                # 4
        + _line(prompt=USER, label="see the worked solution")                   # 5
        + _line(prompt=USER, label="3", metadata="source=x")                    # 6
        + _line(prompt="What is 2 + 2?", label=4)                               # 7 ok
        + _line(prompt={"role": "user"}, label="1")                             # 8
        + "\n\n")                                                               # blank end
    before = train.read_bytes()
    code = swallow_train(["rl", "model=tiny_dense", f"data.prepared_dir={tmp_path}/prepared",
                          f"run.root={tmp_path}/runs", f"init.hf={tmp_path}/no-model-needed"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert f"{train}: 6 of 8 prompt rows rejected" in err
    expected = {
        "label_missing": (1, f"{train}:2: label is null"),
        "label_several": (1, f"{train}:3: label holds 2 answers ['3', '4']"),
        "label_unparseable": (2, f"{train}:4: label '\\\\frac{{1}}{{': math-verify cannot "
                                 "parse it"),
        "metadata_type": (1, f"{train}:6: metadata is a str ('source=x')"),
        "prompt_type": (1, f"{train}:8: prompt is a dict"),
    }
    for reason, (count, first) in expected.items():
        assert f"{reason}: {count} (first {first}); fix: {FIX[Reject(reason)]}" in err, reason
    assert "fix or remove these lines" in err
    assert train.read_bytes() == before  # nothing rewritten
    assert not (tmp_path / "runs" / "tiny_dense" / "rl" / "DONE").exists()


def test_valid_rows_load_with_exact_labels_string_prompts_and_blank_lines(tmp_path, tok):
    path = tmp_path / "train.jsonl"
    path.write_text(
        "\ufeff"  # a UTF-8 BOM is valid text
        + _line(prompt=USER, label=["\\frac{3}{4}"], metadata={"source_name": "dapo"})
        + _line(prompt="What is 2 + 2?", label=4, metadata=None)
        + _line(prompt=USER, label=[" 12 ", "12"])  # one distinct answer
        + "\n   \n", encoding="utf-8")
    prompts = PromptSet.load(path, tok, max_prompt_len=256).prompts
    assert [p.label for p in prompts] == ["\\frac{3}{4}", "4", "12"]
    assert [p.source for p in prompts] == ["dapo", "", ""]
    templated = tok.decode(prompts[1].ids[0].tolist())
    assert "<|im_start|>user\nWhat is 2 + 2?<|im_end|>" in templated


def test_prepare_rl_drops_and_counts_bad_labels(tmp_path, capsys):
    rows = [
        {"prompt": "Compute 1/2 + 1/4.", "ground_truth": ["\\frac{3}{4}"], "dataset": ["math"]},
        {"prompt": "Roots of x^2-7x+12?", "ground_truth": ["3", "4"], "dataset": ["math"]},
        {"prompt": "Null answer?", "ground_truth": [None], "dataset": ["math"]},
        {"prompt": "Cut answer?", "ground_truth": ["\\frac{1}{"], "dataset": ["math"]},
        {"prompt": "Prose answer?", "ground_truth": "see the worked solution",
         "dataset": ["math"]},
        {"prompt": "Nested?", "ground_truth": [["3", "4"]], "dataset": ["math"]},
        {"prompt": "Compute 2^10.", "ground_truth": ["1024"], "dataset": ["math"]},
        {"prompt": "Compute 3^2.", "ground_truth": 9, "dataset": ["math"]},
    ]
    src = tmp_path / "dolci.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    prepared = tmp_path / "prepared"
    code = swallow_train(["prepare-rl", "data.dolci.hf=null", f"data.dolci.path={src}",
                          "data.eval_size=1", f"data.prepared_dir={prepared}"])
    out = capsys.readouterr().out
    assert code == 0
    stats = json.loads((prepared / "rl" / "dolci_think_rl_7b_math" / "stats.json").read_text())
    assert stats["rejected"] == {"label_missing": 1, "label_several": 1, "label_type": 1,
                                 "label_unparseable": 2}
    assert stats["math"] == 8 and stats["unique"] == 3
    assert stats["rejected_examples"]["label_missing"] == [f"{src}:3: label [None] holds no answer"]
    assert stats["rejected_examples"]["label_type"] == [f"{src}:6: label is a list (['3', '4'])"]
    assert "rejected: 5 rows" in out
    assert f"label_several: 1, e.g. {src}:2: label holds 2 answers ['3', '4']" in out
    written = [json.loads(line) for name in ("train.jsonl", "eval.jsonl")
               for line in (prepared / "rl" / "dolci_think_rl_7b_math" / name).read_text()
               .splitlines()]
    assert sorted(r["label"] for r in written) == ["1024", "9", "\\frac{3}{4}"]
    assert all(clean_label(r["label"]) == r["label"] for r in written)


@pytest.mark.parametrize("label,reason", [
    (None, Reject.label_missing), ("  ", Reject.label_missing), ([], Reject.label_missing),
    (["3", "4"], Reject.label_several), (True, Reject.label_type), ({"a": 1}, Reject.label_type),
    ("\\frac{1}{", Reject.label_unparseable), ("see the worked solution",
                                               Reject.label_unparseable),
    ("None", Reject.label_unparseable), (float("nan"), Reject.label_unparseable),
])
def test_label_rules_reject(label, reason):
    from swallow_train.rl.prompt_rows import Rejected

    with pytest.raises(Rejected) as info:
        clean_label(label)
    assert info.value.reason is reason


@pytest.mark.parametrize("label,text", [
    (3, "3"), (0.5, "0.5"), (["3/4"], "3/4"), ("\\frac{3}{4}", "\\frac{3}{4}"),
    ("x^2+1", "x^2+1"), ("(1, 2)", "(1, 2)"), ("\\sqrt{2}", "\\sqrt{2}"), ("１２個", "１２個"),
    ("\\text{Monday}", "\\text{Monday}"), ("(-\\infty, 2]", "(-\\infty, 2]"), ("A", "A"),
])
def test_label_rules_accept(label, text):
    assert clean_label(label) == text
