"""Packed SFT sequences on disk, and the dataset that serves them (numpy only, memory-mapped).

A directory written by `swallow-train prepare-sft` holds, for P packs of length L:
`tokens.npy` int32 [P, L] (pad id after the last sample), `assistant.npy` uint8 [P, L] (1 on
tokens the assistant produced), `seq_lens.npy` int32 (segment lengths of all packs, one after
another; trailing padding is a segment of its own), `pack_offsets.npy` int64 [P + 1] (where each
pack's segments start in seq_lens), `conversations.npy` int32 [P] (real samples per pack) and
`stats.json`.

Item i is a dict of numpy arrays, all of length L except seq_lens. For a sample occupying
positions [s, s + n): tokens = its ids; labels[t] = ids[t + 1] and loss_mask[t] =
assistant[t + 1] for t < s + n - 1; at its last position labels = pad and loss_mask = 0;
position_ids = 0..n-1. Padding has tokens = labels = pad, loss 0 and positions 0.. as well.

    from swallow_train.data.packed import PackedSFTDataset
    ds = PackedSFTDataset("prepared/tiny_sft/seq256")
    ds[0]["tokens"], ds[0]["loss_mask"], ds[0]["seq_lens"], ds.stats["efficiency"]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from swallow_train.data.sources import DataError

FILES = ("tokens.npy", "assistant.npy", "seq_lens.npy", "pack_offsets.npy", "conversations.npy")


class PackedSFTDataset:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        missing = [f for f in (*FILES, "stats.json") if not (self.path / f).is_file()]
        if missing:
            raise DataError(
                f"{self.path}: not a packed SFT directory (missing {', '.join(missing)})"
                "; run `swallow-train prepare-sft` with this recipe first"
            )
        self.stats: dict[str, Any] = json.loads((self.path / "stats.json").read_text("utf-8"))
        self.tokens = np.load(self.path / "tokens.npy", mmap_mode="r")
        self.assistant = np.load(self.path / "assistant.npy", mmap_mode="r")
        self.seq_lens = np.load(self.path / "seq_lens.npy", mmap_mode="r")
        self.offsets = np.load(self.path / "pack_offsets.npy")
        self.conversations = np.load(self.path / "conversations.npy")
        self.pad_id = int(self.stats["pad_id"])
        self.seq_length = int(self.tokens.shape[1])

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def segments(self, i: int) -> np.ndarray:
        return np.asarray(self.seq_lens[self.offsets[i] : self.offsets[i + 1]], dtype=np.int32)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(f"pack {i} out of range [0, {len(self)})")
        ids = np.asarray(self.tokens[i], dtype=np.int64)
        asst = np.asarray(self.assistant[i], dtype=np.float32)
        seq_lens = self.segments(i)
        ends = np.cumsum(seq_lens) - 1  # last position of every segment
        starts = ends - seq_lens + 1
        labels = np.empty_like(ids)
        labels[:-1] = ids[1:]
        labels[ends] = self.pad_id
        loss_mask = np.empty_like(asst)
        loss_mask[:-1] = asst[1:]
        loss_mask[ends] = 0.0
        position_ids = np.arange(self.seq_length, dtype=np.int64) - np.repeat(starts, seq_lens)
        return {
            "tokens": ids,
            "labels": labels,
            "loss_mask": loss_mask,
            "position_ids": position_ids,
            "seq_lens": seq_lens,
        }


def padded_length(length, multiple: int):
    """`length` (an int or an integer array) rounded up to a multiple of `multiple`."""
    return -(-length // multiple) * multiple


def write_packs(
    out: Path,
    packs: list[np.ndarray],
    lengths: np.ndarray,
    staged_tokens: np.ndarray,
    staged_assistant: np.ndarray,
    seq_length: int,
    pad_id: int,
    pad_multiple: int = 1,
) -> dict[str, int]:
    """Write the pack files (not stats.json) into `out` from samples staged back to back
    (sample s at staged[offset[s] : offset[s] + lengths[s]]); each sample's segment is padded
    to a multiple of `pad_multiple` (pad tokens, no loss). Returns token counts."""
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n = len(packs)
    tokens = np.lib.format.open_memmap(out / "tokens.npy", "w+", np.int32, (n, seq_length))
    assistant = np.lib.format.open_memmap(out / "assistant.npy", "w+", np.uint8, (n, seq_length))
    seq_lens: list[int] = []
    pack_offsets = np.zeros(n + 1, dtype=np.int64)
    conversations = np.zeros(n, dtype=np.int32)
    real = loss = 0
    for p, pack in enumerate(packs):
        pos = 0
        for s in pack.tolist():
            a, k = int(offsets[s]), int(lengths[s])
            segment = padded_length(k, pad_multiple)
            tokens[p, pos : pos + k] = staged_tokens[a : a + k]
            assistant[p, pos : pos + k] = staged_assistant[a : a + k]
            tokens[p, pos + k : pos + segment] = pad_id
            assistant[p, pos + k : pos + segment] = 0
            loss += int(staged_assistant[a + 1 : a + k].sum())
            seq_lens.append(segment)
            pos += segment
            real += k
        if pos < seq_length:
            tokens[p, pos:] = pad_id
            assistant[p, pos:] = 0
            seq_lens.append(seq_length - pos)
        pack_offsets[p + 1] = len(seq_lens)
        conversations[p] = len(pack)
    tokens.flush()
    assistant.flush()
    del tokens, assistant
    np.save(out / "seq_lens.npy", np.asarray(seq_lens, dtype=np.int32))
    np.save(out / "pack_offsets.npy", pack_offsets)
    np.save(out / "conversations.npy", conversations)
    return {"tokens": real, "loss_tokens": loss, "capacity": n * seq_length}
