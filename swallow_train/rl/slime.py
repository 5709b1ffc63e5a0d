"""slime on clusters: the `ray job submit ... -- python3 train.py ...` command of an RL recipe,
after slime's own argument rules (and the start-up HF config check) are checked here.

slime is not installed here and never imported: this module only writes its flags. Paths under
the repository are written `${PWD}/...`: run the command from the repository root (the job
scripts do), on a node where `ray start --head` has run.

    swallow-train rl --dry-run model=qwen3_8b cluster=abci3 cluster.nodes=2   # the recipe
    swallow-train rl model=qwen3_8b cluster=abci3 cluster.nodes=2   # validate, print, write job
"""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swallow_train.errors import SwallowError
from swallow_train.parallel import LayoutError, validate_layout
from swallow_train.rl.config import AdvantageEstimator, Backend, check_batch_rule
from swallow_train.rl.megatron_args import check_hf_config, model_args, parallel_args

ZERO_STD_FILTER = "slime.rollout.filter_hub.dynamic_sampling_filters.check_reward_nonzero_std"
PWD = "${PWD}"
MASTER_ADDR = "${MASTER_ADDR:-127.0.0.1}"
_EXPANSIONS = re.compile(r"(\$\{PWD\}|\$\{MASTER_ADDR:-127\.0\.0\.1\})")


class SlimeError(SwallowError, ValueError):
    """A recipe slime would reject (or that could not run); the message lists every rule."""


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


def _cluster_value(recipe: Any, own: str | None, key: str, example: str) -> str:
    value = own or getattr(recipe.cluster, key)
    if not value:
        raise SlimeError(
            f"cluster {recipe.cluster.name}: cluster.{key} is not set; set it to {example} "
            f"on the nodes (or inside cluster.container), e.g. cluster.{key}=..."
        )
    return str(value)


def train_script(recipe: Any) -> str:
    """slime's train.py: `slime.train_script`, else the cluster preset's value."""
    return _cluster_value(recipe, recipe.slime.train_script, "slime_train_script",
                          "slime's train.py")


def megatron_path(recipe: Any) -> str:
    """The Megatron-LM checkout slime imports: `slime.megatron_path`, else the preset's."""
    return _cluster_value(recipe, recipe.slime.megatron_path, "megatron_path",
                          "the Megatron-LM checkout slime runs with")


def _path(path: str | Path) -> str:
    """An absolute path as it is; a repository-relative one as `${PWD}/...`."""
    text = str(path)
    return text if text.startswith(("/", "$")) else f"{PWD}/{text}"


def hf_checkpoint(recipe: Any) -> str | None:
    """The HF directory (or hub id, as given) the RL stage starts from."""
    if recipe.init.hf:
        return str(recipe.init.hf)
    start = recipe.init.resolve(recipe.run)
    return _path(start) if start else None


def save_dir(recipe: Any) -> str:
    return _path(recipe.run.stage_dir("rl") / "slime")


def _actor_gpus(recipe: Any) -> int:
    cluster, s = recipe.cluster, recipe.slime
    return cluster.world_size - (0 if s.colocate else (s.rollout_num_gpus or 0))


def validate_slime(recipe: Any) -> None:
    """Raise SlimeError listing every rule of slime's argument validation (and of the job's
    shape) that `recipe` breaks; see the README for the list."""
    s, r, loss, cluster = recipe.slime, recipe.rollout, recipe.loss, recipe.cluster
    errors = check_batch_rule(r, loss)
    if recipe.backend is not Backend.slime:
        errors.append(f"backend={recipe.backend.value}: set backend=slime to render a slime job")
    if hf_checkpoint(recipe) is None:
        errors.append("no --hf-checkpoint: set init.from_stage (sft) or init.hf")
    if loss.use_kl and not (s.ref_load or hf_checkpoint(recipe)):
        errors.append("loss.use_kl=true needs --ref-load: set slime.ref_load or init")
    if recipe.evaluation.interval and recipe.data.eval_size <= 0:
        errors.append("evaluation.interval is set but data.eval_size=0 leaves no eval prompts")
    if recipe.evaluation.interval and recipe.reward.group_rm:
        errors.append("reward.group_rm=true cannot score evaluation (slime asserts no --group-rm "
                      "in eval rollouts): set evaluation.interval=0 or reward.group_rm=false")
    sample_len = r.max_prompt_len + r.max_response_len
    if sample_len > recipe.model.max_position_embeddings:
        errors.append(f"rollout.max_prompt_len + rollout.max_response_len = {sample_len} exceeds "
                      f"model.max_position_embeddings={recipe.model.max_position_embeddings}")
    if s.dynamic_batch:
        need = math.ceil(sample_len / recipe.parallel.cp)
        if s.max_tokens_per_gpu is None:
            errors.append("slime.dynamic_batch=true needs slime.max_tokens_per_gpu")
        elif s.max_tokens_per_gpu < need:
            errors.append(f"slime.max_tokens_per_gpu={s.max_tokens_per_gpu} cannot hold one "
                          f"sample of {sample_len} tokens split over CP={recipe.parallel.cp}: "
                          f"use >= {need} or raise parallel.cp")
    if s.zero_std_filter and (s.over_sampling_batch_size or r.rollout_batch_size) < (
            r.rollout_batch_size):
        errors.append(f"slime.over_sampling_batch_size={s.over_sampling_batch_size} must be >= "
                      f"rollout.rollout_batch_size={r.rollout_batch_size}")
    if not 0 < s.sglang_mem_fraction_static < 1:
        errors.append(f"slime.sglang_mem_fraction_static={s.sglang_mem_fraction_static} must be "
                      "in (0, 1)")
    if s.colocate and s.rollout_num_gpus is not None:
        errors.append("slime.rollout_num_gpus is set with slime.colocate=true (colocated "
                      "engines use every actor GPU): unset it or set slime.colocate=false")
    if not s.colocate and (not s.rollout_num_gpus or s.rollout_num_gpus % cluster.gpus_per_node
                           or s.rollout_num_gpus >= cluster.world_size):
        errors.append(f"slime.colocate=false needs slime.rollout_num_gpus, a multiple of "
                      f"cluster.gpus_per_node={cluster.gpus_per_node} below the world size "
                      f"{cluster.world_size}")
    rollout_gpus = cluster.world_size if s.colocate else (s.rollout_num_gpus or 0)
    if s.rollout_num_gpus_per_engine < 1 or rollout_gpus % s.rollout_num_gpus_per_engine:
        errors.append(f"{rollout_gpus} rollout GPUs are not divisible by "
                      f"slime.rollout_num_gpus_per_engine={s.rollout_num_gpus_per_engine}")
    try:
        recipe.model.validate()
        actor = max(_actor_gpus(recipe), 1)
        # slime pads every packed micro-batch for CP and SP itself: pass that padding unit
        validate_layout(recipe.model, recipe.parallel, world_size=actor,
                        global_batch_size=loss.global_batch_size, micro_batch_size=1,
                        seq_length=2 * recipe.parallel.cp * recipe.parallel.tp)
    except (LayoutError, ValueError) as exc:
        errors.append(f"actor layout on {_actor_gpus(recipe)} GPUs: {exc}")
    start = hf_checkpoint(recipe)
    if start and start.startswith(PWD):
        local = Path(start.replace(f"{PWD}/", "", 1)) / "config.json"
        errors += [f"{local}: {m} (slime's start-up check would fail)"
                   for m in check_hf_config(model_args(recipe.model), local)]
    if errors:
        raise SlimeError("slime would reject this RL recipe:\n"
                         + "\n".join(f"  - {e}" for e in errors))


def slime_train_args(recipe: Any) -> list[str]:
    """The flags of slime's train.py for `recipe` (validated first). Paths under the
    repository read `${PWD}/...`, for the shell to expand."""
    validate_slime(recipe)
    s, r, loss, opt, ev = recipe.slime, recipe.rollout, recipe.loss, recipe.optim, \
        recipe.evaluation
    cluster, log = recipe.cluster, recipe.logging
    args = ["--actor-num-nodes", str(_actor_gpus(recipe) // cluster.gpus_per_node),
            "--actor-num-gpus-per-node", str(cluster.gpus_per_node)]
    args += ["--colocate"] if s.colocate else ["--rollout-num-gpus", str(s.rollout_num_gpus)]
    args += ["--rollout-num-gpus-per-engine", str(s.rollout_num_gpus_per_engine)]
    if cluster.gpus_per_node != 8:
        args += ["--num-gpus-per-node", str(cluster.gpus_per_node)]
    args += model_args(recipe.model)
    start = hf_checkpoint(recipe)
    args += ["--hf-checkpoint", start, "--ref-load", s.ref_load or start,
             "--load", save_dir(recipe), "--save", save_dir(recipe),
             "--save-interval", str(recipe.checkpoint.save_interval)]
    args += ["--prompt-data", _path(recipe.data.train_path), "--input-key", "prompt",
             "--label-key", "label", "--metadata-key", "metadata", "--apply-chat-template",
             "--apply-chat-template-kwargs", json.dumps({"enable_thinking": True})]
    if r.shuffle:
        args.append("--rollout-shuffle")
    args += ["--rollout-seed", str(r.seed), "--custom-rm-path", recipe.reward.function_path]
    if recipe.reward.group_rm:
        args.append("--group-rm")
    args += ["--num-rollout", str(r.num_rollout), "--rollout-batch-size",
             str(r.rollout_batch_size), "--n-samples-per-prompt", str(r.n_samples_per_prompt),
             "--rollout-max-response-len", str(r.max_response_len),
             "--rollout-max-prompt-len", str(r.max_prompt_len),
             "--rollout-temperature", f"{r.temperature:g}", "--rollout-top-p", f"{r.top_p:g}"]
    if r.top_k > 0:
        args += ["--rollout-top-k", str(r.top_k)]
    args += ["--global-batch-size", str(loss.global_batch_size),
             "--num-steps-per-rollout", str(loss.steps_per_rollout)]
    if s.balance_data:
        args.append("--balance-data")
    if s.zero_std_filter:
        args += ["--dynamic-sampling-filter-path", ZERO_STD_FILTER, "--over-sampling-batch-size",
                 str(s.over_sampling_batch_size or r.rollout_batch_size)]
    if ev.interval:
        args += ["--eval-interval", str(ev.interval), "--eval-prompt-data",
                 f"{recipe.data.name}_heldout", _path(recipe.data.eval_path),
                 "--n-samples-per-eval-prompt", str(ev.n_samples_per_prompt),
                 "--eval-max-response-len", str(ev.max_response_len or r.max_response_len),
                 "--eval-temperature", f"{ev.temperature:g}"]
    args += parallel_args(recipe.model, recipe.parallel)
    if s.dynamic_batch:
        args += ["--use-dynamic-batch-size", "--max-tokens-per-gpu", str(s.max_tokens_per_gpu)]
    args += ["--advantage-estimator", loss.advantage_estimator.value]
    if not loss.std_normalization and loss.advantage_estimator is AdvantageEstimator.grpo:
        args.append("--disable-grpo-std-normalization")
    if loss.normalize_advantages:
        args.append("--normalize-advantages")
    if loss.use_kl:
        args += ["--use-kl-loss", "--kl-loss-coef", f"{loss.kl_coef:g}",
                 "--kl-loss-type", loss.kl_type.value]
    args += ["--eps-clip", f"{loss.eps_clip:g}", "--eps-clip-high", f"{loss.eps_clip_high:g}"]
    if loss.per_token_loss:
        args.append("--calculate-per-token-loss")
    args += ["--optimizer", "adam", "--lr", f"{opt.lr:g}", "--lr-decay-style", "constant",
             "--weight-decay", f"{opt.weight_decay:g}", "--adam-beta1", f"{opt.adam_beta1:g}",
             "--adam-beta2", f"{opt.adam_beta2:g}", "--adam-eps", f"{opt.adam_eps:g}",
             "--clip-grad", f"{opt.clip_grad:g}"]
    if s.optimizer_cpu_offload:
        args += ["--optimizer-cpu-offload", "--overlap-cpu-optimizer-d2h-h2d",
                 "--use-precision-aware-optimizer"]
    if log.wandb_mode.value != "disabled":
        args += ["--use-wandb", "--wandb-mode", log.wandb_mode.value,
                 "--wandb-project", log.wandb_project,
                 "--wandb-group", log.wandb_group or recipe.run.name]
        if log.wandb_entity:
            args += ["--wandb-team", log.wandb_entity]
    args += ["--sglang-mem-fraction-static", f"{s.sglang_mem_fraction_static:g}"]
    args += ["--attention-dropout", "0.0", "--hidden-dropout", "0.0",
             "--accumulate-allreduce-grads-in-fp32", "--attention-softmax-in-fp32",
             "--attention-backend", "flash"]
    return args + list(s.extra_args)


def runtime_env(recipe: Any) -> dict[str, Any]:
    """The Ray runtime environment: Megatron and this repository importable (slime loads the
    reward by dotted path inside Ray actors), the reward pool's size, NCCL settings."""
    s = recipe.slime
    env = {
        "PYTHONPATH": f"{_path(megatron_path(recipe))}:{PWD}",
        "CUDA_DEVICE_MAX_CONNECTIONS": "1",
        "NCCL_NVLS_ENABLE": "1" if s.nccl_nvls else "0",
        "MASTER_ADDR": MASTER_ADDR,
        "no_proxy": f"{MASTER_ADDR},127.0.0.1,localhost",
        **recipe.reward.env(),
        **s.env,
    }
    return {"env_vars": env}


def shell_word(word: str) -> str:
    """`word` quoted for bash; only `${PWD}` and `${MASTER_ADDR:-127.0.0.1}` expand."""
    if "$" not in word:
        return shlex.quote(word)
    parts = _EXPANSIONS.split(word)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part)
        else:
            out.append(re.sub(r'(["\\$`])', r"\\\1", part))
    return '"' + "".join(out) + '"'


def _lines(args: list[str]) -> list[str]:
    """One line per flag and its values."""
    lines: list[list[str]] = []
    for arg in args:
        if arg.startswith("--") or not lines:
            lines.append([arg])
        else:
            lines[-1].append(arg)
    return [" ".join(shell_word(w) for w in line) for line in lines]


def render_ray_job(recipe: Any) -> str:
    """The `ray job submit ... -- python3 train.py ...` command (multi-line, `\\`-joined) for
    a node where `ray start --head` has run; validated with slime's rules first."""
    train = slime_train_args(recipe)
    env = json.dumps(runtime_env(recipe))
    head = [f"ray job submit --address={shell_word(recipe.slime.ray_address)}",
            f"--runtime-env-json={shell_word(env)}",
            f"-- python3 {shell_word(_path(train_script(recipe)))}"]
    body = head + _lines(train)
    return " \\\n  ".join(body) + "\n"
