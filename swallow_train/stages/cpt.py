"""Continual pretraining on the blended corpus mixture: the shared megatron-core loop with
megatron's GPTDataset over the prepared .bin/.idx.

    swallow-train cpt model=tiny_dense                       # tiny CPU run
    torchrun --nproc-per-node 8 -m swallow_train cpt model=qwen3_8b cluster=abci3 cluster.nodes=1
"""

from __future__ import annotations

from dataclasses import dataclass

from swallow_train.data.config import CPTDataConfig
from swallow_train.stages.common import TrainRecipe


@dataclass(kw_only=True)
class CPTRecipe(TrainRecipe):
    data: CPTDataConfig


def main(recipe: CPTRecipe) -> int:
    from swallow_train.mcore.data_cpt import CPTData
    from swallow_train.mcore.trainer import train

    return train(recipe, stage="cpt", data=CPTData(recipe))


if __name__ == "__main__":
    import sys

    from swallow_train.cli import main as cli

    raise SystemExit(cli(["cpt", *sys.argv[1:]]))
