"""`swallow-train prepare-sft`: every conversation accounted for, exact loss tokens in the packs,
positions restarting per sample, deterministic, and bad input handled as stated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swallow_train.data.chat import render_text
from swallow_train.data.config import SFTDataConfig, TooLongRule
from swallow_train.data.manifest import load_manifest
from swallow_train.data.packed import PackedSFTDataset
from swallow_train.data.sft_prepare import prepare_sft
from swallow_train.data.sources import DataError
from swallow_train.data.synthetic_chat import tiny_sft_chat
from swallow_train.data.synthetic_sets import GENERATORS

from .conftest import TINY_SFT, TOKENIZER


def _expected_loss_text(messages: list[dict[str, Any]]) -> str:
    """What the assistant says, built by hand from the record: the last turn with its reasoning
    in <think>, earlier turns as bare answers (the Qwen3 template drops their reasoning)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    out = ""
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            if i == last:
                out += f"<think>\n{(m.get('reasoning_content') or '').strip()}\n</think>\n\n"
            out += m["content"] + "<|im_end|>"
    return out


def test_accounting_matches_the_planted_data(sft_prepared: tuple[dict[str, Any], Path]) -> None:
    stats, _ = sft_prepared
    t, chat = stats["total"], stats["sources"]["tiny_chat"]
    fmt = stats["sources"]["tiny_math_format"]
    assert (chat["read"], fmt["read"], t["read"]) == (320, 156, 476)
    assert t["read"] == t["kept"] + sum(t["dropped"].values())  # nothing lost silently
    # the RL train-split problems: all kept, each `<think>\n\n</think>\n\n\boxed{d}<|im_end|>`
    # (10 tokens), 101 of them hedged: `d or e` (+3 tokens, 51 English), `d または e` (+4, 50)
    assert fmt["kept"] == 156 and fmt["loss_tokens"] == 55 * 10 + 51 * 13 + 50 * 14
    t = chat
    assert t["dropped"]["pii"] == 10
    assert t["pii_categories"] == {
        "address": 2,
        "credit_card": 2,
        "email": 2,
        "my_number": 2,
        "phone": 2,
    }
    assert t["dropped"]["too_long"] == 4 and t["truncated"] == 0
    assert t["kept"] == 306 and stats["conversations"] == 306 + 156
    assert stats["mean_conversations_per_pack"] == pytest.approx(462 / stats["packs"])


def test_packs_carry_exactly_the_assistant_tokens(
    sft_prepared: tuple[dict[str, Any], Path], tok: Any
) -> None:
    stats, out = sft_prepared
    ds = PackedSFTDataset(out)
    chats = [*tiny_sft_chat(), *GENERATORS["tiny_math_chat"]()]
    by_text = {render_text(tok, c["messages"]): c["messages"] for c in chats}
    pad, seen, loss_tokens, real = ds.pad_id, 0, 0, 0
    assert len(ds) == stats["packs"]
    for i in range(len(ds)):
        item = ds[i]
        assert {k: v.shape for k, v in item.items() if k != "seq_lens"} == {
            k: (256,) for k in ("tokens", "labels", "loss_mask", "position_ids")
        }
        assert int(item["seq_lens"].sum()) == 256
        assert (
            item["tokens"].dtype,
            item["labels"].dtype,
            item["loss_mask"].dtype,
            item["position_ids"].dtype,
            item["seq_lens"].dtype,
        ) == (np.int64, np.int64, np.float32, np.int64, np.int32)
        start, in_pack = 0, 0
        for n in item["seq_lens"].tolist():
            seg = slice(start, start + n)
            ids, labels = item["tokens"][seg], item["labels"][seg]
            assert item["position_ids"][seg].tolist() == list(range(n))
            assert labels[-1] == pad and item["loss_mask"][seg][-1] == 0
            assert labels[:-1].tolist() == ids[1:].tolist()
            text = tok.decode(ids.tolist())
            if text in by_text:  # a conversation (else: the trailing padding)
                carried = labels[item["loss_mask"][seg] == 1].tolist()
                assert tok.decode(carried) == _expected_loss_text(by_text[text])
                assert len(ids) == len(tok(text, add_special_tokens=False)["input_ids"])
                seen, loss_tokens, real = seen + 1, loss_tokens + len(carried), real + n
                in_pack += 1
            else:
                assert set(ids.tolist()) == {pad} and item["loss_mask"][seg].sum() == 0
            start += n
        assert ds.conversations[i] == in_pack
    assert seen == stats["conversations"]
    assert loss_tokens == stats["loss_tokens"] == stats["total"]["loss_tokens"]
    assert real == stats["tokens"] == stats["total"]["tokens"]
    assert stats["efficiency"] == pytest.approx(real / (256 * len(ds)))


def _data(root: Path, **fields: Any) -> SFTDataConfig:
    """The data section `prepare-sft` passes, writing under `root` (the manifest is given
    parsed, so its path here is only what the section names)."""
    return SFTDataConfig(manifest=str(TINY_SFT), prepared_dir=str(root), **fields)


def test_rerun_is_a_no_op_and_other_inputs_are_not_overwritten(
    sft_prepared: tuple[dict[str, Any], Path],
) -> None:
    stats, out = sft_prepared
    root = out.parent.parent
    before = (out / "tokens.npy").stat().st_mtime_ns
    again, path, existed = prepare_sft(
        load_manifest(TINY_SFT), _data(root, num_workers=1), TOKENIZER, 256, progress=False
    )
    assert existed and path == out and again == stats
    with pytest.raises(DataError, match=r"prepared from other inputs.*not overwritten"):
        prepare_sft(load_manifest(TINY_SFT), _data(root, seed=99), TOKENIZER, 256,
                    progress=False)
    assert (out / "tokens.npy").stat().st_mtime_ns == before


def test_same_seed_same_packs_with_two_workers(
    sft_prepared: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    _, out = sft_prepared
    _, other, _ = prepare_sft(
        load_manifest(TINY_SFT),
        _data(tmp_path, num_workers=2),
        TOKENIZER,
        256,
        progress=False,
        in_process_below=0,  # really start the two worker processes
    )
    for name in ("tokens.npy", "assistant.npy", "seq_lens.npy", "pack_offsets.npy"):
        assert np.array_equal(np.load(out / name), np.load(other / name))


def test_truncate_rule_keeps_the_long_ones(tmp_path: Path) -> None:
    stats, out, _ = prepare_sft(
        load_manifest(TINY_SFT),
        _data(tmp_path, too_long=TooLongRule.truncate, num_workers=1),
        TOKENIZER,
        256,
        progress=False,
    )
    t = stats["total"]
    assert t["truncated"] == 4 and t["dropped"]["too_long"] == 0 and t["kept"] == 310 + 156
    assert max(int(s) for s in np.load(out / "seq_lens.npy")) <= 256


def _manifest(tmp_path: Path, records: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: bad\nstage: sft\nsources:\n  - name: c\n    language: en\n"
        "    source: {path: c.jsonl}\n"
    )
    return path


OK = {
    "messages": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "2+2=4"},
    ]
}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"messages": [}', r"c.jsonl:2: broken JSON"),
        ({"messages": [{"role": "user"}]}, r"c.jsonl:2: messages\[0\]: content must be a string"),
        ({"conversation": []}, r"c.jsonl:2: no field 'messages'"),
    ],
)
def test_malformed_record_fails_naming_file_and_line(
    tmp_path: Path, bad: Any, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        prepare_sft(
            load_manifest(_manifest(tmp_path, [OK, bad, OK])),
            _data(tmp_path / "out", num_workers=1),
            TOKENIZER,
            64,
            progress=False,
        )
    assert not (tmp_path / "out" / "bad").exists() or not any((tmp_path / "out" / "bad").iterdir())


def test_no_assistant_and_trailing_turns(tmp_path: Path) -> None:
    no_answer = {"messages": [{"role": "user", "content": "anyone?"}]}
    trailing = {"messages": [*OK["messages"], {"role": "user", "content": "thanks"}]}
    stats, out, _ = prepare_sft(
        load_manifest(_manifest(tmp_path, [OK, no_answer, trailing])),
        _data(tmp_path / "out", num_workers=1),
        TOKENIZER,
        64,
        progress=False,
    )
    c = stats["sources"]["c"]
    assert (c["read"], c["kept"], c["dropped"]["no_assistant"]) == (3, 2, 1)
    assert c["trimmed_trailing_turns"] == 1
    assert c["examples"]["no_assistant"] == [f"{tmp_path / 'c.jsonl'}:2"]
    assert PackedSFTDataset(out).stats["conversations"] == 2


def test_padding_to_a_multiple_keeps_every_sample_and_its_loss(tmp_path) -> None:
    """THD with context parallelism: each sample's segment spans a multiple of 2 x CP tokens,
    filled with pad tokens that carry no loss; what is trained on does not change."""
    from swallow_train.data.packed import PackedSFTDataset

    manifest = load_manifest(TINY_SFT)
    plain, plain_dir, _ = prepare_sft(manifest, _data(tmp_path / "a"), TOKENIZER, 256,
                                      progress=False)
    padded, padded_dir, _ = prepare_sft(manifest, _data(tmp_path / "b", pad_to_multiple=4),
                                        TOKENIZER, 256, progress=False)
    assert padded_dir.name == "seq256-pad4" and plain_dir.name == "seq256"
    assert padded["tokens"] == plain["tokens"] and padded["loss_tokens"] == plain["loss_tokens"]
    assert padded["conversations"] == plain["conversations"]
    ds = PackedSFTDataset(padded_dir)
    for i in range(len(ds)):
        item = ds[i]
        samples = int(ds.conversations[i])
        assert all(n % 4 == 0 for n in item["seq_lens"][:samples])
        assert item["seq_lens"].sum() == 256
        # the pad tail of every segment carries no loss
        ends = np.cumsum(item["seq_lens"][:samples])
        for end in ends:
            assert item["loss_mask"][end - 1] == 0.0
    with pytest.raises(DataError, match=r"data\.pad_to_multiple=3 must be >= 1 and divide"):
        prepare_sft(manifest, _data(tmp_path / "c", pad_to_multiple=3), TOKENIZER, 256,
                    progress=False)
