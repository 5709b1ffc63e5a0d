"""`swallow-train prepare`, `prepare-sft` and `prepare-rl`: the data of the CPT, SFT and RL
recipes, prepared ahead of training (a single-node CPT/SFT stage also prepares on first use,
through the same functions of `swallow_train/data/prepared.py`; local RL through
`rl.prompts.ensure_prepared`). Each passes the library only its recipe's data sections.

    swallow-train prepare model=tiny_dense                  # tokenize the CPT corpora
    swallow-train prepare-sft model=tiny_dense              # filter, render and pack the SFT set
    swallow-train prepare-rl model=tiny_dense               # the RL prompts as slime JSONL
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from swallow_train.data.prepared import cpt_manifest, prepare_cpt, prepare_packs, sft_manifest
from swallow_train.data.ready import StageData, prepare_command
from swallow_train.data.sft_stats import report
from swallow_train.stages.cpt import CPTRecipe
from swallow_train.stages.sft import SFTRecipe

if TYPE_CHECKING:
    from swallow_train.stages.rl import RLRecipe


def cpt(recipe: CPTRecipe) -> int:
    """Tokenize the manifest's corpora (this array task's shards with data.num_tasks > 1), then
    print the blend the training run will read."""
    from swallow_train.data.blend import build_blend
    from swallow_train.mcore.indexed import ShardWriter

    d, t = recipe.data, recipe.train
    manifest = cpt_manifest(d)
    result = prepare_cpt(d, recipe.model.tokenizer, manifest, writer=ShardWriter,
                         command=prepare_command(StageData.of(recipe)))
    print(result.summary())
    if d.num_tasks > 1:
        print(f"task {d.task_index} of {d.num_tasks} done; the final step (data.num_tasks=1) "
              "checks every shard and writes stats.json")
        return 0
    train_tokens = t.train_steps * t.global_batch_size * t.seq_length
    print(build_blend(manifest, result.stats, result.path, train_tokens, split=d.split).report())
    return 0


def sft(recipe: SFTRecipe) -> int:
    """Prepare the packs of the SFT recipe (at once when they are already there)."""
    packs = prepare_packs(recipe.data, recipe.model.tokenizer, recipe.train.seq_length,
                          sft_manifest(recipe.data), command=prepare_command(StageData.of(recipe)))
    print(f"{packs.path}: {'already prepared' if packs.existed else 'prepared'}")
    print(report(packs.stats))
    return 0


def rl(recipe: RLRecipe) -> int:
    """Prepare the RL prompts (`data`: the source, held-out size, cap) and print the counts."""
    from swallow_train.rl.prompts import prepare_rl

    return prepare_rl(recipe.data)
