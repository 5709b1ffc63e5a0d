"""RLVR on verifiable math rewards: slime on clusters, the local GRPO backend on CPU.

    swallow-train rl model=tiny_dense                # local GRPO from runs/tiny_dense/sft/hf
    swallow-train rl model=qwen3_8b cluster=abci3 cluster.nodes=2
        # slime: validate, print and write runs/<name>/rl/slime_job.sh (the launch scripts run it)

Either way the stage ends in `runs/<name>/rl/hf` (an HF directory) and `DONE`, written last: by
the stage runner here (swallow_train/lifecycle), empty by the slime job script after its export.
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
    RLAlgorithm,
    RLCheckpointConfig,
    RLEvalConfig,
    RLOptimConfig,
    RolloutConfig,
    ignored_options,
    local_backend_errors,
    off_default,
)
from swallow_train.rl.grpo import LocalConfig
from swallow_train.rl.prompts import RLDataConfig
from swallow_train.rl.reward import RewardConfig
from swallow_train.rl.slime import SlimeConfig, SlimeError, SlimeStage
from swallow_train.rl.slime_job import SlimeJob
from swallow_train.run import InitConfig, RunConfig, check_stage_dir_model


@dataclass(kw_only=True)
class RLRecipe:
    """Shared algorithm sections (data, rollout, loss, optim, evaluation, checkpoint, reward)
    plus a tagged backend union: `backend` picks slime or local, each backend's options are in
    its own section (`slime`, `local`), and the section of the backend not chosen must keep its
    defaults (a structured config cannot hold a real union: both sections always exist, so every
    key composes strictly and --dry-run lists it). `parallel` is the slime actor's layout."""

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

    @property
    def algorithm(self) -> RLAlgorithm:
        return RLAlgorithm(data=self.data, rollout=self.rollout, loss=self.loss,
                           optim=self.optim, evaluation=self.evaluation,
                           checkpoint=self.checkpoint, reward=self.reward)

    def recipe_errors(self) -> list[str]:
        """What the chosen backend cannot honour or would ignore, refused at compose time
        (config.check), each naming the field and the fix."""
        if self.backend is Backend.local:
            ignored = off_default("slime", self.slime) + off_default("parallel", self.parallel)
            ignored += off_default("reward", self.reward, ("group_rm",))
            return local_backend_errors(self.loss, self.evaluation) + ignored_options(
                self.backend, ignored)
        ignored = off_default("local", self.local)
        ignored += off_default("checkpoint", self.checkpoint, ("keep_last",))
        return ignored_options(self.backend, ignored)

    def slime_job(self) -> SlimeJob:
        """The validated slime job of this recipe (SlimeError lists every broken rule)."""
        if self.backend is not Backend.slime:
            raise SlimeError(f"slime would reject this RL recipe:\n  - backend="
                             f"{self.backend.value}: set backend=slime to render a slime job")
        return self.slime.render(self.algorithm, self.model, self.parallel, self.cluster,
                                 SlimeStage.of(self.run, self.init, self.logging))


def main(recipe: RLRecipe) -> int:
    check_stage_dir_model(recipe.run.stage_dir("rl"), recipe.model)
    if recipe.backend is Backend.slime:
        from swallow_train.config import to_yaml
        from swallow_train.rl.slime_job import write_slime_job

        return write_slime_job(recipe.slime_job(), recipe.run.stage_dir("rl"), to_yaml(recipe))
    from swallow_train.rl.local import run_local

    return run_local(recipe)

