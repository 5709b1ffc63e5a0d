"""The training loop's typed sections live in the core schema, `swallow_train/training.py`;
re-exported here for the mcore modules that import them from this path.

    from swallow_train.training import TrainConfig     # new code
"""

from swallow_train.training import (
    CheckpointConfig,
    DecayStyle,
    Fp8Recipe,
    OptimConfig,
    OptimFormat,
    Precision,
    TrainConfig,
)

__all__ = ["CheckpointConfig", "DecayStyle", "Fp8Recipe", "OptimConfig", "OptimFormat",
           "Precision", "TrainConfig"]
