"""Supervised fine-tuning: the same megatron-core loop as CPT, on packed chat sequences with the
loss on assistant tokens only, starting from the CPT stage's HF export.

    swallow-train sft model=tiny_dense                       # tiny CPU run
    torchrun --nproc-per-node 8 -m swallow_train sft model=qwen3_8b cluster=abci3
"""

from __future__ import annotations

from dataclasses import dataclass

from swallow_train.data.config import SFTDataConfig
from swallow_train.training import TrainRecipe


@dataclass(kw_only=True)
class SFTRecipe(TrainRecipe):
    """`train.global_batch_size` counts conversations per step; the packed sequences per step
    follow from the packing statistics when the data is opened (mcore/data_sft.py)."""

    data: SFTDataConfig

    def sequences_per_step(self) -> int | None:
        return None

    def recipe_errors(self) -> list[str]:
        errors = super().recipe_errors()
        if self.train.eval_interval:
            errors.append(f"train.eval_interval={self.train.eval_interval}: SFT has no "
                          "validation split (every packed conversation is trained on), so it "
                          "cannot evaluate; set train.eval_interval=0")
        return errors


def main(recipe: SFTRecipe) -> int:
    from swallow_train.mcore.data_sft import SFTData
    from swallow_train.mcore.trainer import train

    data = SFTData(data=recipe.data, train=recipe.train, model=recipe.model,
                   cluster=recipe.cluster)
    return train(recipe, stage="sft", data=data)

