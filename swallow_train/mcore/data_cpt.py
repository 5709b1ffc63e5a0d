"""CPT micro-batches: megatron's blended GPTDataset over the prepared `.bin/.idx` shards.

Sample `i` of the train split is fixed by the blend and the seed, so step `s` reads samples
`[s * G, (s + 1) * G)` and a resumed run reads exactly what an uninterrupted one would. The data
is tokenized on first use (rank 0 runs `prepare_cpt`, as `swallow-train prepare` does, which
skips finished shards) in a single-node job; a multi-node job refuses to start, before the model
is built, unless the data is prepared and current (`swallow_train.data.ready`), and names the
command that does it. The manifest is parsed once per run.
"""

from __future__ import annotations

from typing import Any

from swallow_train.mcore import distributed
from swallow_train.mcore.batches import Batch, collate, rank_sample_ranges
from swallow_train.parallel import Layout

KEYS = ("tokens", "labels", "loss_mask", "position_ids")


class CPTData:
    def __init__(self, recipe: Any) -> None:
        from swallow_train.data.ready import require_prepared

        require_prepared("cpt", recipe)  # multi-node: before any GPU work
        self.recipe = recipe
        self.train: Any = None
        self.valid: Any = None

    def prepare(self, layout: Layout) -> None:
        from swallow_train.data.prepared import cpt_manifest, open_corpus, prepare_cpt
        from swallow_train.data.ready import multi_node, prepare_command
        from swallow_train.mcore.datasets import build_gpt_datasets
        from swallow_train.mcore.indexed import ShardWriter

        d, t = self.recipe.data, self.recipe.train
        manifest = cpt_manifest(d)  # parsed once per run
        prepared_here = distributed.is_rank0() and not multi_node(self.recipe)
        if prepared_here:
            print(prepare_cpt(d, self.recipe.model.tokenizer, manifest, writer=ShardWriter,
                              command=prepare_command("cpt", self.recipe)).summary())
        distributed.barrier()
        corpus = open_corpus(d, manifest)
        train_samples = t.train_steps * t.global_batch_size
        # every evaluation reads the same first `eval_steps` batches (comparable numbers);
        # megatron wants a size for every non-empty split of a weighted blend
        valid_samples = max(t.eval_steps, 1) * t.global_batch_size
        blend = corpus.blend(train_samples * t.seq_length, d.split)
        if prepared_here:
            print(blend.report())
        self.train, self.valid, _ = build_gpt_datasets(
            self.recipe, (train_samples, valid_samples, 0), corpus, blend)

    def total_steps(self) -> int:
        return self.recipe.train.train_steps

    def global_batch_size(self) -> int:
        return self.recipe.train.global_batch_size

    def _microbatches(self, dataset: Any, step: int) -> list[Batch]:
        t = self.recipe.train
        return [collate([dataset[i] for i in indices], KEYS)
                for indices in rank_sample_ranges(step, t.global_batch_size, t.micro_batch_size)]

    def train_microbatches(self, step: int) -> list[Batch]:
        return self._microbatches(self.train, step)

    def eval_microbatches(self, index: int) -> list[Batch]:
        if self.valid is None:
            return []
        return self._microbatches(self.valid, index)

    def summary(self) -> dict[str, Any]:
        return {"train_samples": len(self.train),
                "valid_samples": 0 if self.valid is None else len(self.valid)}
