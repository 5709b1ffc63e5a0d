"""Decontamination through `prepare`, `prepare-sft` and `prepare-rl` on tiny data with planted
overlaps: exact counts and locations in the report, and with `data.decontam.drop=true` exactly
the planted documents / conversations / prompts left out, the rest byte-exact and deterministic
(one process or two), and a switch of `drop` never reuses output prepared without it."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from swallow_train.config import compose
from swallow_train.data.manifest import load_manifest
from swallow_train.data.prepared import cpt_manifest, prepare_cpt, prepare_packs, sft_manifest
from swallow_train.data.sft_stats import report
from swallow_train.data.sources import DataError
from swallow_train.rl.prompts import prepare, prepare_rl

from .conftest import TOKENIZER
from .test_decontam import EN_ROW, EN_WORDS, JA_Q, JA_ROW, _write

THIRTEEN = " ".join(EN_WORDS[3:16])
FULL_WIDTH = THIRTEEN.upper().translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
DOCS = [
    "普通の文書その一です。今日は晴れでした。",
    "復習です。主に子供向けのもので、イラストのついた物語が書かれているものはどれでしょうか。",
    f"Quiz time! {THIRTEEN.title()}, said the teacher.",  # 13 words: contaminated
    f"Quiz time! {' '.join(EN_WORDS[3:15])}, said the teacher.",  # 12 words: near miss
    f"全角の引用：{FULL_WIDTH}。",  # full-width copy of the 13 words
    "主に子供向けの本で、絵のついたお話が書かれているものはどれですか。",  # paraphrase
    *[f"普通の文書その{i}。Document number {i} is plain." for i in range(6)],
]
PLANTED = (2, 3, 5)  # 1-based lines of the contaminated documents


@pytest.fixture
def evals(tmp_path: Path) -> list[str]:
    return [_write(tmp_path / "ja.jsonl", [JA_ROW]),
            _write(tmp_path / "en.jsonl", [{"x": "unrelated"}, EN_ROW])]


def _overrides(tmp_path: Path, evals: list[str], out: str, drop: bool) -> list[str]:
    return [f"data.prepared_dir={tmp_path / out}",
            f"data.decontam.eval_sets=[{','.join(evals)}]", f"data.decontam.drop={drop}"]


def _cpt(tmp_path: Path, evals: list[str], out: str, drop: bool) -> Any:
    from swallow_train.mcore.indexed import ShardWriter

    _write(tmp_path / "a.jsonl", [{"text": d} for d in DOCS])
    (tmp_path / "m.yaml").write_text("name: small\nstage: cpt\ncorpora:\n  - name: a\n"
                                     "    language: ja\n    source: {path: a.jsonl}\n"
                                     "    budget: 100\n")
    recipe = compose("cpt", ["model=tiny_dense", f"data.manifest={tmp_path / 'm.yaml'}",
                             "data.docs_per_shard=4", "data.num_workers=1",
                             *_overrides(tmp_path, evals, out, drop)])
    return prepare_cpt(recipe.data, TOKENIZER, cpt_manifest(recipe.data), writer=ShardWriter,
                       command="swallow-train prepare", progress=False)


def _expected_counts(tmp_path: Path, dropped: int, checked: int) -> dict[str, Any]:
    ja, en, a = tmp_path / "ja.jsonl", tmp_path / "en.jsonl", tmp_path / "a.jsonl"
    return {"checked": checked, "contaminated": 3, "dropped": dropped,
            "sets": {str(ja): 1, str(en): 2},
            "examples": {str(ja): [f"{a}:2 ~ {ja}:1"],
                         str(en): [f"{a}:3 ~ {en}:2", f"{a}:5 ~ {en}:2"]}}


def _tokens(out: Path) -> list[list[int]]:
    from swallow_train.mcore.indexed import read_documents

    return [d.tolist() for k in range(3) if (out / "a" / f"shard-{k:05d}.bin").exists()
            for d in read_documents(out / "a" / f"shard-{k:05d}")]


def test_cpt_reports_then_drops_exactly_the_planted_documents(tmp_path: Path, evals: list[str],
                                                              tok: Any) -> None:
    seen = _cpt(tmp_path, evals, "report", drop=False)
    counts = {k: seen.decontam[k] for k in ("checked", "contaminated", "dropped", "sets",
                                            "examples")}
    assert counts == _expected_counts(tmp_path, dropped=0, checked=12)
    assert seen.stats["corpora"]["a"]["documents"] == 12
    assert json.loads((seen.path / "decontam.json").read_text()) == seen.decontam
    assert "contaminated 3 (25.000%), dropped 0" in seen.summary()

    dropped = _cpt(tmp_path, evals, "drop", drop=True)
    counts = {k: dropped.decontam[k] for k in counts}
    assert counts == _expected_counts(tmp_path, dropped=3, checked=12)
    assert dropped.stats["corpora"]["a"]["documents"] == 9
    kept = [d for line, d in enumerate(DOCS, 1) if line not in PLANTED]
    eod = dropped.stats["eod"]
    assert _tokens(dropped.path) == [tok(d, add_special_tokens=False)["input_ids"] + [eod]
                                     for d in kept]
    # two worker processes (each maps the saved index) write the same bytes
    from swallow_train.data import prepare as engine
    from swallow_train.mcore.indexed import ShardWriter

    cfg = compose("cpt", ["model=tiny_dense", *_overrides(tmp_path, evals, "x", True)])
    spawned = engine.prepare(load_manifest(tmp_path / "m.yaml"), tmp_path / "spawn", TOKENIZER,
                             writer=ShardWriter, workers=2, docs_per_shard=4, progress=False,
                             in_process_below=0, decontam=cfg.data.decontam)
    assert spawned.workers == 2 and spawned.decontam["dropped"] == 3
    for shard in sorted((dropped.path / "a").glob("shard-*.bin")):
        assert (spawned.path / "a" / shard.name).read_bytes() == shard.read_bytes()

    # drop switched on where the corpus was prepared without it: refused, naming the change
    with pytest.raises(DataError, match=r"decontam .*ja\.jsonl: added"):
        _cpt(tmp_path, evals, "report", drop=True)


def _sft(tmp_path: Path, evals: list[str], out: str, drop: bool) -> Any:
    def chat(user: str, answer: str) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": user},
                             {"role": "assistant", "content": answer}]}

    convs = [chat("こんにちは", "こんにちは！"), chat(JA_Q, "絵本です。"),
             chat("Tell me something.", f"Sure: {THIRTEEN}."), chat("2+2?", "4"),
             chat("Near miss?", " ".join(EN_WORDS[3:15])), chat(FULL_WIDTH, "Nitrogen.")]
    _write(tmp_path / "c.jsonl", convs)
    (tmp_path / "s.yaml").write_text("name: chat\nstage: sft\nsources:\n  - name: c\n"
                                     "    language: ja-en\n    source: {path: c.jsonl}\n")
    recipe = compose("sft", ["model=tiny_dense", f"data.manifest={tmp_path / 's.yaml'}",
                             "data.num_workers=1", *_overrides(tmp_path, evals, out, drop)])
    return prepare_packs(recipe.data, TOKENIZER, 256, sft_manifest(recipe.data),
                         command="swallow-train prepare-sft", progress=False).stats


def test_sft_reports_then_drops_exactly_the_planted_conversations(tmp_path: Path,
                                                                  evals: list[str]) -> None:
    c, ja, en = tmp_path / "c.jsonl", str(tmp_path / "ja.jsonl"), str(tmp_path / "en.jsonl")
    seen = _sft(tmp_path, evals, "report", drop=False)
    assert seen["total"]["kept"] == 6 and seen["total"]["dropped"]["contaminated"] == 0
    expected = {"checked": 6, "contaminated": 3, "dropped": 0, "sets": {ja: 1, en: 2},
                "examples": {ja: [f"{c}:2 ~ {ja}:1"], en: [f"{c}:3 ~ {en}:2", f"{c}:6 ~ {en}:2"]}}
    assert {k: seen["decontam"][k] for k in expected} == expected

    stats = _sft(tmp_path, evals, "drop", drop=True)
    t = stats["total"]
    assert (t["read"], t["kept"], t["dropped"]["contaminated"]) == (6, 3, 3)
    assert stats["sources"]["c"]["examples"]["contaminated"] == [f"{c}:2", f"{c}:3", f"{c}:6"]
    assert {k: stats["decontam"][k] for k in expected} == {**expected, "dropped": 3}
    text = report(stats)
    assert "dropped contaminated: 3 (first at" in text and "contaminated 3 (50.000%)" in text


DOLCI_VOCAB = [f"word{j}" for j in range(300)]


def test_rl_drops_planted_training_prompts_and_keeps_the_held_out_split(tmp_path: Path,
                                                                        capsys: Any) -> None:
    rng = random.Random(0)
    prompts = [f"Compute: {' '.join(rng.choice(DOLCI_VOCAB) for _ in range(16))}"
               for _ in range(12)]
    src = _write(tmp_path / "dolci.jsonl",
                 [{"prompt": p, "ground_truth": [str(i)], "dataset": ["math"],
                   "custom_id": f"id-{i}"} for i, p in enumerate(prompts)])
    planted = (1, 4, 7, 10)
    ev = _write(tmp_path / "ev.jsonl", [{"problem": "Solve it. " + prompts[i]} for i in planted])

    def run(out: str, drop: bool) -> tuple[Any, dict[str, Any]]:
        recipe = compose("rl", ["data.dolci.hf=null", f"data.dolci.path={src}",
                                "data.eval_size=2", *_overrides(tmp_path, [ev], out, drop)])
        return recipe.data, prepare(recipe.data)

    def ids(path: Path) -> list[str]:
        return [json.loads(line)["metadata"]["id"] for line in path.read_text().splitlines()]

    cfg, seen = run("report", drop=False)
    train = ids(cfg.train_path)
    hit = [f"id-{i}" for i in planted if f"id-{i}" in train]
    assert len(hit) >= 2 and seen["train"] == 10
    assert (seen["decontam"]["contaminated"], seen["decontam"]["dropped"]) == (len(hit), 0)
    assert seen["decontam"]["examples"][ev] == [
        f"{i} ~ {ev}:{planted.index(int(i[3:])) + 1}" for i in train if i in hit]

    cfg2, stats = run("drop", drop=True)
    assert ids(cfg2.train_path) == [i for i in train if i not in hit]
    assert cfg2.eval_path.read_text() == cfg.eval_path.read_text()  # the split is unchanged
    assert stats["decontam"]["dropped"] == len(hit) and stats["train"] == 10 - len(hit)
    capsys.readouterr()
    prepare_rl(cfg2)
    assert f"contaminated {len(hit)} " in capsys.readouterr().out
