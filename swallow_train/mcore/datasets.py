"""megatron-core GPT datasets over the prepared `.bin/.idx` shards, blended by the manifest.

    from swallow_train.mcore.datasets import build_gpt_datasets
    corpus = open_corpus(recipe.data, cpt_manifest(recipe.data))     # swallow_train.data.prepared
    train, valid, test = build_gpt_datasets(
        corpus, (steps * global_batch, eval_samples, 0),
        data=recipe.data, train=recipe.train, model=recipe.model)
    sample = train[consumed]  # tokens / labels / loss_mask / position_ids; same seed, same order

`BlendedMegatronDatasetBuilder(GPTDataset, ...)` builds one GPTDataset per shard (split by
documents with `data.split`, shuffled and repeated for as many epochs as the weights ask) and a
BlendedDataset drawing from them in proportion to the weights. Its index caches go to
`{prepared}/cache/`; they depend only on the blend, seed, sequence length and sample counts, so a
second build (or every other rank) loads them. Positions and attention are not reset at document
boundaries and the EOD token is trained on (as in the Swallow runs); no attention mask is
materialised (the model builds the causal mask).

Qwen3's pad token is its EOD token; megatron would mask every EOD from the loss if it were given
as the pad id, so the dataset's pad id is -1, which never occurs in the data.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swallow_train.data.blend import Blend
    from swallow_train.data.config import CPTDataConfig
    from swallow_train.data.prepared import PreparedCorpus
    from swallow_train.models.config import ModelConfig
    from swallow_train.training import TrainConfig

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

from swallow_train.mcore.distributed import init_process_group

NO_PAD = -1


@dataclass
class DatasetTokenizer:
    """What megatron's GPT dataset needs of a tokenizer (no text tokenization happens here)."""

    eod: int
    vocab_size: int
    pad: int = NO_PAD
    unique_identifiers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.unique_identifiers = {
            "class": "swallow_train.DatasetTokenizer",
            "eod": self.eod,
            "pad": self.pad,
            "vocab_size": self.vocab_size,
        }


def build_blended_datasets(
    prefixes: Sequence[str],
    weights: Sequence[float] | None,
    num_samples: Sequence[int | None],
    *,
    seq_length: int,
    seed: int,
    split: str,
    eod: int,
    vocab_size: int,
    cache_dir: Path,
) -> tuple[Any, Any, Any]:
    """(train, valid, test) megatron datasets of `num_samples` sequences each (None where a split
    is empty, e.g. test with split 990,10,0)."""
    init_process_group()
    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend=(list(prefixes), None if weights is None else list(weights)),
        split=split,
        path_to_cache=str(cache_dir),
        tokenizer=DatasetTokenizer(eod=eod, vocab_size=vocab_size),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        mid_level_dataset_surplus=0.005,
    )
    sizes = [None if n is None else int(n) for n in num_samples]
    builder = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train, valid, test = builder.build()
    return train, valid, test


def build_gpt_datasets(corpus: PreparedCorpus, num_samples: Sequence[int | None], *,
                       data: CPTDataConfig, train: TrainConfig, model: ModelConfig,
                       blend: Blend | None = None) -> tuple[Any, Any, Any]:
    """(train, valid, test) datasets of `num_samples` sequences over the prepared `corpus`
    (`data.prepared.open_corpus`): its blend (`blend`, else the manifest's budgets over
    `num_samples[0]` sequences) split by `data.split`, seed `train.seed`, sequences of
    `train.seq_length` tokens, vocabulary `model.vocab_size`."""
    if blend is None:
        train_tokens = (num_samples[0] or 0) * train.seq_length
        blend = corpus.blend(train_tokens or None, data.split)
    prefixes, weights = blend.megatron()
    return build_blended_datasets(
        prefixes,
        weights,
        num_samples,
        seq_length=train.seq_length,
        seed=train.seed,
        split=data.split,
        eod=int(corpus.stats["eod"]),
        vocab_size=model.vocab_size,
        cache_dir=corpus.path / "cache",
    )
