"""Manifests: the shipped ones load and add up; bad ones fail naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from swallow_train.data.manifest import (
    CPTManifest,
    SFTManifest,
    Stage,
    load_manifest,
    parse_budget,
)
from swallow_train.data.sources import DataError, source_files

from .conftest import REPO

MANIFESTS = REPO / "data_manifests"


def test_swallow_cpt_budgets_add_up_to_the_run() -> None:
    m = load_manifest(MANIFESTS / "qwen3_swallow_v02_cpt.yaml", Stage.cpt)
    assert isinstance(m, CPTManifest)
    budgets = m.budget_tokens()
    assert sum(budgets.values()) == 25_000 * 256 * 32_768 == 209_715_200_000
    names = set(budgets)
    for expected in (
        "ja_wikipedia",
        "swallow_corpus_v3_2",
        "swallow_corpus_v3_2_qa",
        "laboro_paracorpus",
        "kaken_paracorpus",
        "en_wikipedia",
        "cosmopedia",
        "nemotron_cc_high_quality",
        "swallow_math_v2",
        "swallow_code_v2",
        "gpt_oss_lmsys_chat_synth_ja",
        "gpt_oss_lmsys_chat_synth_en",
        "swallow_nemotron_post_training_v1",
    ):
        assert expected in names
    assert budgets["swallow_nemotron_post_training_v1"] == 27_715_200_000  # the "rest"
    assert all(c.source.hf for c in m.corpora)


def test_one_edit_changes_the_mixture(tmp_path: Path) -> None:
    text = (MANIFESTS / "qwen3_swallow_v02_cpt.yaml").read_text()
    edited = tmp_path / "m.yaml"
    edited.write_text(text.replace("budget: 80.0B", "budget: 70.0B", 1))
    budgets = load_manifest(edited).budget_tokens()
    assert budgets["swallow_corpus_v3_2"] == 70_000_000_000
    assert budgets["swallow_nemotron_post_training_v1"] == 37_715_200_000
    assert sum(budgets.values()) == 209_715_200_000


def test_sft_manifests() -> None:
    for name, total in (
        ("qwen3_swallow_v02_sft_8b", 2_100_000),
        ("qwen3_swallow_v02_sft_30b_32b", 1_100_000),
    ):
        m = load_manifest(MANIFESTS / f"{name}.yaml", Stage.sft)
        assert isinstance(m, SFTManifest)
        caps = {s.name: s.max_conversations for s in m.sources}
        assert sum(caps.values()) == m.target_conversations == total
        assert caps["gpt_oss_lmsys_chat_synth_ja"] == caps["gpt_oss_lmsys_chat_synth_en"] == 300_000
        assert all(s.pii_filter for s in m.sources if "lmsys" in s.name)
    tiny = load_manifest(MANIFESTS / "tiny_sft.yaml")
    assert isinstance(tiny, SFTManifest) and tiny.sources[0].source.synthetic == "tiny_sft_chat"


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        (123, 123),
        ("4.2B", 4_200_000_000),
        ("1.5K", 1_500),
        ("20M", 20_000_000),
        ("2T", 2 * 10**12),
        ("rest", None),
    ],
)
def test_parse_budget(value: int | str, tokens: int | None) -> None:
    assert parse_budget(value) == tokens


@pytest.mark.parametrize("value", [0, -5, "1.2345K", "lots", "4.2 GB"])
def test_bad_budget(value: int | str) -> None:
    with pytest.raises(ValueError):
        parse_budget(value)


CPT_OK = """\
name: t
stage: cpt
total_tokens: 1000
corpora:
  - name: a
    language: ja
    source: {path: data/a.jsonl}
    budget: 400
  - name: b
    language: en
    source: {synthetic: tiny_en_text}
    budget: rest
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_relative_paths_resolve_against_the_manifest_directory(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text('{"text": "x"}\n')
    m = load_manifest(_write(tmp_path, CPT_OK))
    assert m.budget_tokens() == {"a": 400, "b": 600}
    assert source_files(m.corpora[0].source, m.base) == [tmp_path / "data" / "a.jsonl"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("    budget: 400\n", "    budget: 400\n    colour: red\n"),
            r"m.yaml:9: corpora\[0\].colour: unknown field of Corpus",
        ),
        (
            ("    budget: 400\n", "    budget: [400]\n"),
            r"m.yaml:8: corpora\[0\].budget: expected int or str",
        ),
        (
            ("language: ja", "language: fr"),
            r"m.yaml:6: corpora\[0\].language: must be one of ja, en",
        ),
        (("total_tokens: 1000", "total_tokens: lots"), r"m.yaml:3: total_tokens: expected int"),
        (("    budget: rest\n", ""), r"m.yaml:9: corpora\[1\]: missing required field 'budget'"),
        (
            ("budget: rest", "budget: 500"),
            r"budgets add up to 900 tokens but total_tokens is 1,000",
        ),
        (("budget: 400", "budget: rest"), r"at most one corpus may use it"),
        (("name: b", "name: a"), r"name 'a' is used twice"),
        (("source: {path: data/a.jsonl}", "source: {path: a, hf: b}"), r"set exactly one of"),
        (("budget: 400", "budget: 4.5K"), r"needs total_tokens larger than the other budgets"),
        (("stage: cpt", "stage: rl"), r"stage: must be 'cpt' or 'sft'"),
        (("name: t\n", "name: t\nname: u\n"), r"m.yaml:2: name: appears twice"),
    ],
)
def test_bad_manifest_names_file_line_and_field(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    text = CPT_OK.replace(*edit, 1)
    assert text != CPT_OK
    with pytest.raises(DataError, match=message):
        load_manifest(_write(tmp_path, text))


def test_stage_mismatch_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="a sft manifest is needed"):
        load_manifest(_write(tmp_path, CPT_OK), Stage.sft)
    with pytest.raises(DataError, match="manifest not found"):
        load_manifest(tmp_path / "nope.yaml")


def test_sft_caps_must_match_target(tmp_path: Path) -> None:
    text = """\
name: s
stage: sft
target_conversations: 10
sources:
  - {name: a, language: ja, source: {synthetic: tiny_sft_chat}, max_conversations: 4}
  - {name: b, language: en, source: {synthetic: tiny_sft_chat}, max_conversations: 5}
"""
    with pytest.raises(DataError, match="add up to 9 but target_conversations is 10"):
        load_manifest(_write(tmp_path, text))
