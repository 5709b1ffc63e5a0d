"""Self-tests of the megatron-core paths a recipe uses, on tiny shapes in a temporary directory:
the HF export against `transformers`, packed SFT, TE vs the local spec, TP=2 / CP=2 parity,
checkpoint + resume of the training loop, and the tokens/s of the 8B layer shape.

    swallow-train doctor cpt model=qwen3_8b cluster=abci3        # runs them via doctor

Every test builds the same seeded tiny Qwen3 (hidden 64, 2 layers, vocabulary 1,024, every
weight random, norms included, so that a weight in the wrong place moves the numbers), writes it
once as HF safetensors, and loads that into each model it compares (the one format every spec
and layout reads). fp32 on CPU; bf16 where the GPU path needs it (TE's THD and CP attention).
"""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
from pathlib import Path

import torch

from swallow_train.check_report import Check, failed, skipped
from swallow_train.mcore.selftest import quietly, tiny_case

TRAIN_STAGES = ("cpt", "sft")


def selftests(recipe, stage: str, *, workdir: Path | None = None) -> list[Check]:
    """The self-tests of the paths `recipe` uses (see the module docstring), each gated on what
    this machine can run; SKIP lines say why."""
    from swallow_train.mcore import selftest_checks as sc
    from swallow_train.mcore.selftest_parallel import parity_rows
    from swallow_train.mcore.selftest_train import resume_check

    cuda = torch.cuda.is_available()
    te = cuda and importlib.util.find_spec("transformer_engine") is not None
    if cuda and not te:
        return [failed("self-tests", "transformer-engine is not installed on this GPU node (see "
                       "its line): the GPU paths cannot run")]
    gpus = torch.cuda.device_count() if cuda else 0
    train = stage in TRAIN_STAGES
    rows: list[Check] = []
    with contextlib.ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="swallow-selftest-")))
        tiny = tiny_case(root)
        rows += quietly("self-test HF export", lambda: sc.export_parity(tiny, recipe, root))
        if not train:
            return rows
        rows += (quietly("self-test TE vs local", lambda: sc.te_vs_local(tiny)) if te else
                 [skipped("self-test TE vs local", "GPU with transformer-engine only")])
        if stage == "sft":
            rows += quietly("self-test packed SFT", lambda: sc.packed_vs_unpacked(tiny))
        rows += parity_rows(tiny, recipe.parallel, gpus=gpus, te=te)
        rows += quietly("self-test resume", lambda: resume_check(root / "train"))
        rows += (quietly("self-test tokens/s", sc.tokens_per_second) if te else
                 [skipped("self-test tokens/s", "GPU with transformer-engine only")])
    return rows
