"""RLVR on verifiable math rewards: slime on clusters, the local GRPO backend on CPU.

    swallow-train rl model=tiny_dense                # local GRPO from runs/tiny_dense/sft/hf
    swallow-train rl model=qwen3_8b cluster=abci3 cluster.nodes=2
        # slime: validate, print and write runs/<name>/rl/slime_job.sh (the launch scripts run it)

Either way the stage ends in `runs/<name>/rl/hf` (an HF directory) and an empty `DONE`, written
last (by the local backend here, by the slime job script after its conversion).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swallow_train.cluster import ClusterConfig
from swallow_train.metrics.config import LoggingConfig
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import ParallelConfig
from swallow_train.rl.config import (
    Backend,
    PolicyLossConfig,
    RLCheckpointConfig,
    RLEvalConfig,
    RLOptimConfig,
    RolloutConfig,
)
from swallow_train.rl.grpo import LocalConfig
from swallow_train.rl.prompts import RLDataConfig
from swallow_train.rl.reward import RewardConfig
from swallow_train.rl.slime import SlimeConfig
from swallow_train.run import InitConfig, RunConfig, check_stage_dir_model

DONE = "DONE"


@dataclass(kw_only=True)
class RLRecipe:
    model: ModelConfig
    cluster: ClusterConfig
    backend: Backend
    data: RLDataConfig
    rollout: RolloutConfig
    loss: PolicyLossConfig
    optim: RLOptimConfig
    checkpoint: RLCheckpointConfig
    evaluation: RLEvalConfig = field(default_factory=RLEvalConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    slime: SlimeConfig = field(default_factory=SlimeConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    init: InitConfig = field(default_factory=InitConfig)

    def recipe_errors(self) -> list[str]:
        """What the chosen backend cannot honour, refused at compose time (config.check)."""
        if self.backend is Backend.local:
            from swallow_train.rl.config import local_backend_errors

            return local_backend_errors(self.loss, self.evaluation)
        return []


def main(recipe: RLRecipe) -> int:
    check_stage_dir_model(recipe.run.stage_dir("rl"), recipe.model)
    if recipe.backend is Backend.slime:
        from swallow_train.rl.slime_job import write_slime_job

        return write_slime_job(recipe)
    from swallow_train.rl.local import run_local

    return run_local(recipe)

