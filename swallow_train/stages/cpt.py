"""Continual pretraining on the blended corpus mixture: the shared megatron-core loop with
megatron's GPTDataset over the prepared .bin/.idx.

    swallow-train cpt model=tiny_dense                       # tiny CPU run
    torchrun --nproc-per-node 8 -m swallow_train cpt model=qwen3_8b cluster=abci3 cluster.nodes=1
"""

from __future__ import annotations

from dataclasses import dataclass

from swallow_train.data.config import CPTDataConfig
from swallow_train.training import TrainRecipe


@dataclass(kw_only=True)
class CPTRecipe(TrainRecipe):
    data: CPTDataConfig

    def recipe_errors(self) -> list[str]:
        errors = super().recipe_errors()
        if self.train.train_steps < 1:
            errors.append(f"train.train_steps={self.train.train_steps} must be >= 1 for CPT (0, "
                          "one epoch, is SFT's): set train.train_steps to the steps to train")
        return errors


def main(recipe: CPTRecipe) -> int:
    from swallow_train.mcore.data_cpt import CPTData
    from swallow_train.mcore.trainer import train

    data = CPTData(data=recipe.data, train=recipe.train, model=recipe.model,
                   cluster=recipe.cluster)
    return train(recipe, stage="cpt", data=data)

