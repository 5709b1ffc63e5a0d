"""Typed sections of the eval recipe (`recipes/eval.yaml`, the `eval_suite/` group).

    swallow-train eval --dry-run model=qwen3_8b target=sft eval_suite=swallow_posttrained
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

THINK_END = "</think>"
"""Where a Qwen3 response's thinking ends; lm-eval's own metrics read what follows it."""


class Backend(Enum):
    """How lm-eval runs the model."""

    auto = "auto"
    """vllm when CUDA is available, hf otherwise."""
    hf = "hf"
    """transformers (`--model hf`): float32 on CPU, bfloat16 on a GPU."""
    vllm = "vllm"
    """vLLM (`--model vllm`), for clusters."""


class SuiteKind(Enum):
    tiny = "tiny"
    """Small local tasks whose JSONL and task YAMLs this package writes (no hub, no network)."""
    harness = "harness"
    """lm-eval's own tasks, by name (their datasets come from the hub or its cache)."""


@dataclass(kw_only=True)
class SuiteConfig:
    """What is evaluated and how: the tasks and the protocol (few-shot or zero-shot, chat
    template, thinking). One preset per file in `recipes/eval_suite/`."""

    name: str
    """Results go to `runs/<name>/<target>/eval/<suite name>/`."""
    kind: SuiteKind
    tasks: list[str]
    """lm-eval task or group names (a tiny suite: the tasks it generates, see tiny_suite.py)."""
    math: dict[str, str] = field(default_factory=dict)
    """Math tasks scored with this project's verifier (the RL reward's), pass@1 of `samples`:
    task (or group, which covers its subtasks) -> the field of the logged doc that holds the
    reference answer (text after `####`, as in GSM8K, is taken)."""
    num_fewshot: int | None = None
    """Few-shot examples for every task; None: each task's own default."""
    chat_template: bool = False
    """Apply the tokenizer's chat template (post-trained models)."""
    thinking: bool = False
    """Let a Qwen3 model think (the template's default). false: `enable_thinking=False`, the
    empty think block is prefilled. true: lm-eval's metrics read the text after </think>."""
    stop: list[str] | None = None
    """Stop strings of every generation task (`until`); None: each task's own. A thinking
    model must not stop on "\\n" (it would stop right after `<think>`)."""
    max_gen_toks: int | None = None
    """Token budget of a generation; None: each task's own."""
    sampling: bool = False
    """Sample with `generation` (the model card's settings); false: greedy."""
    samples: int = 1
    """k: responses per prompt of a math task (pass@1 is their mean)."""
    limit: int | None = None
    """At most this many documents per task (for quick checks); None: all."""
    tiny_items: int = 24
    """Documents per tiny task other than math (tiny suites only)."""
    tiny_math_items: int = 32
    """Held-out tiny math prompts (tiny suites only): at most the RL recipe's data.eval_size,
    so that no prompt was trained on in SFT or RL."""
    tiny_split_seed: int = 0
    """The seed of the tiny math train/held-out split: the tiny RL recipe's data.seed."""


@dataclass(kw_only=True)
class GenerationConfig:
    """Sampling settings when the suite samples (`eval_suite.sampling=true`): Qwen3's model
    card values by default."""

    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    min_p: float = 0.0


@dataclass(kw_only=True)
class VLLMConfig:
    """The vLLM engine (backend=vllm), one node."""

    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    """Independent engines (lm-eval runs them with Ray); TP x DP GPUs in all."""
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 40960
    """Prompt + generation tokens (32,768 generated + few-shot prompts)."""


@dataclass(kw_only=True)
class VerifyConfig:
    """The math verifier's process pool (swallow_train.rl.verify.PooledVerifier)."""

    workers: int = 2
    timeout_s: float = 10.0
    """Hard deadline of one check; a check that misses it scores 0 (as in the RL reward)."""
