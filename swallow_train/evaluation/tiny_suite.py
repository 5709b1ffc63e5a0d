"""The tiny offline suite: small Japanese and English tasks whose JSONL (seeded, byte-identical
for the same seed) and lm-eval task YAMLs are written here, for `include_path`. No hub access.

    tiny_mc_en / tiny_mc_ja   multiple choice: which city / who a sentence is about (acc)
    tiny_qa_en / tiny_qa_ja   generation: how many people a sentence counts (exact match)
    tiny_math                 generation: the held-out tiny EN/JA arithmetic prompts of the RL
                              stage (data/tiny_math.py), never trained on; scored with the RL
                              verifier (pass@1 of k), and by lm-eval on the \\boxed{} answer
    tiny_text                 rolling log-likelihood of held-out tiny-corpus documents (the CPT
                              generators, another seed): `tiny_text/loss`, the mean next-token
                              loss in nats (`text_loss`), next to lm-eval's bits per byte

    from swallow_train.evaluation.tiny_suite import write_tiny_tasks
    write_tiny_tasks(out_dir, ["tiny_mc_ja", "tiny_math"], seed=0, items=24, math_items=32)
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from swallow_train.data.synthetic import ACTIONS, PEOPLE, PLACES, TOPICS, en_text, ja_text, math
from swallow_train.data.tiny_math import fact, prompt_key, split_held_out, tiny_problems
from swallow_train.rl.prompt_rows import clean_row

MATH_TASK = "tiny_math"
TEXT_TASK = "tiny_text"
MATH_LABEL = "label"
"""The field of a tiny_math doc that holds the reference answer (eval_suite.math)."""
END_STOPS = ["<|im_end|>", "<|endoftext|>"]
_BOXED = r"\\boxed\{([^{}]*)\}"
_NUMBER = r"(-?\d+)"


def _passage(rng: random.Random, ja: bool) -> tuple[str, int, int, int]:
    """(sentence, place index, people index, count) of one counted-people sentence."""
    p, w = rng.randrange(len(PLACES)), rng.randrange(len(PEOPLE))
    topic, action, n = rng.choice(TOPICS), rng.choice(ACTIONS), rng.randint(2, 98)
    if ja:
        text = f"{PLACES[p][0]}では{n}人の{PEOPLE[w][0]}が{topic[0]}について{action[0]}。"
    else:
        text = f"In {PLACES[p][1]}, {n} {PEOPLE[w][1]} {action[1]} {topic[1]}."
    return text, p, w, n


def _choices(rng: random.Random, table: list[tuple[str, str]], gold: int,
             ja: bool) -> tuple[list[str], int]:
    """Four options (the gold one and three others, shuffled) and the gold's position."""
    picks = [gold, *rng.sample([i for i in range(len(table)) if i != gold], 3)]
    rng.shuffle(picks)
    return [table[i][0 if ja else 1] for i in picks], picks.index(gold)


def _mc_doc(rng: random.Random, ja: bool) -> dict[str, Any]:
    text, p, w, _ = _passage(rng, ja)
    if rng.random() < 0.5:
        q = "この文はどの都市についての文ですか？" if ja else "Which city is the sentence about?"
        choices, gold = _choices(rng, PLACES, p, ja)
    else:
        q = "この文に出てくるのは誰ですか？" if ja else "Who does the sentence talk about?"
        choices, gold = _choices(rng, PEOPLE, w, ja)
    query = f"{text}\n質問: {q}\n答え:" if ja else f"{text}\nQuestion: {q}\nAnswer:"
    return {"query": query, "choices": choices, "gold": gold}


def _qa_doc(rng: random.Random, ja: bool) -> dict[str, Any]:
    text, _, w, n = _passage(rng, ja)
    q = (f"{PEOPLE[w][0]}は何人ですか？数字で答えてください。" if ja
         else f"How many {PEOPLE[w][1]} are there? Answer with a number.")
    query = f"{text}\n質問: {q}\n答え:" if ja else f"{text}\nQuestion: {q}\nAnswer:"
    return {"query": query, "answer": str(n)}


def held_out_math(items: int, split_seed: int) -> list[dict[str, Any]]:
    """The first `items` tiny math prompts that the RL stage holds out with `split_seed` (its
    data.seed): the same cleaning, deduplication and hash-ranked split as `prepare-rl`, so for
    `items` <= data.eval_size every prompt is one SFT and RL never trained on."""
    kept: dict[str, dict[str, Any]] = {}
    for raw in tiny_problems(split_seed):
        row = clean_row(raw)
        kept.setdefault(prompt_key(row), row)
    return split_held_out(kept, items, split_seed, group=fact)[1]


def _math_docs(items: int, split_seed: int) -> list[dict[str, Any]]:
    return [{"question": row["prompt"][-1]["content"], MATH_LABEL: row["label"],
             "id": row["metadata"]["id"]} for row in held_out_math(items, split_seed)]


def _mc_task(lang: str) -> dict[str, Any]:
    return {"output_type": "multiple_choice", "doc_to_text": "query", "doc_to_choice": "choices",
            "doc_to_target": "gold", "target_delimiter": "" if lang == "ja" else " ",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}


def _gen_task(target: str, pattern: str, select: int, text: str = "query") -> dict[str, Any]:
    return {
        "output_type": "generate_until", "doc_to_text": text, "doc_to_target": target,
        "generation_kwargs": {"until": END_STOPS, "do_sample": False, "max_gen_toks": 64},
        "filter_list": [{"name": "answer", "filter": [
            {"function": "regex", "regex_pattern": pattern, "group_select": select},
            {"function": "take_first"}]}],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": True, "ignore_punctuation": True}],
    }


def _text_doc(rng: random.Random) -> dict[str, Any]:
    """A held-out document of the tiny CPT corpus's kinds (Japanese, English, math)."""
    return {"text": rng.choice((ja_text, en_text, math))(rng)["text"]}


TEXT_CONFIG: dict[str, Any] = {
    "output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "text",
    "metric_list": [{"metric": "bits_per_byte", "aggregation": "bits_per_byte",
                     "higher_is_better": False}]}


def text_loss(samples: list[dict[str, Any]], count_tokens: Callable[[str], int]) -> float:
    """Mean next-token loss (nats) over the logged `tiny_text` samples: minus their summed
    rolling log-likelihoods over their summed token counts (every token of a document is
    predicted, the first from the end-of-text prefix)."""
    total = sum(float(s["resps"][0][0]) for s in samples)
    tokens = sum(count_tokens(s["doc"]["text"]) for s in samples)
    return -total / max(tokens, 1)


Builder = Callable[[int, int, int], list[dict[str, Any]]]
TASKS: dict[str, tuple[Builder, dict[str, Any]]] = {
    "tiny_mc_en": (lambda seed, n, _m: _docs(seed, n, "mc_en", lambda r: _mc_doc(r, False)),
                   _mc_task("en")),
    "tiny_mc_ja": (lambda seed, n, _m: _docs(seed, n, "mc_ja", lambda r: _mc_doc(r, True)),
                   _mc_task("ja")),
    "tiny_qa_en": (lambda seed, n, _m: _docs(seed, n, "qa_en", lambda r: _qa_doc(r, False)),
                   _gen_task("answer", _NUMBER, 0)),
    "tiny_qa_ja": (lambda seed, n, _m: _docs(seed, n, "qa_ja", lambda r: _qa_doc(r, True)),
                   _gen_task("answer", _NUMBER, 0)),
    TEXT_TASK: (lambda seed, n, _m: _docs(seed, n, "text", _text_doc), TEXT_CONFIG),
    MATH_TASK: (lambda split_seed, _n, m: _math_docs(m, split_seed),
                _gen_task(MATH_LABEL, _BOXED, -1, text="question")),
}
"""Every tiny task: (docs from (seed, items, math items), its lm-eval config)."""


def _docs(seed: int, n: int, salt: str,
          make: Callable[[random.Random], dict[str, Any]]) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}:{salt}")  # one stream per task: a task's docs do not
    return [make(rng) for _ in range(n)]  # depend on which other tasks the suite holds


def tiny_docs(task: str, *, seed: int, items: int, math_items: int,
              split_seed: int = 0) -> list[dict[str, Any]]:
    """The documents of one tiny task (deterministic in its arguments)."""
    if task not in TASKS:
        raise KeyError(task)
    return TASKS[task][0](split_seed if task == MATH_TASK else seed, items, math_items)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_tiny_tasks(out_dir: Path, tasks: list[str], *, seed: int, items: int,
                     math_items: int, split_seed: int = 0) -> Path:
    """`<task>.jsonl` and `<task>.yaml` for each task under `out_dir` (the include_path)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        docs = tiny_docs(task, seed=seed, items=items, math_items=math_items,
                         split_seed=split_seed)
        data = out_dir / f"{task}.jsonl"
        _write(data, "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n"
                             for d in docs))
        config = {"task": task, "dataset_path": "json",
                  "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
                  "test_split": "test", **TASKS[task][1], "metadata": {"version": 1.0}}
        _write(out_dir / f"{task}.yaml", yaml.safe_dump(config, allow_unicode=True,
                                                        sort_keys=False))
    return out_dir
