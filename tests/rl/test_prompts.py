"""`swallow-train prepare-rl`: the Dolci-Think-RL math subset to slime's JSONL, deduplicated and
counted, and the tiny synthetic set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from swallow_train import cli
from swallow_train.config import compose
from swallow_train.data.sources import DataError
from swallow_train.data.tiny_math import HEDGED_SHARE, format_conversations, tiny_problems
from swallow_train.rl.prompts import prepare
from swallow_train.rl.verify import score_response


def dolci_row(i: int, prompt: str, answer, dataset, **extra) -> dict:
    return {"prompt": prompt, "ground_truth": answer, "dataset": dataset,
            "custom_id": f"id-{i}", "original_dataset": extra.pop("source", "DAPO-Math"),
            "input_ids_prompt": [100, 200, 300], "outputs": ["x"], "passrate": 0.5, **extra}


ROWS = [
    dolci_row(0, "user: What is 1/2 + 1/4?", ["\\frac{3}{4}"], ["math"]),
    dolci_row(1, "Write a haiku.", ["..."], ["general-quality"]),
    dolci_row(2, "Solve x + 1 = 3.", ["2"], ["math"], source="OpenReasonerZero"),
    dolci_row(3, "user:  what is 1/2 + 1/4?  ", ["0.75"], ["math"]),  # duplicate, other label
    dolci_row(4, "def f(): pass", ["assert f() is None"], ["code"]),
    dolci_row(5, "Compute 2^10.", "1024", "math"),  # plain strings instead of lists
    dolci_row(6, "Empty answer?", [""], ["math"]),
    dolci_row(7, "Solve x + 1 = 3.", ["2"], ["math"]),  # exact duplicate
    dolci_row(8, "Find the interval where x^2 < 1.", ["(-1,1)"], ["math"], source="OMEGA"),
]


def _prepare(tmp_path: Path, rows: list[dict], *extra: str):
    src = tmp_path / "dolci.jsonl"
    tmp_path.mkdir(parents=True, exist_ok=True)
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = compose("rl", [f"data.prepared_dir={tmp_path}/prepared", "data.dolci.hf=null",
                            f"data.dolci.path={src}", "data.eval_size=1", *extra])
    return recipe, prepare(recipe.data)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_dolci_math_subset_to_slime_rows(tmp_path: Path) -> None:
    recipe, stats = _prepare(tmp_path, ROWS)
    assert {k: stats[k] for k in ("read", "not_math", "rejected", "math", "duplicates",
                                   "duplicates_with_other_label", "unique", "train", "eval")} == {
        "read": 9, "not_math": 2, "rejected": {"label_missing": 1}, "math": 7, "duplicates": 2,
        "duplicates_with_other_label": 1, "unique": 4, "train": 3, "eval": 1}
    assert stats["rejected_examples"] == {"label_missing": [f"{tmp_path}/dolci.jsonl:7: "
                                                            "label [''] holds no answer"]}
    rows = _read(recipe.data.train_path) + _read(recipe.data.eval_path)
    by_id = {r["metadata"]["id"]: r for r in rows}
    assert sorted(by_id) == ["id-0", "id-2", "id-5", "id-8"]
    first = by_id["id-0"]
    assert first["prompt"] == [{"role": "user", "content": "What is 1/2 + 1/4?"}]  # no "user: "
    assert first["label"] == "\\frac{3}{4}"
    assert first["metadata"] == {"source_name": "DAPO-Math", "id": "id-0"}
    assert by_id["id-5"]["label"] == "1024"
    assert all(set(r) == {"prompt", "label", "metadata"} for r in rows)  # no OLMo token ids
    assert json.loads(recipe.data.stats_path.read_text()) == stats
    # the labels are what the reward checks answers against
    assert score_response("<think></think>\\boxed{0.75}", first["label"]) == 1.0


def test_eval_split_is_stable_and_disjoint(tmp_path: Path) -> None:
    rows = [dolci_row(i, f"Compute {i} + {i}.", [str(2 * i)], ["math"]) for i in range(40)]
    recipe, _ = _prepare(tmp_path / "a", rows, "data.eval_size=8")
    again, _ = _prepare(tmp_path / "b", list(reversed(rows)), "data.eval_size=8")
    held = {r["metadata"]["id"] for r in _read(recipe.data.eval_path)}
    assert held == {r["metadata"]["id"] for r in _read(again.data.eval_path)}
    assert len(held) == 8
    assert not held & {r["metadata"]["id"] for r in _read(recipe.data.train_path)}


def test_bad_rows_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dolci.jsonl:2: no ground_truth column"):
        _prepare(tmp_path, [ROWS[0], {"prompt": "x", "dataset": ["math"]}])


def test_offline_hub_names_the_fix(tmp_path: Path, hub_offline: None) -> None:
    recipe = compose("rl", [f"data.prepared_dir={tmp_path}"])
    with pytest.raises(DataError, match="huggingface-cli download --repo-type dataset"):
        prepare(recipe.data)


def test_tiny_set_is_deterministic_bilingual_and_answerable(tmp_path: Path, capsys) -> None:
    rows = tiny_problems(seed=0)
    assert rows == tiny_problems(seed=0) and rows != tiny_problems(seed=1)
    assert len(rows) == 220 and len({r["prompt"][0]["content"] for r in rows}) == 220
    langs = {r["metadata"]["source_name"] for r in rows}
    assert langs == {"tiny_math_en", "tiny_math_ja"}
    facts: dict[str, set[str]] = {}
    for row in rows:
        assert 0 <= int(row["label"]) <= 9
        question = row["prompt"][0]["content"]
        expr = re.search(r"(\d) \+ (\d)", question)
        assert expr is not None, question  # ASCII digits in every language
        assert int(expr.group(1)) + int(expr.group(2)) == int(row["label"])
        facts.setdefault(expr.group(0), set()).add(question)
    assert len(facts) == 55 and all(len(q) == 4 for q in facts.values())  # four phrasings
    chat = format_conversations(rows[:1])[0]
    assert chat[-1] == {"role": "assistant", "content": f"\\boxed{{{rows[0]['label']}}}"}
    args = ["model=tiny_dense", f"data.prepared_dir={tmp_path}"]
    assert cli.main(["prepare-rl", *args]) == 0  # stages/prepare.py:rl -> prompts.prepare_rl
    recipe = compose("rl", args)
    out = capsys.readouterr().out
    assert "train: 156" in out and "eval: 64" in out
    assert len(_read(recipe.data.train_path)) == 156


def test_the_tiny_sft_teacher_hedges_a_fixed_share_and_the_verifier_scores_it_0() -> None:
    """The tiny SFT set's imperfect teacher: what RL, rewarded by the verifier, unlearns."""
    rows = tiny_problems(seed=0)
    chats = format_conversations(rows, hedged=HEDGED_SHARE)
    assert chats == format_conversations(list(rows), hedged=HEDGED_SHARE)  # same rows each time
    hedged = 0
    for row, chat in zip(rows, chats, strict=True):
        answer, label = chat[-1]["content"], int(row["label"])
        if answer == f"\\boxed{{{label}}}":
            assert score_response(answer, row["label"]) == 1.0
            continue
        hedged += 1
        word = "または" if row["metadata"]["source_name"] == "tiny_math_ja" else "or"
        assert answer == f"\\boxed{{{label} {word} {label + 1 if label < 9 else label - 1}}}"
        assert score_response(answer, row["label"]) == 0.0, answer
    assert abs(hedged / len(rows) - HEDGED_SHARE) < 0.05
    assert format_conversations(rows) == [  # hedged=0: every answer plain
        [*r["prompt"], {"role": "assistant", "content": f"\\boxed{{{r['label']}}}"}]
        for r in rows]


def test_prompt_set_prefills_the_empty_think_block_with_thinking_off(tmp_path: Path) -> None:
    from swallow_train.rl.rollout import PromptSet
    from swallow_train.tokenizer import load_tokenizer

    tok = load_tokenizer("bundled:qwen3")
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                            for r in tiny_problems(seed=0)[:2]))
    on, off = (PromptSet.load(path, tok, max_prompt_len=128, enable_thinking=thinking)
               for thinking in (True, False))
    for a, b in zip(on.prompts, off.prompts, strict=True):
        text_on, text_off = (tok.decode(p.ids[0].tolist()) for p in (a, b))
        assert text_on.endswith("<|im_start|>assistant\n")
        assert text_off == text_on + "<think>\n\n</think>\n\n"  # the response is the answer
