"""The allowed range of every numeric recipe field, checked when a recipe is composed.

`compose()` walks the typed recipe and checks each `int` / `float` field against its `Range` in
`RANGES` (keyed by the dataclass's `module:Class`), so a value such as `train.seq_length=0` or
`cluster.nodes=-2` fails before anything runs, with the dotted key, the value and the fix:

    $ swallow-train cpt --dry-run train.seq_length=0
    swallow-train cpt: error: recipe 'cpt' has values out of range:
      - train.seq_length=0 must be >= 1 (tokens per training sequence): set train.seq_length
        to a value >= 1

`tests/reliability/test_values.py` walks every recipe dataclass and fails for a numeric field
without a range here, so a new field cannot skip the check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class Range:
    """lo <= value <= hi (`lo_open` / `hi_open`: strict); None: unbounded on that side."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    what: str = ""
    """What the value means, shown in the message."""

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))

    def describe(self) -> str:
        lo = None if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo:g}"
        hi = None if self.hi is None else f"{'<' if self.hi_open else '<='} {self.hi:g}"
        if lo and hi:
            return (f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}"
                    f"{')' if self.hi_open else ']'}")
        return lo or hi or "any number"


def at_least(lo: float, what: str) -> Range:
    return Range(lo=lo, what=what)


def positive(what: str) -> Range:
    return Range(lo=0, lo_open=True, what=what)


def fraction(what: str, *, lo_open: bool = False, hi_open: bool = True) -> Range:
    return Range(lo=0, hi=1, lo_open=lo_open, hi_open=hi_open, what=what)


def seed(what: str = "random seed") -> Range:
    return Range(lo=0, hi=SEED_MAX, what=what)


def _ranges() -> dict[str, dict[str, Range]]:
    return {
        "swallow_train.models.config:ModelConfig": {
            "hidden_size": at_least(1, "hidden width"), "num_layers": at_least(1, "layers"),
            "num_attention_heads": at_least(1, "query heads"),
            "num_key_value_heads": at_least(1, "key/value heads"),
            "head_dim": at_least(1, "per-head width"),
            "ffn_hidden_size": at_least(1, "dense MLP width"),
            "vocab_size": at_least(1, "vocabulary"),
            "max_position_embeddings": at_least(1, "longest position"),
            "rope_theta": positive("RoPE base"), "rms_norm_eps": positive("RMSNorm epsilon"),
            "num_experts": at_least(0, "0: dense"), "moe_router_topk": at_least(1, "experts "
                                                                                "per token"),
            "moe_ffn_hidden_size": at_least(0, "expert MLP width"),
            "moe_aux_loss_coeff": at_least(0, "load-balancing loss weight"),
            "init_std": positive("std of the random init"),
        },
        "swallow_train.training:TrainConfig": {
            "global_batch_size": at_least(1, "sequences (SFT: conversations) per step"),
            "seq_length": at_least(1, "tokens per training sequence"),
            "train_steps": at_least(0, "optimizer steps; 0: one epoch, SFT only"),
            "micro_batch_size": at_least(1, "sequences per forward pass"),
            "seed": seed(), "log_interval": at_least(1, "steps between log rows"),
            "eval_interval": at_least(0, "steps between evaluations; 0: never"),
            "eval_steps": at_least(1, "batches per evaluation"),
            "exit_after": at_least(1, "steps before a planned exit; null: never"),
        },
        "swallow_train.training:OptimConfig": {
            "lr": positive("peak learning rate"), "min_lr": at_least(0, "final learning rate"),
            "warmup_steps": at_least(0, "linear warmup steps"),
            "weight_decay": at_least(0, "AdamW weight decay"),
            "adam_beta1": fraction("Adam beta1"), "adam_beta2": fraction("Adam beta2"),
            "adam_eps": positive("Adam epsilon"), "clip_grad": at_least(0, "0: no clipping"),
        },
        "swallow_train.training:CheckpointConfig": {
            "save_interval": at_least(0, "steps between checkpoints; 0: only at the end"),
            "keep_last": at_least(1, "checkpoints kept"),
        },
        "swallow_train.parallel:ParallelConfig": {
            "tp": at_least(1, "tensor parallel size"), "pp": at_least(1, "pipeline size"),
            "vpp": at_least(1, "virtual stages; null: off"),
            "cp": at_least(1, "context parallel size"), "ep": at_least(1, "expert parallel size"),
            "etp": at_least(1, "expert tensor parallel size; null: = tp"),
        },
        "swallow_train.cluster:ClusterConfig": {
            "gpus_per_node": at_least(1, "GPUs (processes) per node"),
            "nodes": at_least(1, "nodes of the job"), "cpus_per_node": at_least(1, "CPU cores"),
            "save_margin": at_least(0, "seconds kept for the last checkpoint"),
            "max_requeues": at_least(0, "requeues before giving up"),
            "cpu_cores": at_least(1, "cores of a CPU node for the prepare jobs"),
            "prepare_tasks": at_least(1, "array tasks of the prepare job"),
        },
        "swallow_train.metrics.config:LoggingConfig": {
            "plot_interval": at_least(0, "steps between curve redraws; 0: only at the end"),
        },
        "swallow_train.data.config:CPTDataConfig": {
            "num_workers": at_least(1, "tokenizer processes"),
            "docs_per_shard": at_least(1, "documents per shard"),
            "batch_docs": at_least(1, "documents per worker batch"),
            "num_tasks": at_least(1, "prepare array tasks"),
            "task_index": at_least(0, "this task's number, < data.num_tasks"),
        },
        "swallow_train.data.decontam:DecontamConfig": {
            "ja_n": at_least(5, "characters per Japanese n-gram"),
            "en_n": at_least(3, "words per n-gram"),
            "min_overlap": at_least(1, "shared n-grams that make a text contaminated"),
            "boilerplate_texts": at_least(1, "eval texts above which an n-gram is template text"),
        },
        "swallow_train.data.config:SFTDataConfig": {
            "num_workers": at_least(1, "worker processes"), "seed": seed("packing seed"),
            "pad_to_multiple": at_least(1, "sample padding multiple"),
            "batch_conversations": at_least(1, "conversations per worker batch"),
        },
        "swallow_train.rl.config:RolloutConfig": {
            "num_rollout": at_least(1, "RL iterations"),
            "rollout_batch_size": at_least(1, "prompts per rollout"),
            "n_samples_per_prompt": at_least(1, "responses per prompt"),
            "max_response_len": at_least(1, "tokens per response"),
            "max_prompt_len": at_least(1, "tokens per prompt"),
            "temperature": at_least(0, "sampling temperature"),
            "top_p": fraction("nucleus mass; 1: off", lo_open=True, hi_open=False),
            "top_k": at_least(-1, "-1: off"), "seed": seed(),
        },
        "swallow_train.rl.config:PolicyLossConfig": {
            "global_batch_size": at_least(1, "samples per optimizer step"),
            "steps_per_rollout": at_least(1, "optimizer steps per rollout"),
            "eps_clip": at_least(0, "lower ratio clip"),
            "eps_clip_high": at_least(0, "upper ratio clip"),
            "kl_coef": at_least(0, "KL loss weight"),
        },
        "swallow_train.rl.config:RLOptimConfig": {
            "lr": positive("learning rate"), "weight_decay": at_least(0, "weight decay"),
            "adam_beta1": fraction("Adam beta1"), "adam_beta2": fraction("Adam beta2"),
            "adam_eps": positive("Adam epsilon"), "clip_grad": at_least(0, "0: no clipping"),
        },
        "swallow_train.rl.config:RLEvalConfig": {
            "interval": at_least(0, "rollouts between evaluations; 0: never"),
            "n_samples_per_prompt": at_least(1, "samples per eval prompt"),
            "max_response_len": at_least(1, "tokens per eval response; null: rollout's"),
            "temperature": at_least(0, "eval sampling temperature"),
        },
        "swallow_train.rl.config:RLCheckpointConfig": {
            "save_interval": at_least(1, "rollouts between checkpoints"),
            "keep_last": at_least(1, "checkpoints kept"),
        },
        "swallow_train.rl.prompts:RLDataConfig": {
            "eval_size": at_least(0, "held-out prompts"),
            "max_prompts": at_least(1, "prompts kept; null: all"), "seed": seed("split seed"),
        },
        "swallow_train.rl.reward:RewardConfig": {
            "workers": at_least(1, "verifier processes"),
            "timeout_s": positive("seconds per answer check"),
        },
        "swallow_train.rl.slime:SlimeConfig": {
            "rollout_num_gpus": at_least(1, "rollout GPUs; null: colocated"),
            "rollout_num_gpus_per_engine": at_least(1, "GPUs per SGLang engine"),
            "sglang_mem_fraction_static": fraction("SGLang GPU memory share", lo_open=True),
            "max_tokens_per_gpu": at_least(1, "dynamic batch tokens per GPU"),
            "over_sampling_batch_size": at_least(1, "prompts sampled per rollout"),
        },
        "swallow_train.rl.grpo:LocalConfig": {
            "exit_after": at_least(1, "rollouts before a planned exit; null: never"),
            "eval_prompts": at_least(1, "held-out prompts per evaluation"),
        },
        **_eval_ranges(),
        "swallow_train.quant.config:SamplingConfig": {
            "temperature": positive("sampling temperature"),
            "top_p": fraction("nucleus mass; 1: off", lo_open=True, hi_open=False),
            "top_k": at_least(-1, "-1: off"),
        },
        "swallow_train.quant.config:CalibrationConfig": {
            "num_samples": at_least(1, "calibration samples"),
            "heldout": at_least(0, "held-out validated generations"),
            "max_seq_length": at_least(1, "tokens per calibration sample"),
            "max_new_tokens": at_least(1, "tokens per generated response"),
            "max_prompt_len": at_least(1, "tokens per prompt"),
            "samples_per_prompt": at_least(1, "responses per prompt"),
            "max_prompts": at_least(1, "train prompts tried; null: all"),
            "batch_size": at_least(1, "prompts per generation call"),
            "min_samples": at_least(1, "fewest validated generations"), "seed": seed(),
        },
        "swallow_train.quant.config:AWQConfig": {
            "num_bits": Range(lo=2, hi=8, what="weight bits"),
            "group_size": at_least(1, "input channels per scale"),
            "n_grid": at_least(3, "AWQ grid points (duo scaling needs 3)"),
        },
        "swallow_train.quant.config:GateConfig": {
            "max_pass_at_1_drop": Range(lo=0, hi=1, what="largest pass@1 fall (absolute)"),
            "max_perplexity_ratio": at_least(1, "largest quantized/bf16 perplexity"),
            "eval_prompts": at_least(1, "eval prompts; null: all"),
            "samples_per_prompt": at_least(1, "samples per eval prompt (k)"),
            "max_new_tokens": at_least(1, "tokens per pass@1 sample"), "seed": seed(),
        },
        "swallow_train.stages.pipeline:PipelineRecipe": {
            "nproc": at_least(1, "processes per training stage"),
            "max_new_tokens": at_least(1, "tokens of the final chat check"),
        },
    }


def _eval_ranges() -> dict[str, dict[str, Range]]:
    e = "swallow_train.evaluation."
    return {
        e + "config:SuiteConfig": {
            "num_fewshot": at_least(0, "shots; null: each task's"), "samples": at_least(1, "k"),
            "max_gen_toks": at_least(1, "new tokens; null: each task's"),
            "limit": at_least(1, "docs per task"), "tiny_items": at_least(1, "docs per task"),
            "tiny_math_items": at_least(1, "held-out prompts"), "tiny_split_seed": seed()},
        e + "config:GenerationConfig": {
            "temperature": at_least(0, "sampling temperature"), "top_k": at_least(-1, "<= 0: off"),
            "top_p": fraction("nucleus mass", lo_open=True, hi_open=False),
            "min_p": fraction("0: off", hi_open=False)},
        e + "config:VLLMConfig": {
            "tensor_parallel_size": at_least(1, "GPUs per engine"),
            "data_parallel_size": at_least(1, "engines"), "max_model_len": at_least(1, "tokens"),
            "gpu_memory_utilization": fraction("GPU memory share", lo_open=True, hi_open=False)},
        e + "config:VerifyConfig": {"workers": at_least(1, "verifier processes"),
                                    "timeout_s": positive("seconds per answer check")},
        e + "recipe:EvalRecipe": {"batch_size": at_least(1, "requests per pass"), "seed": seed()},
    }


RANGES: dict[str, dict[str, Range]] = _ranges()


def class_key(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def is_numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def range_errors(obj: Any, path: str = "") -> list[str]:
    """Every numeric field of the dataclass tree `obj` outside its range, as
    `key=value must be >= 1 (meaning): set key to a value >= 1`."""
    errors: list[str] = []
    if not is_dataclass(obj) or isinstance(obj, type):
        return errors
    table = RANGES.get(class_key(type(obj)), {})
    for f in fields(obj):
        value = getattr(obj, f.name)
        key = f"{path}{f.name}"
        if is_dataclass(value):
            errors += range_errors(value, key + ".")
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                errors += range_errors(item, f"{key}[{i}].")
        elif isinstance(value, dict):
            for name, item in value.items():
                errors += range_errors(item, f"{key}.{name}.")
        elif is_numeric(value):
            bound = table.get(f.name)  # every numeric field has one (tests/reliability)
            if bound is not None and not bound.contains(value):
                meaning = f" ({bound.what})" if bound.what else ""
                errors.append(f"{key}={value!r} must be {bound.describe()}{meaning}: "
                              f"set {key} to a value {bound.describe()}")
    return errors
