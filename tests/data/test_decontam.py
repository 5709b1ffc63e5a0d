"""Decontamination, the eval side and the matching: planted overlaps in Japanese (character
20-grams) and English (word 13-grams) are found, near misses are not, normalisation makes
full-width and half-width text equal, template n-grams are not indexed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swallow_train.data.decontam import DecontamConfig, Lookup, build, open_index, text_hashes
from swallow_train.data.ngrams import ngram_hashes, normalize, segments
from swallow_train.data.sources import DataError

JA_Q = "主に子ども向けのもので、イラストのついた物語が書かれているものはどれでしょうか？"
JA_ROW = {"question": JA_Q, "choices": ["世界", "写真集", "絵本", "論文", "図鑑"], "label": 2}
EN_WORDS = ["which", "of", "the", "following", "gases", "makes", "up", "most", "of", "the",
            "atmosphere", "of", "the", "planet", "venus", "according", "to", "the", "textbook"]
EN_ROW = {"doc": {"query": "Question: " + " ".join(EN_WORDS).capitalize() + "?",
                  "options": ["Nitrogen", "Carbon dioxide"]}}


def _write(path: Path, rows: list[Any]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return str(path)


@pytest.fixture
def index(tmp_path: Path) -> Any:
    cfg = DecontamConfig(eval_sets=[_write(tmp_path / "ja.jsonl", [JA_ROW]),
                                    _write(tmp_path / "en.jsonl", [{"x": "unrelated"}, EN_ROW])])
    return cfg, build(cfg, "data.decontam")


def _found(index: Any, text: Any) -> dict[str, str]:
    cfg, idx = index
    return {idx.sets[s]: idx.row_where[r] for s, r in idx.match(text_hashes(text, cfg)).items()}


def test_normalisation_makes_full_width_and_half_width_equal() -> None:
    assert normalize("ＷＨＩＣＨ　Ｏｆ，１２３！ ｶﾀｶﾅ「東京」") == "which of 123 カタカナ 東京"
    half = " ".join(EN_WORDS)
    full = half.upper().translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})  # ＷＨＩＣＨ...
    assert full != half and np.array_equal(ngram_hashes(full, 20, 13), ngram_hashes(half, 20, 13))
    assert ngram_hashes(half, 20, 13).size == len(EN_WORDS) - 12
    half_kana = "ｲﾗｽﾄのついた物語が書かれているものはどれでしょうか"
    full_kana = "イラストのついた物語が書かれているものはどれでしょうか"
    assert np.array_equal(ngram_hashes(half_kana, 20, 13), ngram_hashes(full_kana, 20, 13))


def test_script_segments_and_their_n_grams() -> None:
    text = normalize("Python 3 では、" + JA_Q + " " + " ".join(EN_WORDS) + "。終わり")
    chars, words = segments(text, 13)
    assert chars[0].startswith("python3では主に子ども") and chars[1] == "終わり"
    assert words == [EN_WORDS]
    ja = normalize(JA_Q).replace(" ", "")
    assert ngram_hashes(JA_Q, 20, 13).size == len(ja) - 19  # one per 20-character window
    assert ngram_hashes(" ".join(EN_WORDS[:12]), 20, 13).size == 0  # shorter than n


def test_japanese_question_copied_with_changes_around_it_is_found(index: Any,
                                                                 tmp_path: Path) -> None:
    doc = ("先週の授業の復習です。主に子供向けのもので、イラストのついた物語が書かれているものは"
           "どれでしょうか。正解は絵本でした！")  # 子ども -> 子供, punctuation changed
    assert _found(index, doc) == {str(tmp_path / "ja.jsonl"): f"{tmp_path / 'ja.jsonl'}:1"}


def test_japanese_near_miss_is_not_found(index: Any) -> None:
    # one character changed every 15: no 20-character window left intact
    q = normalize(JA_Q).replace(" ", "")
    near = "".join("x" if i % 15 == 7 else c for i, c in enumerate(q))
    assert _found(index, "復習:" + near) == {}
    assert _found(index, "復習:" + q) != {}


def test_english_13_gram_is_found_and_12_shared_words_are_not(index: Any,
                                                             tmp_path: Path) -> None:
    en = str(tmp_path / "en.jsonl")
    thirteen = " ".join(EN_WORDS[2:15])
    twelve = " ".join(EN_WORDS[2:14])
    assert _found(index, f"Quiz time! {thirteen.title()}, said the teacher.") == {en: f"{en}:2"}
    assert _found(index, f"Quiz time! {twelve} -- asked the teacher.") == {}
    # a message list (an SFT conversation): every string is checked
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": thirteen}]
    assert _found(index, chat) == {en: f"{en}:2"}


def test_english_passage_inside_a_japanese_document_is_found(index: Any, tmp_path: Path) -> None:
    doc = "英語の問題文を引用します：" + " ".join(EN_WORDS) + "。以上です。"
    assert set(_found(index, doc)) == {str(tmp_path / "en.jsonl")}


def test_template_n_grams_are_not_indexed_and_min_overlap(tmp_path: Path) -> None:
    template = "次の文章を読んで、最も適切な答えを一つ選んでください。"
    rows = [{"q": f"{template}問題番号{i}番：{chr(0x4E00 + 7 * i) * 12}はどれか"}
            for i in range(12)]
    cfg = DecontamConfig(eval_sets=[_write(tmp_path / "t.jsonl", rows)], boilerplate_texts=10)
    idx = build(cfg, "data.decontam")
    assert idx.info["boilerplate_ngrams"] > 0
    assert idx.match(text_hashes("ブログ：" + template + "以上。", cfg)) == {}  # only template
    assert idx.match(text_hashes(rows[3]["q"], cfg)) == {0: 3}
    strict = DecontamConfig(eval_sets=cfg.eval_sets, min_overlap=5)
    idx5 = build(strict, "data.decontam")
    tail = normalize(rows[3]["q"]).replace(" ", "")[-23:]  # 4 windows of 20 characters
    assert idx.match(text_hashes(tail, cfg)) == {0: 3}
    assert idx5.match(text_hashes(tail, strict)) == {}
    five = normalize(rows[3]["q"]).replace(" ", "")[-24:]  # 5 windows
    assert idx5.match(text_hashes(five, strict)) == {0: 3}


def test_a_shared_passage_stays_indexed_and_a_repeated_instruction_does_not(tmp_path: Path
                                                                           ) -> None:
    passage = " ".join(EN_WORDS)  # one reading passage, asked about by 12 questions
    instruction = "Answer the question about the passage below with a single short phrase please"
    rows = [{"instruction": instruction, "context": passage if i < 12 else f"passage {i}",
             "question": f"question {i}?"} for i in range(200)]  # passage: 6% of the rows
    cfg = DecontamConfig(eval_sets=[_write(tmp_path / "rc.jsonl", rows)])
    idx = build(cfg, "data.decontam")
    assert idx.info["template_texts"] == 1 and idx.info["boilerplate_ngrams"] == 0
    assert idx.match(text_hashes("Wiki: " + passage, cfg)) == {0: 0}  # its first row
    assert idx.match(text_hashes(instruction, cfg)) == {}
    assert idx.lookup.hashes.size == len(EN_WORDS) - 12  # each n-gram once (row 0)


def test_index_is_saved_once_and_mapped_back(tmp_path: Path) -> None:
    cfg = DecontamConfig(eval_sets=[_write(tmp_path / "ja.jsonl", [JA_ROW])])
    first = open_index(cfg, tmp_path / "prepared", "data.decontam")
    again = open_index(cfg, tmp_path / "prepared", "data.decontam")
    assert first is not None and again is not None and again.digest == first.digest
    assert isinstance(again.lookup.hashes.base, np.memmap)  # mapped, not read into memory
    for key in ("hashes", "rows", "row_set", "bits"):
        assert np.array_equal(getattr(again.lookup, key), getattr(first.lookup, key))
    grams = len(normalize(JA_Q).replace(" ", "")) - 19
    assert again.info == first.info == {"boilerplate_ngrams": 0, "template_texts": 0, "sets": {
        str(tmp_path / "ja.jsonl"): {"rows": 1, "rows_without_ngrams": 0, "ngrams": grams}}}
    _write(tmp_path / "ja.jsonl", [JA_ROW, JA_ROW])  # new content, new index
    assert open_index(cfg, tmp_path / "prepared", "data.decontam").digest != first.digest
    assert open_index(DecontamConfig(), tmp_path / "prepared", "data.decontam") is None


def test_missing_eval_set_names_the_field_and_the_fix(tmp_path: Path) -> None:
    cfg = DecontamConfig(eval_sets=[str(tmp_path / "nope-*.jsonl")])
    with pytest.raises(DataError, match=r"data\.decontam\.eval_sets: .*nope-\*\.jsonl.*write "
                                        r"the eval data first.*or remove the entry"):
        open_index(cfg, tmp_path, "data.decontam")


def test_lookup_prefilter_keeps_every_indexed_hash_and_nothing_else() -> None:
    rng = np.random.default_rng(1)
    keys = np.sort(rng.integers(0, 2**63, 50_000, dtype=np.uint64) * np.uint64(2))  # even
    n = keys.size
    lookup = Lookup.of(keys, np.arange(n, dtype=np.uint32), np.arange(n, dtype=np.uint32))
    assert lookup.bits.size * 8 >= 16 * n
    assert lookup.match(keys[::97], 1) == {r: r for r in range(0, n, 97)}
    assert lookup.match(np.unique(keys + np.uint64(1)), 1) == {}  # odd: none indexed
