"""Packed SFT sequences as training micro-batches, without attention across samples.

With Transformer Engine (GPU): micro-batch 1 in THD format, `PackedSeqParams` with the samples'
cu_seqlens (TE restarts RoPE and the causal mask per sample; with CP each rank takes its
`thd_get_partitioned_indices` share). On CPU (local spec): a block-diagonal causal mask; RoPE
scores depend only on the relative position inside a sample, so each sample is computed as if
alone (tests/mcore/test_sft_packing.py checks the loss equality).

The recipe's `train.global_batch_size` counts conversations (64 in the Swallow runs); the packs
per step are derived from the packing statistics: round(conversations / mean conversations per
pack), rounded up to a multiple of micro-batch x DP.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import numpy as np
import torch
from megatron.core import parallel_state
from megatron.core.packed_seq_params import PackedSeqParams

from swallow_train.cluster import ClusterConfig
from swallow_train.data.config import SFTDataConfig
from swallow_train.data.manifest import SFTManifest
from swallow_train.data.prepared import sft_manifest
from swallow_train.data.ready import StageData, multi_node, require_prepared
from swallow_train.mcore import distributed
from swallow_train.mcore.batches import Batch, collate, rank_sample_ranges
from swallow_train.mcore.model import use_transformer_engine
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import Layout, LayoutError
from swallow_train.training import TrainConfig

KEYS = ("tokens", "labels", "loss_mask", "position_ids")


def block_causal_mask(seq_lens: list[np.ndarray], length: int) -> torch.Tensor:
    """[B, 1, L, L] bool, True = masked: causal inside each segment, nothing across segments."""
    masks = []
    causal = np.tril(np.ones((length, length), dtype=bool))
    for lens in seq_lens:
        segment = np.repeat(np.arange(len(lens)), lens)
        if len(segment) != length:
            raise ValueError(f"segment lengths sum to {len(segment)}, expected {length}")
        masks.append(~(causal & (segment[:, None] == segment[None, :])))
    return torch.from_numpy(np.stack(masks))[:, None]


def thd_params(lens: np.ndarray, device: torch.device) -> tuple[PackedSeqParams, torch.Tensor]:
    cu = torch.tensor(np.concatenate([[0], np.cumsum(lens)]), dtype=torch.int32, device=device)
    max_len = int(lens.max())
    params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                             cu_seqlens_q_padded=cu, cu_seqlens_kv_padded=cu,
                             max_seqlen_q=max_len, max_seqlen_kv=max_len)
    return params, cu


class SFTData:
    """BatchSource over `swallow-train prepare-sft` output (prepared on first use), built from
    the SFT stage's own sections: `SFTData(data=, train=, model=, cluster=)`."""

    def __init__(self, *, data: SFTDataConfig, train: TrainConfig, model: ModelConfig,
                 cluster: ClusterConfig) -> None:
        self.data, self.train, self.model = data, train, model
        self.spec = StageData(data=data, tokenizer=model.tokenizer,
                              seq_length=train.seq_length, cluster=cluster)
        if multi_node(cluster):  # refuse missing or stale data before any GPU work
            require_prepared(self.spec, self.manifest)
        self.dataset: Any = None
        self.sequences_per_step = 0
        self.steps = 0
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, its pack order)

    @cached_property
    def manifest(self) -> SFTManifest:
        """`data.manifest`, parsed on first use and only then (once per run)."""
        return sft_manifest(self.data)

    def _open(self) -> Any:
        from swallow_train.data.packed import PackedSFTDataset
        from swallow_train.data.prepared import packs_path, prepare_packs
        from swallow_train.data.ready import prepare_command
        from swallow_train.data.sft_stats import report

        seq_length = self.train.seq_length
        if distributed.is_rank0() and not multi_node(self.spec.cluster):
            # returns at once when already prepared
            packs = prepare_packs(self.data, self.model.tokenizer, seq_length, self.manifest,
                                  command=prepare_command(self.spec))
            print(f"{packs.path}: {'already prepared' if packs.existed else 'prepared'}")
            print(report(packs.stats))
        distributed.barrier()
        return PackedSFTDataset(packs_path(self.data, seq_length, self.manifest))

    def prepare(self, layout: Layout) -> None:
        train = self.train
        self.thd = use_transformer_engine()
        if self.thd and train.micro_batch_size != 1:
            raise LayoutError(
                f"train.micro_batch_size={train.micro_batch_size}: packed SFT on GPU uses the "
                "THD format, which takes one packed sequence per micro-batch; set it to 1"
            )
        multiple = self.data.pad_to_multiple
        if self.thd and layout.cp > 1 and multiple % (2 * layout.cp):
            raise LayoutError(
                f"data.pad_to_multiple={multiple}: with parallel.cp={layout.cp} every packed "
                f"sample must span a multiple of 2 x CP = {2 * layout.cp} tokens; set it to "
                f"{2 * layout.cp}"
            )
        self.dataset = self._open()
        stats = self.dataset.stats
        per_pack = max(stats["mean_conversations_per_pack"], 1e-9)
        unit = train.micro_batch_size * layout.dp
        wanted = max(1, round(train.global_batch_size / per_pack))
        self.sequences_per_step = math.ceil(wanted / unit) * unit
        num_packs = len(self.dataset)
        if num_packs < self.sequences_per_step:
            raise LayoutError(
                f"only {num_packs} packed sequences, fewer than one step needs "
                f"({self.sequences_per_step}); lower train.global_batch_size or add data"
            )
        epoch_steps = num_packs // self.sequences_per_step
        self.steps = train.train_steps or epoch_steps
        self.num_packs = num_packs
        self.rng_seed = train.seed

    def _pack_index(self, sample: int) -> int:
        """Sample i of the stream: packs in a seeded order, reshuffled each epoch."""
        epoch, position = divmod(sample, self.num_packs)
        cached = self._order  # one tuple, replaced whole: the prefetch thread reads it too
        if cached is None or cached[0] != epoch:
            cached = (epoch, np.random.default_rng([self.rng_seed, epoch]).permutation(
                self.num_packs))
            self._order = cached
        return int(cached[1][position])

    def step_sample_lengths(self, step: int) -> list[int]:
        """The real (non-padding) token count of every sample packed into step `step`, over
        all DP ranks (a pure function of the step: no communication), for the MFU."""
        from swallow_train.metrics.throughput import real_lengths

        ds, first = self.dataset, step * self.sequences_per_step
        lengths: list[int] = []
        for sample in range(first, first + self.sequences_per_step):
            pack = self._pack_index(sample)
            lengths += real_lengths(ds.tokens[pack], ds.segments(pack), ds.pad_id)
        return lengths

    def total_steps(self) -> int:
        return self.steps

    def global_batch_size(self) -> int:
        return self.sequences_per_step

    def _batch(self, indices: range) -> Batch:
        samples = [self.dataset[self._pack_index(i)] for i in indices]
        batch = collate(samples, KEYS)
        batch["loss_mask"] = batch["loss_mask"].float()
        if not self.thd:
            length = batch["tokens"].shape[1]
            batch["attention_mask"] = block_causal_mask([s["seq_lens"] for s in samples], length)
            return batch
        params, cu = thd_params(samples[0]["seq_lens"], batch["tokens"].device)
        if parallel_state.get_context_parallel_world_size() > 1:
            from megatron.core.utils import get_thd_batch_on_this_cp_rank

            max_len = torch.tensor([params.max_seqlen_q], device=cu.device)
            batch, params = get_thd_batch_on_this_cp_rank(batch, cu, cu, max_len)
        batch["packed_seq_params"] = params
        return batch

    def train_microbatches(self, step: int) -> list[Batch]:
        ranges = rank_sample_ranges(step, self.sequences_per_step, self.train.micro_batch_size)
        return [self._batch(r) for r in ranges]

    def eval_microbatches(self, index: int) -> list[Batch]:
        return []

    def summary(self) -> dict[str, Any]:
        stats = self.dataset.stats
        return {
            "packs": self.num_packs,
            "packs_per_step": self.sequences_per_step,
            "conversations_per_pack": round(stats["mean_conversations_per_pack"], 2),
            "packing_efficiency": round(stats["efficiency"], 4),
        }
