"""slime's train.py flags as data, in the style of `convert/names.py`: each `Flag` maps one field
of the RL recipe's sections to one flag with a named format (`Fmt`), optionally gated by another
field (`when`) or falling back to one (`fallback`); `Splice` inserts Megatron's model and layout
flags (`megatron_args`). `SLIME_FLAGS` is the order they are written in. The rendered flags were
checked against slime 624b824 with Megatron-LM 1dcf0da (all nine launch/*/rl_*.sh pass slime's
own parse_args): add a flag here, never by hand.

    from swallow_train.rl.slime_flags import SLIME_FLAGS, render_flags
    words = render_flags(SLIME_FLAGS, {"rollout": recipe.rollout, ..., "job": derived})

Sources: the sections `data rollout loss optim evaluation checkpoint reward slime cluster
logging`, and `job`, the values `SlimeConfig.render` derives (paths, actor nodes, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from swallow_train.rl.slime_job import JobPath, Word

ZERO_STD_FILTER = "slime.rollout.filter_hub.dynamic_sampling_filters.check_reward_nonzero_std"


class Fmt(Enum):
    """How a field's value becomes the flag's words; a value of None leaves the flag out."""

    text = "text"
    """str(value)."""
    num = "num"
    """A float as `{:g}` writes it: 1e-06, 0.28, 1."""
    enum = "enum"
    """An Enum's value."""
    switch = "switch"
    """The bare flag when the value is true (slime's store_true flags)."""
    positive = "positive"
    """str(value), left out unless > 0 (slime's -1 / 0 'off')."""
    path = "path"
    """A path of the job (`JobPath`: `${PWD}/...` for Ray's workers when relative)."""
    words = "words"
    """Several values (a tuple of words), as nargs+ flags take them."""
    thinking = "thinking"
    """A bool as the chat template's kwargs, JSON: `{"enable_thinking": true}`."""


@dataclass(frozen=True)
class Flag:
    flag: str
    source: str | None = None
    """Dotted field (`rollout.seed`, `job.start`); None: the bare flag, or `const`."""
    fmt: Fmt = Fmt.text
    const: str | None = None
    """A constant value (with `source` None)."""
    fallback: str | None = None
    """The field used when `source` is None (e.g. slime.ref_load -> job.start)."""
    when: str | None = None
    """A field whose truth writes the flag at all (its group: evaluation, KL, ...)."""


@dataclass(frozen=True)
class Splice:
    """A field holding a list of flags, written as they are."""

    source: str


def _flags(when: str, *flags: Flag) -> tuple[Flag, ...]:
    """`flags` of one group, all gated by `when`."""
    return tuple(replace(f, when=when) for f in flags)


SLIME_FLAGS: tuple[Flag | Splice, ...] = (
    Flag("--actor-num-nodes", "job.actor_nodes"),
    Flag("--actor-num-gpus-per-node", "cluster.gpus_per_node"),
    Flag("--colocate", "slime.colocate", Fmt.switch),
    Flag("--rollout-num-gpus", "slime.rollout_num_gpus"),
    Flag("--rollout-num-gpus-per-engine", "slime.rollout_num_gpus_per_engine"),
    Flag("--num-gpus-per-node", "job.num_gpus_per_node"),
    Splice("job.model_args"),
    # checkpoints
    Flag("--hf-checkpoint", "job.start", Fmt.path),
    Flag("--ref-load", "slime.ref_load", Fmt.path, fallback="job.start"),
    Flag("--load", "job.save_dir", Fmt.path),
    Flag("--save", "job.save_dir", Fmt.path),
    Flag("--save-interval", "checkpoint.save_interval"),
    # prompts (the JSONL of `swallow-train prepare-rl`) and the reward
    Flag("--prompt-data", "data.train_path", Fmt.path),
    Flag("--input-key", const="prompt"),
    Flag("--label-key", const="label"),
    Flag("--metadata-key", const="metadata"),
    Flag("--apply-chat-template"),
    Flag("--apply-chat-template-kwargs", "rollout.enable_thinking", Fmt.thinking),
    Flag("--rollout-shuffle", "rollout.shuffle", Fmt.switch),
    Flag("--rollout-seed", "rollout.seed"),
    Flag("--custom-rm-path", "reward.function_path"),
    Flag("--group-rm", "reward.group_rm", Fmt.switch),
    # rollout
    Flag("--num-rollout", "rollout.num_rollout"),
    Flag("--rollout-batch-size", "rollout.rollout_batch_size"),
    Flag("--n-samples-per-prompt", "rollout.n_samples_per_prompt"),
    Flag("--rollout-max-response-len", "rollout.max_response_len"),
    Flag("--rollout-max-prompt-len", "rollout.max_prompt_len"),
    Flag("--rollout-temperature", "rollout.temperature", Fmt.num),
    Flag("--rollout-top-p", "rollout.top_p", Fmt.num),
    Flag("--rollout-top-k", "rollout.top_k", Fmt.positive),
    Flag("--global-batch-size", "loss.global_batch_size"),
    Flag("--num-steps-per-rollout", "loss.steps_per_rollout"),
    Flag("--balance-data", "slime.balance_data", Fmt.switch),
    *_flags("slime.zero_std_filter",
            Flag("--dynamic-sampling-filter-path", const=ZERO_STD_FILTER),
            Flag("--over-sampling-batch-size", "slime.over_sampling_batch_size",
                 fallback="rollout.rollout_batch_size")),
    *_flags("evaluation.interval",
            Flag("--eval-interval", "evaluation.interval"),
            Flag("--eval-prompt-data", "job.eval_prompt_data", Fmt.words),
            Flag("--n-samples-per-eval-prompt", "evaluation.n_samples_per_prompt"),
            Flag("--eval-max-response-len", "evaluation.max_response_len",
                 fallback="rollout.max_response_len"),
            Flag("--eval-temperature", "evaluation.temperature", Fmt.num)),
    Splice("job.parallel_args"),
    *_flags("slime.dynamic_batch",
            Flag("--use-dynamic-batch-size"),
            Flag("--max-tokens-per-gpu", "slime.max_tokens_per_gpu")),
    # the policy loss
    Flag("--advantage-estimator", "loss.advantage_estimator", Fmt.enum),
    Flag("--disable-grpo-std-normalization", "job.disable_grpo_std", Fmt.switch),
    Flag("--normalize-advantages", "loss.normalize_advantages", Fmt.switch),
    *_flags("loss.use_kl",
            Flag("--use-kl-loss"),
            Flag("--kl-loss-coef", "loss.kl_coef", Fmt.num),
            Flag("--kl-loss-type", "loss.kl_type", Fmt.enum)),
    Flag("--eps-clip", "loss.eps_clip", Fmt.num),
    Flag("--eps-clip-high", "loss.eps_clip_high", Fmt.num),
    Flag("--calculate-per-token-loss", "loss.per_token_loss", Fmt.switch),
    # the optimizer: Adam at a constant learning rate
    Flag("--optimizer", const="adam"),
    Flag("--lr", "optim.lr", Fmt.num),
    Flag("--lr-decay-style", const="constant"),
    Flag("--weight-decay", "optim.weight_decay", Fmt.num),
    Flag("--adam-beta1", "optim.adam_beta1", Fmt.num),
    Flag("--adam-beta2", "optim.adam_beta2", Fmt.num),
    Flag("--adam-eps", "optim.adam_eps", Fmt.num),
    Flag("--clip-grad", "optim.clip_grad", Fmt.num),
    *_flags("slime.optimizer_cpu_offload",
            Flag("--optimizer-cpu-offload"),
            Flag("--overlap-cpu-optimizer-d2h-h2d"),
            Flag("--use-precision-aware-optimizer")),
    # W&B
    *_flags("job.wandb",
            Flag("--use-wandb"),
            Flag("--wandb-mode", "logging.wandb_mode", Fmt.enum),
            Flag("--wandb-project", "logging.wandb_project"),
            Flag("--wandb-group", "logging.wandb_group", fallback="job.run_name"),
            Flag("--wandb-team", "logging.wandb_entity")),
    # SGLang and Megatron's numerics
    Flag("--sglang-mem-fraction-static", "slime.sglang_mem_fraction_static", Fmt.num),
    Flag("--attention-dropout", const="0.0"),
    Flag("--hidden-dropout", const="0.0"),
    Flag("--accumulate-allreduce-grads-in-fp32"),
    Flag("--attention-softmax-in-fp32"),
    Flag("--attention-backend", const="flash"),
)
"""train.py's flags, in the order they are written (then `slime.extra_args`)."""


def value_of(sources: Mapping[str, Any], dotted: str) -> Any:
    """`section.field` (or `job.key`) of the sources."""
    root, *names = dotted.split(".")
    value = sources[root]
    for name in names:
        value = value[name] if isinstance(value, Mapping) else getattr(value, name)
    return value


def _words(flag: Flag, value: Any) -> list[Word]:
    match flag.fmt:
        case Fmt.switch:
            return [flag.flag] if value else []
        case Fmt.positive:
            return [flag.flag, str(value)] if value > 0 else []
        case Fmt.num:
            return [flag.flag, f"{value:g}"]
        case Fmt.enum:
            return [flag.flag, value.value]
        case Fmt.path:
            return [flag.flag, value if isinstance(value, str | JobPath) else JobPath.of(value)]
        case Fmt.words:
            return [flag.flag, *value]
        case Fmt.thinking:
            return [flag.flag, json.dumps({"enable_thinking": bool(value)})]
    return [flag.flag, str(value)]


def render_flags(table: tuple[Flag | Splice, ...], sources: Mapping[str, Any]) -> list[Word]:
    """The words of `table` for these sources."""
    out: list[Word] = []
    for row in table:
        if isinstance(row, Splice):
            out += value_of(sources, row.source)
        elif row.when and not value_of(sources, row.when):
            continue
        elif row.source is None:
            out += [row.flag] if row.const is None else [row.flag, row.const]
        else:
            value = value_of(sources, row.source)
            if value is None and row.fallback:
                value = value_of(sources, row.fallback)
            if value is not None:
                out += _words(row, value)
    return out
