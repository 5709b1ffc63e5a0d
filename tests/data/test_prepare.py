"""`swallow-train prepare`: exact tokens in megatron .bin/.idx, resumable, and bad input fails
before anything is written."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from swallow_train.data import prepare as cpt_prepare
from swallow_train.data.manifest import load_manifest
from swallow_train.data.shards import read_json
from swallow_train.data.sources import DataError, SourceConfig, iter_records
from swallow_train.mcore.indexed import ShardWriter
from swallow_train.tokenizer import eod_id

from .conftest import TINY_CPT, TOKENIZER

prepare = partial(cpt_prepare.prepare, writer=ShardWriter)


def _read_corpus(out: Path, name: str) -> list[list[int]]:
    from swallow_train.mcore.indexed import read_documents

    docs: list[list[int]] = []
    for k in range(read_json(out / name / "done.json")["shards"]):
        docs += [d.tolist() for d in read_documents(out / name / f"shard-{k:05d}")]
    return docs


def test_exact_tokens_in_every_shard(cpt_prepared: Any, tok: Any) -> None:
    out, stats = cpt_prepared.path, cpt_prepared.stats
    assert stats["eod"] == eod_id(tok) == tok.convert_tokens_to_ids("<|endoftext|>")
    manifest = load_manifest(TINY_CPT)
    synth = out.parent / "synthetic"
    for corpus in manifest.corpora:
        texts = [r["text"] for _, r in iter_records(corpus.source, synthetic_dir=synth)]
        expected = [tok(t, add_special_tokens=False)["input_ids"] + [stats["eod"]] for t in texts]
        assert _read_corpus(out, corpus.name) == expected
        info = stats["corpora"][corpus.name]
        assert info["documents"] == len(texts)
        assert info["tokens"] == sum(map(len, expected))
        assert len(info["shards"]) == -(-len(texts) // 64)  # 64 documents per shard
        assert json.loads((out / "stats.json").read_text()) == stats


def test_rerun_skips_finished_work(cpt_prepared: Any, tmp_path: Path) -> None:
    out = cpt_prepared.path
    before = {p: p.stat().st_mtime_ns for p in out.rglob("shard-*")}
    again = prepare(
        load_manifest(TINY_CPT), out.parent, TOKENIZER, workers=1, docs_per_shard=64, progress=False
    )
    assert again.shards_written == 0 and again.tokens_written == 0
    assert again.stats == cpt_prepared.stats
    assert {p: p.stat().st_mtime_ns for p in out.rglob("shard-*")} == before


def _small_manifest(tmp_path: Path, lines: list[str], **corpus: str) -> Path:
    (tmp_path / "a.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    extra = "".join(f"    {k}: {v}\n" for k, v in corpus.items())
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: small\nstage: cpt\ncorpora:\n  - name: a\n    language: ja\n"
        f"    source: {{path: a.jsonl}}\n    budget: 100\n{extra}"
    )
    return path


GOOD = [
    json.dumps({"text": f"文書その{i}。Document number {i}."}, ensure_ascii=False)
    for i in range(10)
]


def test_a_crash_leaves_no_finished_looking_shard(tmp_path: Path, monkeypatch: Any) -> None:
    from swallow_train.mcore import indexed

    manifest = load_manifest(_small_manifest(tmp_path, GOOD))
    calls = {"n": 0}
    real = indexed.ShardWriter.add_documents

    def crash_in_second_shard(self: Any, tokens: Any, lengths: Any) -> None:
        calls["n"] += 1  # shard 0: 2 batches of 2 documents + its (empty) closing batch
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated crash")
        real(self, tokens, lengths)

    monkeypatch.setattr(indexed.ShardWriter, "add_documents", crash_in_second_shard)
    root = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        prepare(
            manifest, root, TOKENIZER, workers=1, docs_per_shard=4, batch_docs=2, progress=False
        )
    files = sorted(p.name for p in (root / "small" / "a").iterdir())
    # shard 0 is complete; shard 1 crashed in its first batch: no trace of it is left
    assert files == ["shard-00000.bin", "shard-00000.idx", "shard-00000.json"]
    assert not (root / "small" / "stats.json").exists()
    monkeypatch.setattr(indexed.ShardWriter, "add_documents", real)
    resumed = prepare(
        manifest, root, TOKENIZER, workers=1, docs_per_shard=4, batch_docs=2, progress=False
    )
    assert resumed.shards_written == 2 and resumed.shards_skipped == 1
    fresh = prepare(
        manifest,
        tmp_path / "fresh",
        TOKENIZER,
        workers=1,
        docs_per_shard=4,
        batch_docs=2,
        progress=False,
    )
    assert resumed.stats["corpora"] == fresh.stats["corpora"]
    for k in range(3):
        for ext in (".bin", ".idx"):
            a = (root / "small" / "a" / f"shard-{k:05d}{ext}").read_bytes()
            assert a == (tmp_path / "fresh" / "small" / "a" / f"shard-{k:05d}{ext}").read_bytes()


def test_parallel_workers_write_identical_shards(tmp_path: Path) -> None:
    manifest = load_manifest(_small_manifest(tmp_path, GOOD * 30))
    one = prepare(
        manifest,
        tmp_path / "w1",
        TOKENIZER,
        workers=1,
        docs_per_shard=128,
        batch_docs=16,
        progress=False,
    )
    two = prepare(
        manifest,
        tmp_path / "w2",
        TOKENIZER,
        workers=2,
        docs_per_shard=128,
        batch_docs=16,
        progress=False,
        in_process_below=0,  # really start the two worker processes
    )
    assert two.workers == 2
    assert one.stats["corpora"] == two.stats["corpora"]
    for k in range(3):
        name = f"small/a/shard-{k:05d}.bin"
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()


def test_chat_corpus_is_rendered_with_the_template(tmp_path: Path, tok: Any) -> None:
    messages = [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "2", "reasoning_content": "1+1=2"},
    ]
    path = _small_manifest(
        tmp_path, [json.dumps({"messages": messages})], text_field="messages", kind="chat"
    )
    result = prepare(load_manifest(path), tmp_path / "out", TOKENIZER, workers=1, progress=False)
    text = tok.apply_chat_template(messages, tokenize=False)
    assert "<think>\n1+1=2\n</think>" in text
    expected = tok(text, add_special_tokens=False)["input_ids"] + [eod_id(tok)]
    assert _read_corpus(result.path, "a") == [expected]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([GOOD[0], '{"text": "broken', GOOD[1]], r"a.jsonl:2: broken JSON"),
        (
            [GOOD[0], GOOD[1], '{"text": "   "}'],
            r"a.jsonl:3: field 'text' is empty; remove the record "
            r"or set `skip_empty: true`",
        ),
        ([GOOD[0], '{"body": "x"}'], r"a.jsonl:2: no field 'text' \(record has: body\)"),
        ([GOOD[0], '{"text": 5}'], r"a.jsonl:2: field 'text' must be a string"),
        ([], r"has no records"),
    ],
)
def test_bad_records_fail_before_anything_is_written(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    manifest = load_manifest(_small_manifest(tmp_path, lines))
    root = tmp_path / "out"
    with pytest.raises(DataError, match=message):
        prepare(manifest, root, TOKENIZER, workers=1, progress=False)
    assert not (root / "small").exists() or not any((root / "small").rglob("*.*"))


def test_skip_empty_counts_what_it_skips(tmp_path: Path) -> None:
    lines = [GOOD[0], '{"text": ""}', GOOD[1]]
    manifest = load_manifest(_small_manifest(tmp_path, lines, skip_empty="true"))
    stats = prepare(manifest, tmp_path / "out", TOKENIZER, workers=1, progress=False).stats
    assert stats["corpora"]["a"]["documents"] == 2
    assert stats["corpora"]["a"]["skipped_empty"] == 1


def test_missing_file_and_unreachable_hub(tmp_path: Path, hub_offline: None) -> None:
    manifest = load_manifest(_small_manifest(tmp_path, GOOD))
    manifest.corpora[0].source = SourceConfig(path="missing/*.jsonl")
    with pytest.raises(DataError, match=r"missing/\*.jsonl: no such file"):
        prepare(manifest, tmp_path / "out", TOKENIZER, workers=1, progress=False)
    manifest.corpora[0].source = SourceConfig(hf="tokyotech-llm/swallow-corpus-v3.2")
    with pytest.raises(
        DataError,
        match=r"hf:tokyotech-llm/swallow-corpus-v3.2 split=train cannot "
        r"be reached .* point the source at it with `path: DIR`",
    ):
        prepare(manifest, tmp_path / "out", TOKENIZER, workers=1, progress=False)
    assert not (tmp_path / "out" / "small").exists()


def test_output_from_other_inputs_is_not_overwritten(tmp_path: Path) -> None:
    path = _small_manifest(tmp_path, GOOD)
    prepare(load_manifest(path), tmp_path / "out", TOKENIZER, workers=1, progress=False)
    shard = tmp_path / "out" / "small" / "a" / "shard-00000.bin"
    before = shard.read_bytes()
    path.write_text(path.read_text() + "    text_field: body\n")
    with pytest.raises(DataError, match=r"prepared from a different source.*not overwritten"):
        prepare(load_manifest(path), tmp_path / "out", TOKENIZER, workers=1, progress=False)
    assert shard.read_bytes() == before


def test_small_local_input_runs_in_process(tmp_path: Path) -> None:
    from swallow_train.data.workers import effective_workers

    f = tmp_path / "x.jsonl"
    f.write_bytes(b"x" * 1000)
    assert effective_workers(8, [f], below=1001) == 1
    assert effective_workers(8, [f], below=1000) == 8
    assert effective_workers(8, None, below=10**9) == 8  # hub sources: size unknown
    manifest = load_manifest(_small_manifest(tmp_path, GOOD))
    assert prepare(manifest, tmp_path / "o", TOKENIZER, workers=4, progress=False).workers == 1


def test_without_prevalidation_a_bad_line_keeps_finished_shards(tmp_path: Path) -> None:
    lines = [*GOOD[:6], '{"text": "broken', *GOOD[6:]]
    manifest = load_manifest(_small_manifest(tmp_path, lines))
    root = tmp_path / "out"
    with pytest.raises(DataError, match=r"a.jsonl:7: broken JSON"):
        prepare(
            manifest,
            root,
            TOKENIZER,
            workers=1,
            docs_per_shard=4,
            batch_docs=2,
            prevalidate=False,
            progress=False,
        )
    # shard 0 (lines 1-4) was finished before line 7 was read; shard 1 left no trace
    files = sorted(p.name for p in (root / "small" / "a").iterdir())
    assert files == ["shard-00000.bin", "shard-00000.idx", "shard-00000.json"]
    assert not (root / "small" / "stats.json").exists()


def test_array_tasks_write_disjoint_shards_and_the_final_step_equals_one_run(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from swallow_train.data import prepare as prepare_module

    manifest = load_manifest(_small_manifest(tmp_path, GOOD * 3))  # 30 documents, 8 shards
    kw: dict[str, Any] = {"workers": 1, "docs_per_shard": 4, "batch_docs": 2, "progress": False}
    root, written = tmp_path / "tasks", []
    for t in range(3):
        result = prepare(manifest, root, TOKENIZER, num_tasks=3, task_index=t, **kw)
        written.append(result.shards_written)
        assert result.stats == {} and not (root / "small" / "stats.json").exists()
        assert not (root / "small" / "a" / "done.json").exists()
    assert written == [3, 3, 2]  # shards k with k % 3 == t: disjoint, all 8 covered
    assert read_json(root / "small" / "a" / "count.json")["shards"] == 8
    # a task run again does nothing (resumable)
    assert prepare(manifest, root, TOKENIZER, num_tasks=3, task_index=1, **kw).shards_written == 0

    def no_reading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the final step must not read the corpus again")

    monkeypatch.setattr(prepare_module, "iter_records", no_reading)
    final = prepare(manifest, root, TOKENIZER, **kw)
    assert final.shards_written == 0 and final.shards_skipped == 8
    monkeypatch.undo()
    one = prepare(manifest, tmp_path / "one", TOKENIZER, **kw)
    assert final.stats["corpora"] == one.stats["corpora"]
    for k in range(8):
        for ext in (".bin", ".idx"):
            name = f"small/a/shard-{k:05d}{ext}"
            assert (root / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    with pytest.raises(DataError, match=r"data.task_index=3 must be in \[0, data.num_tasks=3\)"):
        prepare(manifest, root, TOKENIZER, num_tasks=3, task_index=3, **kw)


def test_final_step_refuses_a_damaged_shard(tmp_path: Path) -> None:
    manifest = load_manifest(_small_manifest(tmp_path, GOOD))
    kw: dict[str, Any] = {"workers": 1, "docs_per_shard": 4, "progress": False}
    root = tmp_path / "out"
    for t in range(2):
        prepare(manifest, root, TOKENIZER, num_tasks=2, task_index=t, **kw)
    binary = root / "small" / "a" / "shard-00001.bin"
    binary.write_bytes(binary.read_bytes()[:-4])
    with pytest.raises(DataError, match=r"1 shard\(s\) incomplete:\n  .*shard-00001.bin: \d+ "
                                        r"bytes, expected 4 x \d+ tokens\nremove those files"):
        prepare(manifest, root, TOKENIZER, **kw)
    assert not (root / "small" / "stats.json").exists()
