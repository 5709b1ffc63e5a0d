"""Typed sections of the RL recipe that both backends read: rollout, policy loss, optimizer,
evaluation and checkpointing (with `data` and `reward`, the shared `RLAlgorithm`). slime gets
them as flags (`swallow_train.rl.slime`), the local backend runs them (`swallow_train.rl.grpo`).
Each backend refuses the options it would ignore (`ignored_options`).

    swallow-train rl --dry-run model=qwen3_30b_a3b rollout.n_samples_per_prompt=16
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swallow_train.rl.prompts import RLDataConfig
    from swallow_train.rl.reward import RewardConfig


class Backend(Enum):
    slime = "slime"
    """Render and validate the slime (Megatron + SGLang + Ray) job for a cluster."""
    local = "local"
    """Run the plain-PyTorch GRPO loop here (the tiny CPU default and tests)."""


class AdvantageEstimator(Enum):
    grpo = "grpo"
    gspo = "gspo"
    reinforce_plus_plus = "reinforce_plus_plus"
    reinforce_plus_plus_baseline = "reinforce_plus_plus_baseline"


class KLType(Enum):
    """slime `--kl-loss-type`; the local backend implements k1 and low_var_kl (k3)."""

    k1 = "k1"
    k2 = "k2"
    k3 = "k3"
    low_var_kl = "low_var_kl"


@dataclass(kw_only=True)
class RolloutConfig:
    """What is sampled each rollout (one RL iteration)."""

    num_rollout: int
    """RL iterations (Qwen3-Swallow v0.2: 800 for 8B and 30B-A3B, 600 for 32B)."""
    rollout_batch_size: int
    """Prompts per rollout."""
    n_samples_per_prompt: int
    """Responses sampled per prompt (the GRPO group)."""
    max_response_len: int
    """Most tokens a response may have; a longer one is cut and scores 0 (truncated)."""
    max_prompt_len: int = 2048
    """Longer prompts are dropped when the data is loaded."""
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    """-1: off."""
    shuffle: bool = True
    seed: int = 42
    enable_thinking: bool = True
    """The chat template's `enable_thinking` for the prompts (slime's
    `--apply-chat-template-kwargs`); false prefills the empty think block, as Qwen3's template
    does with thinking off, so the response is the answer alone (the tiny CPU default)."""


@dataclass(kw_only=True)
class PolicyLossConfig:
    """GRPO with clip-higher and a per-token loss; KL to the reference model on or off."""

    global_batch_size: int
    """Samples per optimizer step."""
    steps_per_rollout: int = 1
    """Optimizer steps per rollout: rollout_batch_size x n_samples_per_prompt must equal
    global_batch_size x steps_per_rollout."""
    advantage_estimator: AdvantageEstimator = AdvantageEstimator.grpo
    std_normalization: bool = True
    """Divide group-centred rewards by the group's std (off in Dr. GRPO / Olmo 3)."""
    normalize_advantages: bool = False
    """Whiten advantages over the batch (required by reinforce_plus_plus*)."""
    eps_clip: float = 0.2
    eps_clip_high: float = 0.28
    """Upper clip of the ratio (clip-higher, DAPO); equal to eps_clip for symmetric PPO."""
    per_token_loss: bool = True
    """Average the loss over all tokens of the batch, not per sample then over samples."""
    use_kl: bool = False
    """KL loss to the reference (initial) model; slime then needs `--ref-load`."""
    kl_coef: float = 0.0
    kl_type: KLType = KLType.low_var_kl


@dataclass(kw_only=True)
class RLOptimConfig:
    """Adam with a constant learning rate (slime's RL default)."""

    lr: float
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-8
    clip_grad: float = 1.0


@dataclass(kw_only=True)
class RLEvalConfig:
    """Sampled evaluation on the held-out prompts every `interval` rollouts; 0: never."""

    interval: int = 0
    n_samples_per_prompt: int = 1
    max_response_len: int | None = None
    """None: rollout.max_response_len."""
    temperature: float = 1.0


@dataclass(kw_only=True)
class RLCheckpointConfig:
    save_interval: int
    """Save every N rollouts (and at the end)."""
    keep_last: int = 2
    """Local backend: keep the last K checkpoints."""


def check_batch_rule(rollout: RolloutConfig, loss: PolicyLossConfig) -> list[str]:
    """slime's batch rule and the basic ranges both backends rely on (messages name fields)."""
    errors: list[str] = []
    samples = rollout.rollout_batch_size * rollout.n_samples_per_prompt
    if samples != loss.global_batch_size * loss.steps_per_rollout:
        errors.append(
            f"rollout.rollout_batch_size x rollout.n_samples_per_prompt = "
            f"{rollout.rollout_batch_size} x {rollout.n_samples_per_prompt} = {samples} must "
            f"equal loss.global_batch_size x loss.steps_per_rollout = "
            f"{loss.global_batch_size} x {loss.steps_per_rollout} = "
            f"{loss.global_batch_size * loss.steps_per_rollout}"
        )
    if rollout.temperature <= 0:
        errors.append(f"rollout.temperature={rollout.temperature} must be > 0 (0 is greedy "
                      "decoding, not a policy to optimise)")
    if rollout.n_samples_per_prompt < 2 and loss.advantage_estimator in (
            AdvantageEstimator.grpo, AdvantageEstimator.gspo):
        errors.append("rollout.n_samples_per_prompt must be >= 2: GRPO's advantage is the "
                      "reward minus its group's mean")
    for name in ("num_rollout", "rollout_batch_size", "max_response_len"):
        if getattr(rollout, name) < 1:
            errors.append(f"rollout.{name}={getattr(rollout, name)} must be >= 1")
    if loss.eps_clip_high < loss.eps_clip:
        errors.append(f"loss.eps_clip_high={loss.eps_clip_high} must be >= "
                      f"loss.eps_clip={loss.eps_clip} (clip-higher widens the upper bound)")
    if loss.kl_coef < 0 or (loss.kl_coef and not loss.use_kl):
        errors.append(f"loss.kl_coef={loss.kl_coef} must be >= 0 and needs loss.use_kl=true "
                      "(use_kl with kl_coef 0 only monitors the KL)")
    if loss.advantage_estimator in (AdvantageEstimator.reinforce_plus_plus,
                                    AdvantageEstimator.reinforce_plus_plus_baseline) and (
            not loss.normalize_advantages):
        errors.append(f"loss.advantage_estimator={loss.advantage_estimator.value} needs "
                      "loss.normalize_advantages=true (slime asserts it)")
    return errors


def local_backend_errors(loss: PolicyLossConfig, evaluation: RLEvalConfig) -> list[str]:
    """Settings the local GRPO backend (`rl/local.py`) cannot honour: it implements the GRPO
    advantage (group-centred, optionally std-normalised) and nothing else, so these are refused
    rather than silently run as GRPO."""
    errors: list[str] = []
    if loss.advantage_estimator is not AdvantageEstimator.grpo:
        errors.append(f"loss.advantage_estimator={loss.advantage_estimator.value}: the local "
                      "backend implements grpo only; set loss.advantage_estimator=grpo or "
                      "backend=slime")
    if loss.normalize_advantages:
        errors.append("loss.normalize_advantages=true: the local backend does not whiten "
                      "advantages over the batch; set loss.normalize_advantages=false or "
                      "backend=slime")
    if evaluation.temperature <= 0:
        errors.append(f"evaluation.temperature={evaluation.temperature!r}: the local backend "
                      "samples evaluations and has no greedy mode; set evaluation.temperature "
                      "> 0 or backend=slime")
    return errors


@dataclass(frozen=True)
class RLAlgorithm:
    """The shared algorithm sections of the RL recipe, as one backend receives them."""

    data: RLDataConfig
    rollout: RolloutConfig
    loss: PolicyLossConfig
    optim: RLOptimConfig
    evaluation: RLEvalConfig
    checkpoint: RLCheckpointConfig
    reward: RewardConfig


def _override(value: Any) -> str:
    """`value` as a command-line override writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value.value if isinstance(value, Enum) else value)


def off_default(prefix: str, section: Any, names: tuple[str, ...] = ()) -> list[tuple[str, Any,
                                                                                      Any]]:
    """(`prefix.field`, value, default) of each field of a section (only `names`, if given)
    whose value is not its dataclass default."""
    out = []
    for f in fields(section):
        if names and f.name not in names:
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        value = getattr(section, f.name)
        if default is not MISSING and value != default:
            out.append((f"{prefix}.{f.name}", value, default))
    return out


def ignored_options(backend: Backend, options: list[tuple[str, Any, Any]]) -> list[str]:
    """Refusals of options (from `off_default`) that `backend` does not honour, naming the fix."""
    other = Backend.local if backend is Backend.slime else Backend.slime
    return [f"{key}={_override(value)}: backend={backend.value} ignores it; set "
            f"{key}={_override(default)} (its default) or backend={other.value}"
            for key, value, default in options]
