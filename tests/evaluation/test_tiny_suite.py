"""The tiny offline suite: byte-identical for a seed, Japanese and English, multiple choice and
generation, gold answers that the passages support, and math prompts that SFT and RL hold out."""

from __future__ import annotations

import re

import yaml

from swallow_train.data.tiny_math import TINY_EVAL_SIZE, prompt_key, tiny_problems, tiny_sft_rows
from swallow_train.evaluation.tiny_suite import (
    TASKS,
    held_out_math,
    text_loss,
    tiny_docs,
    write_tiny_tasks,
)

JA = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
ALL = list(TASKS)


def _files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_generation_is_deterministic_per_seed(tmp_path) -> None:
    a = write_tiny_tasks(tmp_path / "a", ALL, seed=3, items=12, math_items=8)
    b = write_tiny_tasks(tmp_path / "b", list(reversed(ALL)), seed=3, items=12, math_items=8)
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(f"{t}.{ext}" for t in ALL for ext in ("jsonl", "yaml"))
    assert {k: v for k, v in fa.items() if k.endswith(".jsonl")} == {
        k: v for k, v in fb.items() if k.endswith(".jsonl")}  # same data, any task order
    c = write_tiny_tasks(tmp_path / "c", ALL, seed=4, items=12, math_items=8)
    fc = _files(c)
    assert fc["tiny_mc_ja.jsonl"] != fa["tiny_mc_ja.jsonl"]  # the seed matters ...
    assert fc["tiny_math.jsonl"] == fa["tiny_math.jsonl"]  # ... but not for the held-out split


def test_tasks_are_japanese_and_english_multiple_choice_and_generation(tmp_path) -> None:
    out = write_tiny_tasks(tmp_path, ALL, seed=0, items=10, math_items=10)
    kinds = {t: yaml.safe_load((out / f"{t}.yaml").read_text(encoding="utf-8"))["output_type"]
             for t in ALL}
    assert kinds == {"tiny_mc_en": "multiple_choice", "tiny_mc_ja": "multiple_choice",
                     "tiny_qa_en": "generate_until", "tiny_qa_ja": "generate_until",
                     "tiny_text": "loglikelihood_rolling", "tiny_math": "generate_until"}
    for lang, japanese in (("en", False), ("ja", True)):
        for kind in ("mc", "qa"):
            docs = tiny_docs(f"tiny_{kind}_{lang}", seed=0, items=10, math_items=0)
            assert len(docs) == 10
            assert all(bool(JA.search(d["query"])) is japanese for d in docs)
    math = tiny_docs("tiny_math", seed=0, items=0, math_items=10)
    assert {d["id"].split("-")[1] for d in math} == {"en", "ja"}
    config = yaml.safe_load((out / "tiny_mc_ja.yaml").read_text(encoding="utf-8"))
    assert config["dataset_path"] == "json" and config["target_delimiter"] == ""
    assert (out / "tiny_mc_ja.jsonl").resolve() == tmp_path.joinpath(
        config["dataset_kwargs"]["data_files"]["test"])


def test_gold_answers_are_in_the_passage_and_unique_among_choices() -> None:
    for lang in ("en", "ja"):
        for doc in tiny_docs(f"tiny_mc_{lang}", seed=1, items=50, math_items=0):
            passage = doc["query"].split("\n")[0]
            hits = [c for c in doc["choices"] if c in passage]
            assert hits == [doc["choices"][doc["gold"]]] and len(set(doc["choices"])) == 4
        for doc in tiny_docs(f"tiny_qa_{lang}", seed=1, items=50, math_items=0):
            assert re.findall(r"\d+", doc["query"].split("\n")[0]) == [doc["answer"]]


def test_math_prompts_are_the_held_out_ones_never_trained_on() -> None:
    docs = tiny_docs("tiny_math", seed=0, items=0, math_items=TINY_EVAL_SIZE)
    assert len(docs) == TINY_EVAL_SIZE
    questions = {d["question"] for d in docs}
    trained = {row["prompt"][-1]["content"] for row in tiny_sft_rows()}  # SFT and RL train split
    assert questions.isdisjoint(trained)
    every = {row["prompt"][-1]["content"]: row["label"] for row in tiny_problems(0)}
    assert questions | trained == set(every)  # the split covers every problem once
    assert all(every[d["question"]] == d["label"] for d in docs)
    # fewer items are the first of the same held-out set (a prefix of the hash ranking)
    fewer = {prompt_key(r) for r in held_out_math(8, 0)}
    assert fewer <= {prompt_key(r) for r in held_out_math(TINY_EVAL_SIZE, 0)} and len(fewer) == 8


def test_held_out_prompts_ask_trained_facts_in_another_phrasing() -> None:
    """Each held-out prompt's expression (`3 + 4`) is asked by a trained prompt too: a model
    that learns the facts from the train split can answer the held-out phrasings."""
    expr = re.compile(r"\d [-+×] \d")
    trained = {expr.search(row["prompt"][-1]["content"]).group(0) for row in tiny_sft_rows()}
    held = [expr.search(d["question"]).group(0)
            for d in tiny_docs("tiny_math", seed=0, items=0, math_items=TINY_EVAL_SIZE)]
    assert len(held) == TINY_EVAL_SIZE and set(held) <= trained


def test_text_loss_is_nats_per_token_of_held_out_corpus_documents() -> None:
    docs = tiny_docs("tiny_text", seed=0, items=12, math_items=0)
    assert len(docs) == 12 and any(JA.search(d["text"]) for d in docs)
    assert any(not JA.search(d["text"]) for d in docs)
    samples = [{"doc": {"text": "a b c"}, "resps": [[-6.0]]},
               {"doc": {"text": "d"}, "resps": [[-2.0]]}]
    assert text_loss(samples, lambda text: len(text.split())) == 2.0  # 8 nats over 4 tokens
