"""Run a suite through lm-evaluation-harness's Python API (`lm_eval.simple_evaluate`): the HF
backend on CPU (float32), the vLLM backend on GPUs, the suite's protocol (few-shot, chat
template, thinking, stop strings) and k samples per math prompt (task `repeats`).

    out = run_harness(HarnessRun(hf="runs/tiny/sft/hf", tokenizer="runs/tiny/sft/hf",
                                 suite=suite, generation=GenerationConfig(), backend=Backend.hf,
                                 vllm=VLLMConfig(), batch_size=8, seed=0,
                                 include_path=Path("runs/tiny/sft/eval/tiny/tasks")))
    out["results"]["tiny_mc_ja"]["acc,none"]; out["samples"]["tiny_math"][0]["resps"]
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swallow_train.config import RecipeError
from swallow_train.evaluation.config import (
    THINK_END,
    Backend,
    GenerationConfig,
    SuiteConfig,
    VLLMConfig,
)
from swallow_train.evaluation.math_score import math_key

OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def go_offline() -> None:
    """No hub, no network: the offline flags in the environment, and in `datasets` and
    `huggingface_hub` when they were imported already (they read the flags at import)."""
    for name in OFFLINE_ENV:
        os.environ[name] = "1"
    if "datasets.config" in sys.modules:
        sys.modules["datasets.config"].HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
    if "huggingface_hub.constants" in sys.modules:
        sys.modules["huggingface_hub.constants"].HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_backend(backend: Backend) -> Backend:
    """`auto` -> vllm with CUDA, hf otherwise; vllm without the package is refused."""
    if backend is Backend.auto:
        backend = Backend.vllm if cuda_available() else Backend.hf
        if backend is Backend.vllm and importlib.util.find_spec("vllm") is None:
            raise RecipeError("backend=auto picked vllm (CUDA is available) but vllm is not "
                              "installed: pip install 'lm-eval[vllm]', or set backend=hf")
    elif backend is Backend.vllm and importlib.util.find_spec("vllm") is None:
        raise RecipeError("backend=vllm but vllm is not installed: pip install "
                          "'lm-eval[vllm]', or set backend=hf")
    return backend


@dataclass(kw_only=True)
class HarnessRun:
    """Everything one lm-eval run needs (built from the eval recipe by the stage)."""

    hf: str
    """The checkpoint: an HF directory or hub id."""
    tokenizer: str
    suite: SuiteConfig
    generation: GenerationConfig
    backend: Backend
    """Resolved: hf or vllm."""
    vllm: VLLMConfig
    batch_size: int
    seed: int
    include_path: Path | None = None
    """A directory of task YAMLs (the tiny suite); then lm-eval's own tasks are not indexed."""


def model_args(run: HarnessRun) -> dict[str, Any]:
    """lm-eval's `model_args` for the backend: the checkpoint, its tokenizer (and so its chat
    template), dtype, and how thinking is handled."""
    args: dict[str, Any] = {"pretrained": run.hf, "tokenizer": run.tokenizer}
    if run.suite.chat_template:
        if run.suite.thinking:
            args["think_end_token"] = THINK_END  # lm-eval's metrics read the final answer
        else:
            args["enable_thinking"] = False  # the template prefills an empty think block
    if run.backend is Backend.hf:
        cuda = cuda_available()
        args |= {"dtype": "bfloat16" if cuda else "float32", "device": "cuda" if cuda else "cpu",
                 "sampling_seed": run.seed}
    else:
        v = run.vllm
        args |= {"dtype": "auto", "tensor_parallel_size": v.tensor_parallel_size,
                 "data_parallel_size": v.data_parallel_size, "seed": run.seed,
                 "gpu_memory_utilization": v.gpu_memory_utilization,
                 "max_model_len": v.max_model_len}
    return args


def gen_kwargs(suite: SuiteConfig, gen: GenerationConfig) -> dict[str, Any]:
    """Generation settings that override every generation task's own: greedy or the model
    card's sampling, and the suite's stop strings and token budget when it sets them."""
    if suite.sampling:
        out: dict[str, Any] = {"do_sample": True, "temperature": gen.temperature,
                               "top_p": gen.top_p, "top_k": gen.top_k}
        if gen.min_p > 0:
            out["min_p"] = gen.min_p
    else:
        out = {"do_sample": False, "temperature": 0.0}
    if suite.stop is not None:
        out["until"] = list(suite.stop)
    if suite.max_gen_toks is not None:
        out["max_gen_toks"] = suite.max_gen_toks
    return out


def load_tasks(manager: Any, suite: SuiteConfig) -> list[Any]:
    """The suite's tasks and groups as lm-eval objects, math tasks set to k `repeats`."""
    objects: list[Any] = []
    for name in suite.tasks:
        try:
            loaded = manager.load(name)
        except (KeyError, ValueError) as exc:
            raise RecipeError(f"eval_suite.tasks: lm-eval has no task {name!r} ({exc}): fix "
                              f"the name in recipes/eval_suite/{suite.name}.yaml (`lm_eval ls "
                              "tasks` lists them)") from None
        top = loaded["groups"].get(name) or loaded["tasks"].get(name)
        objects += [top] if top is not None else list(loaded["tasks"].values())
        for task_name, task in loaded["tasks"].items():
            math = math_key(task_name, suite.math) is not None
            if math and task.get_config("output_type") == "generate_until":
                task.set_config(key="repeats", value=suite.samples)
    return objects


def run_harness(run: HarnessRun) -> dict[str, Any]:
    """lm-eval's result dict (`results`, `configs`, ... and `samples` per task)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    include = run.include_path is not None
    manager = TaskManager(include_path=str(run.include_path) if include else None,
                          include_defaults=not include)
    suite = run.suite
    if run.backend is Backend.hf:
        from swallow_train.evaluation.hf_sampling import MODEL_NAME as model
    else:
        model = run.backend.value
    out = lm_eval.simple_evaluate(
        model=model, model_args=model_args(run), tasks=load_tasks(manager, suite),
        num_fewshot=suite.num_fewshot,
        batch_size="auto" if run.backend is Backend.vllm else run.batch_size,
        limit=suite.limit, log_samples=True, apply_chat_template=suite.chat_template,
        fewshot_as_multiturn=suite.chat_template, gen_kwargs=gen_kwargs(suite, run.generation),
        task_manager=manager, random_seed=run.seed, numpy_random_seed=run.seed,
        torch_random_seed=run.seed, fewshot_random_seed=run.seed)
    if out is None:  # only ranks > 0 of a multi-process lm-eval run get None
        raise RecipeError("lm-eval returned no results on this rank: run eval as one process")
    return dict(out)
