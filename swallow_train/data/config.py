"""Typed data sections of the CPT and SFT recipes (`recipes/data/*.yaml`).
Presets are picked with `data=<preset>`, single fields set with `data.<field>=`:

    swallow-train prepare data.num_workers=8 data.prepared_dir=/groups/x/prepared
    swallow-train prepare-sft model=tiny_dense data.too_long=truncate
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from swallow_train.data.decontam import DecontamConfig


@dataclass(kw_only=True)
class CPTDataConfig:
    manifest: str
    """Path of the corpus manifest, e.g. data_manifests/qwen3_swallow_v02_cpt.yaml."""
    prepared_dir: str = "prepared"
    """Tokenized .bin/.idx and stats go to `{prepared_dir}/{manifest name}/`."""
    split: str = "990,10,0"
    """train/valid/test proportions of every corpus (megatron --split)."""
    num_workers: int = 2
    """Tokenizer worker processes of `swallow-train prepare`."""
    docs_per_shard: int = 1_000_000
    """Documents per .bin/.idx shard: the unit that a re-run skips once it is finished."""
    batch_docs: int = 256
    """Documents sent to a worker at a time."""
    prevalidate: bool = True
    """Read every record of every local corpus once before writing anything, so a broken line or
    an empty text fails before any output exists. Hub corpora are always probed (reachable, first
    record valid) up front and checked record by record while writing."""
    fingerprint_content: bool = False
    """Identify each local input file by a SHA-256 of its bytes instead of its size and
    modification time (reads every input once more; survives copies that reset mtimes)."""
    num_tasks: int = 1
    """Split `prepare` into this many disjoint tasks (the array jobs of `swallow-train launch
    stage=prepare`): task t tokenizes the shards it owns; a run with num_tasks=1 then checks
    every shard and writes stats.json."""
    task_index: int = 0
    """This task's number, 0 <= task_index < num_tasks (the job sets it from the array index)."""
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    """N-gram overlap of every document with eval sets: reported; with `drop`, left out."""


class TooLongRule(Enum):
    drop = "drop"
    """A conversation longer than the pack length is left out (and counted)."""
    truncate = "truncate"
    """Keep its first `seq_length` tokens (loss only on the assistant tokens that remain); if none
    remain it is dropped (and counted)."""


@dataclass(kw_only=True)
class SFTDataConfig:
    manifest: str
    """Path of the SFT manifest, e.g. data_manifests/qwen3_swallow_v02_sft_8b.yaml."""
    prepared_dir: str = "prepared"
    """Packed sequences go to `{prepared_dir}/{manifest name}/seq{L}[-pad{M}]/`."""
    num_workers: int = 2
    """Worker processes for PII filtering and chat rendering."""
    too_long: TooLongRule = TooLongRule.drop
    """What happens to a conversation longer than the pack length (train.seq_length)."""
    seed: int = 1234
    """Seed of the shuffles before and after packing (same seed, same packs, same order)."""
    pad_to_multiple: int = 1
    """Pad each conversation's segment to a multiple of this many tokens (pad tokens, no loss).
    THD packing with context parallelism needs a multiple of 2 x parallel.cp."""
    batch_conversations: int = 128
    """Conversations sent to a worker at a time."""
    fingerprint_content: bool = False
    """Identify each local input file by a SHA-256 of its bytes instead of its size and
    modification time."""
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    """N-gram overlap of every conversation with eval sets: reported; with `drop`, left out."""
