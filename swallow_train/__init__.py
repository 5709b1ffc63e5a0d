"""swallow-train: the Qwen3-Swallow v0.2 recipe (CPT -> SFT -> RLVR) on megatron-core and slime.

`import swallow_train` is light: configs, data, rewards and launch rendering never import
megatron-core, Transformer Engine or slime. Only `swallow_train.mcore` talks to megatron-core.

    swallow-train pipeline            # the whole pipeline on the tiny CPU default
    swallow-train cpt --dry-run model=qwen3_8b cluster=abci3 cluster.nodes=16
"""

__version__ = "0.1.0"
