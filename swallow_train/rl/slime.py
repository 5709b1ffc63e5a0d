"""slime on clusters: `SlimeConfig.render(algo, model, parallel, cluster, stage)` checks the RL
recipe against slime's own argument rules (and its start-up HF config check), then returns the
typed `SlimeJob` (train.py's flags from the table in `slime_flags`, the Ray runtime environment,
the job's paths), which `slime_job` formats.

slime is not installed here and never imported: this module only writes its flags. Paths under
the repository are written `${PWD}/...`: the job runs from the repository root (the job scripts
do), on a node where `ray start --head` has run.

    swallow-train rl --dry-run model=qwen3_8b cluster=abci3 cluster.nodes=2   # the recipe
    swallow-train rl model=qwen3_8b cluster=abci3 cluster.nodes=2   # validate, print, write job
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swallow_train.cluster import ClusterConfig
from swallow_train.errors import SwallowError
from swallow_train.metrics.config import LoggingConfig, WandbMode
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import LayoutError, ParallelConfig, validate_layout
from swallow_train.rl.config import AdvantageEstimator, RLAlgorithm, check_batch_rule
from swallow_train.rl.megatron_args import check_hf_config, model_args, parallel_args
from swallow_train.rl.slime_flags import SLIME_FLAGS, render_flags
from swallow_train.rl.slime_job import MASTER_ADDR, PWD, JobPath, SlimeJob, Word
from swallow_train.run import InitConfig, RunConfig


class SlimeError(SwallowError, ValueError):
    """A recipe slime would reject (or that could not run); the message lists every rule."""


@dataclass(frozen=True)
class SlimeStage:
    """This run's RL stage as slime sees it: its name, directory, start checkpoint, logging."""

    name: str
    stage_dir: JobPath
    start: Word | None
    """The HF directory (or hub id, as given in init.hf) the stage starts from."""
    logging: LoggingConfig

    @classmethod
    def of(cls, run: RunConfig, init: InitConfig, logging: LoggingConfig) -> SlimeStage:
        start = init.resolve(run)
        return cls(name=run.name, stage_dir=JobPath.of(run.stage_dir("rl")), logging=logging,
                   start=init.hf if init.hf else (JobPath.of(start) if start else None))


@dataclass(kw_only=True)
class SlimeConfig:
    """How slime runs the RL recipe on a Ray cluster (paths are those of slime's image)."""

    ray_address: str = "http://127.0.0.1:8265"
    train_script: str | None = None
    """slime's train.py; None: the cluster preset's `cluster.slime_train_script`."""
    megatron_path: str | None = None
    """Megatron-LM for slime; None: the cluster preset's `cluster.megatron_path`."""
    colocate: bool = True
    """Training and SGLang share every GPU (Megatron is offloaded while rolling out)."""
    rollout_num_gpus: int | None = None
    """Without colocate: GPUs of the SGLang engines (whole nodes); the actor gets the rest."""
    rollout_num_gpus_per_engine: int = 1
    sglang_mem_fraction_static: float = 0.7
    dynamic_batch: bool = True
    """`--use-dynamic-batch-size`: pack micro-batches up to `max_tokens_per_gpu` tokens."""
    max_tokens_per_gpu: int | None = None
    balance_data: bool = True
    optimizer_cpu_offload: bool = False
    """CPU Adam (slime's 30B-A3B and 32B scripts): optimizer state in host memory."""
    zero_std_filter: bool = False
    """Drop prompt groups whose rewards are all equal (no GRPO signal), over-sampling to refill."""
    over_sampling_batch_size: int | None = None
    ref_load: str | None = None
    """Reference / initial weights; None: the HF export the stage starts from (slime >= 0.3.1
    loads HF directories; older images need a torch_dist conversion here)."""
    nccl_nvls: bool = False
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment variables of the Ray job."""
    extra_args: list[str] = field(default_factory=list)
    """Extra train.py flags, appended verbatim."""

    # ---- where slime and Megatron-LM are --------------------------------------------------
    def _cluster_path(self, cluster: ClusterConfig, own: str | None, key: str,
                      example: str) -> JobPath:
        value = own or getattr(cluster, key)
        if not value:
            raise SlimeError(
                f"cluster {cluster.name}: cluster.{key} is not set; set it to {example} "
                f"on the nodes (or inside cluster.container), e.g. cluster.{key}=..."
            )
        return JobPath.of(value)

    def train_script_path(self, cluster: ClusterConfig) -> JobPath:
        """slime's train.py: `slime.train_script`, else the cluster preset's value."""
        return self._cluster_path(cluster, self.train_script, "slime_train_script",
                                  "slime's train.py")

    def megatron_checkout(self, cluster: ClusterConfig) -> JobPath:
        """The Megatron-LM checkout slime imports: `slime.megatron_path`, else the preset's."""
        return self._cluster_path(cluster, self.megatron_path, "megatron_path",
                                  "the Megatron-LM checkout slime runs with")

    def actor_gpus(self, cluster: ClusterConfig) -> int:
        return cluster.world_size - (0 if self.colocate else (self.rollout_num_gpus or 0))

    # ---- slime's rules ------------------------------------------------------------------
    def errors(self, algo: RLAlgorithm, model: ModelConfig, parallel: ParallelConfig,
               cluster: ClusterConfig, stage: SlimeStage) -> list[str]:
        """Every rule of slime's argument validation (and of the job's shape) broken."""
        r, loss, ev = algo.rollout, algo.loss, algo.evaluation
        errors = check_batch_rule(r, loss)
        if stage.start is None:
            errors.append("no --hf-checkpoint: set init.from_stage (sft) or init.hf")
        if loss.use_kl and not (self.ref_load or stage.start):
            errors.append("loss.use_kl=true needs --ref-load: set slime.ref_load or init")
        if ev.interval and algo.data.eval_size <= 0:
            errors.append("evaluation.interval is set but data.eval_size=0 leaves no eval prompts")
        if ev.interval and algo.reward.group_rm:
            errors.append("reward.group_rm=true cannot score evaluation (slime asserts no "
                          "--group-rm in eval rollouts): set evaluation.interval=0 or "
                          "reward.group_rm=false")
        sample_len = r.max_prompt_len + r.max_response_len
        if sample_len > model.max_position_embeddings:
            errors.append(f"rollout.max_prompt_len + rollout.max_response_len = {sample_len} "
                          f"exceeds model.max_position_embeddings={model.max_position_embeddings}")
        if self.dynamic_batch:
            need = math.ceil(sample_len / parallel.cp)
            if self.max_tokens_per_gpu is None:
                errors.append("slime.dynamic_batch=true needs slime.max_tokens_per_gpu")
            elif self.max_tokens_per_gpu < need:
                errors.append(f"slime.max_tokens_per_gpu={self.max_tokens_per_gpu} cannot hold "
                              f"one sample of {sample_len} tokens split over CP={parallel.cp}: "
                              f"use >= {need} or raise parallel.cp")
        over = self.over_sampling_batch_size
        if self.zero_std_filter and (over or r.rollout_batch_size) < r.rollout_batch_size:
            errors.append(f"slime.over_sampling_batch_size={over} must be >= "
                          f"rollout.rollout_batch_size={r.rollout_batch_size}")
        if not 0 < self.sglang_mem_fraction_static < 1:
            errors.append(f"slime.sglang_mem_fraction_static={self.sglang_mem_fraction_static} "
                          "must be in (0, 1)")
        errors += self._gpu_errors(cluster)
        actor = self.actor_gpus(cluster)
        try:
            model.validate()
            # slime pads every packed micro-batch for CP and SP itself: pass that padding unit
            validate_layout(model, parallel, world_size=max(actor, 1),
                            global_batch_size=loss.global_batch_size, micro_batch_size=1,
                            seq_length=2 * parallel.cp * parallel.tp)
        except (LayoutError, ValueError) as exc:
            errors.append(f"actor layout on {actor} GPUs: {exc}")
        if isinstance(stage.start, JobPath) and stage.start.relative:
            errors += [f"{m} (slime's start-up check would fail)" for m in
                       check_hf_config(model, Path(stage.start.path) / "config.json")]
        return errors

    def _gpu_errors(self, cluster: ClusterConfig) -> list[str]:
        errors = []
        if self.colocate and self.rollout_num_gpus is not None:
            errors.append("slime.rollout_num_gpus is set with slime.colocate=true (colocated "
                          "engines use every actor GPU): unset it or set slime.colocate=false")
        if not self.colocate and (
                not self.rollout_num_gpus or self.rollout_num_gpus % cluster.gpus_per_node
                or self.rollout_num_gpus >= cluster.world_size):
            errors.append(f"slime.colocate=false needs slime.rollout_num_gpus, a multiple of "
                          f"cluster.gpus_per_node={cluster.gpus_per_node} below the world size "
                          f"{cluster.world_size}")
        engines = cluster.world_size if self.colocate else (self.rollout_num_gpus or 0)
        if self.rollout_num_gpus_per_engine < 1 or engines % self.rollout_num_gpus_per_engine:
            errors.append(f"{engines} rollout GPUs are not divisible by "
                          f"slime.rollout_num_gpus_per_engine={self.rollout_num_gpus_per_engine}")
        return errors

    # ---- the job ------------------------------------------------------------------------
    def render(self, algo: RLAlgorithm, model: ModelConfig, parallel: ParallelConfig,
               cluster: ClusterConfig, stage: SlimeStage) -> SlimeJob:
        """The validated slime job (SlimeError lists every rule the recipe breaks)."""
        errors = self.errors(algo, model, parallel, cluster, stage)
        if errors:
            raise SlimeError("slime would reject this RL recipe:\n"
                             + "\n".join(f"  - {e}" for e in errors))
        save_dir = stage.stage_dir / "slime"
        loss = algo.loss
        job: dict[str, Any] = {
            "actor_nodes": self.actor_gpus(cluster) // cluster.gpus_per_node,
            "num_gpus_per_node": None if cluster.gpus_per_node == 8 else cluster.gpus_per_node,
            "model_args": model_args(model),
            "parallel_args": parallel_args(model, parallel),
            "start": stage.start,
            "save_dir": save_dir,
            "eval_prompt_data": (f"{algo.data.name}_heldout", JobPath.of(algo.data.eval_path)),
            "disable_grpo_std": not loss.std_normalization
            and loss.advantage_estimator is AdvantageEstimator.grpo,
            "wandb": stage.logging.wandb_mode is not WandbMode.disabled,
            "run_name": stage.name,
        }
        sources = {"data": algo.data, "rollout": algo.rollout, "loss": loss, "optim": algo.optim,
                   "evaluation": algo.evaluation, "checkpoint": algo.checkpoint,
                   "reward": algo.reward, "slime": self, "cluster": cluster,
                   "logging": stage.logging, "job": job}
        megatron = self.megatron_checkout(cluster)
        env = {"PYTHONPATH": f"{megatron.shell}:{PWD}",  # slime imports our reward in Ray actors
               "CUDA_DEVICE_MAX_CONNECTIONS": "1",
               "NCCL_NVLS_ENABLE": "1" if self.nccl_nvls else "0",
               "MASTER_ADDR": MASTER_ADDR,
               "no_proxy": f"{MASTER_ADDR},127.0.0.1,localhost",
               **algo.reward.env(), **self.env}
        return SlimeJob(run_name=stage.name, ray_address=self.ray_address,
                        train_script=self.train_script_path(cluster), megatron_path=megatron,
                        args=(*render_flags(SLIME_FLAGS, sources), *self.extra_args), env=env,
                        stage_dir=stage.stage_dir, save_dir=save_dir,
                        tokenizer=stage.start or model.tokenizer)
