"""CPT micro-batches: megatron's blended GPTDataset over the prepared `.bin/.idx` shards.

    data = CPTData(data=recipe.data, train=recipe.train, model=recipe.model,
                   cluster=recipe.cluster)           # stages/cpt.py; the trainer then calls
    data.prepare(layout); data.train_microbatches(step)

Sample `i` of the train split is fixed by the blend and the seed, so step `s` reads samples
`[s * G, (s + 1) * G)` and a resumed run reads exactly what an uninterrupted one would. The data
is tokenized on first use (rank 0 runs `prepare_cpt`, as `swallow-train prepare` does, which
skips finished shards) in a single-node job; a multi-node job refuses to start, before the model
is built, unless the data is prepared and current (`swallow_train.data.ready`), and names the
command that does it. The manifest is parsed once per run, when the source is built.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from swallow_train.cluster import ClusterConfig
from swallow_train.data.config import CPTDataConfig
from swallow_train.data.manifest import CPTManifest
from swallow_train.data.prepared import cpt_manifest
from swallow_train.data.ready import StageData, multi_node, require_prepared
from swallow_train.mcore import distributed
from swallow_train.mcore.batches import Batch, collate, rank_sample_ranges
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import Layout
from swallow_train.training import TrainConfig

KEYS = ("tokens", "labels", "loss_mask", "position_ids")


class CPTData:
    """The BatchSource of a CPT stage, built from its own sections only (a typed `build`: the
    data layer, where `CPTDataConfig` lives, may not import this engine)."""

    def __init__(self, *, data: CPTDataConfig, train: TrainConfig, model: ModelConfig,
                 cluster: ClusterConfig) -> None:
        self.data, self.train, self.model = data, train, model
        self.spec = StageData(data=data, tokenizer=model.tokenizer,
                              seq_length=train.seq_length, cluster=cluster)
        if multi_node(cluster):  # refuse missing or stale data before any GPU work
            require_prepared(self.spec, self.manifest)
        self.train_set: Any = None
        self.valid_set: Any = None

    @cached_property
    def manifest(self) -> CPTManifest:
        """`data.manifest`, parsed on first use and only then (once per run)."""
        return cpt_manifest(self.data)

    def prepare(self, layout: Layout) -> None:
        from swallow_train.data.prepared import open_corpus, prepare_cpt
        from swallow_train.data.ready import prepare_command
        from swallow_train.mcore.datasets import build_gpt_datasets
        from swallow_train.mcore.indexed import ShardWriter

        d, t = self.data, self.train
        prepared_here = distributed.is_rank0() and not multi_node(self.spec.cluster)
        if prepared_here:
            print(prepare_cpt(d, self.model.tokenizer, self.manifest, writer=ShardWriter,
                              command=prepare_command(self.spec)).summary())
        distributed.barrier()
        corpus = open_corpus(d, self.manifest)
        train_samples = t.train_steps * t.global_batch_size
        # every evaluation reads the same first `eval_steps` batches (comparable numbers);
        # megatron wants a size for every non-empty split of a weighted blend
        valid_samples = max(t.eval_steps, 1) * t.global_batch_size
        blend = corpus.blend(train_samples * t.seq_length, d.split)
        if prepared_here:
            print(blend.report())
        self.train_set, self.valid_set, _ = build_gpt_datasets(
            corpus, (train_samples, valid_samples, 0), data=d, train=t, model=self.model,
            blend=blend)

    def total_steps(self) -> int:
        return self.train.train_steps

    def global_batch_size(self) -> int:
        return self.train.global_batch_size

    def _microbatches(self, dataset: Any, step: int) -> list[Batch]:
        t = self.train
        return [collate([dataset[i] for i in indices], KEYS)
                for indices in rank_sample_ranges(step, t.global_batch_size, t.micro_batch_size)]

    def train_microbatches(self, step: int) -> list[Batch]:
        return self._microbatches(self.train_set, step)

    def eval_microbatches(self, index: int) -> list[Batch]:
        if self.valid_set is None:
            return []
        return self._microbatches(self.valid_set, index)

    def summary(self) -> dict[str, Any]:
        return {"train_samples": len(self.train_set),
                "valid_samples": 0 if self.valid_set is None else len(self.valid_set)}
