"""Process-group hygiene: initialising megatron's parallel state again in one process (the export
after training, many tests in one session) does not leave the previous groups and their gloo
threads alive.

    .venv/bin/python -m pytest tests/mcore/test_distributed.py -q
"""

from __future__ import annotations

import threading

import pytest
import torch

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a world of one on gloo")


def _layout(tp: int = 1):
    from swallow_train.models.config import ModelConfig
    from swallow_train.parallel import ParallelConfig, validate_layout

    model = ModelConfig(name="t", hidden_size=32, num_layers=1, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=8, ffn_hidden_size=64, vocab_size=128)
    return validate_layout(model, ParallelConfig(tp=tp), world_size=1, global_batch_size=2,
                           micro_batch_size=2, seq_length=16)


def _native_threads() -> int:
    """Threads of this process, gloo's native ones included (Linux)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_reinitialising_the_parallel_state_keeps_the_group_count() -> None:
    from swallow_train.mcore import distributed

    distributed.init_parallel_state(_layout(), seed=1)
    groups, threads = distributed.live_groups(), threading.active_count()
    assert groups > 10  # megatron made its groups (the count depends on its version)
    for _ in range(3):
        distributed.init_parallel_state(_layout(), seed=1)
    assert distributed.live_groups() == groups
    assert threading.active_count() <= threads  # Python threads; gloo's are native, counted below
    native = _native_threads()
    distributed.init_parallel_state(_layout(), seed=1)
    again = _native_threads()
    assert again <= native, f"{again - native} native threads more after one re-initialisation"


def test_the_world_survives_and_works() -> None:
    from megatron.core import parallel_state

    from swallow_train import collectives
    from swallow_train.mcore import distributed

    distributed.init_parallel_state(_layout(), seed=1)
    distributed.init_parallel_state(_layout(), seed=1)
    assert parallel_state.model_parallel_is_initialized()
    assert collectives.sum_floats([1.5, 2.0]) == [1.5, 2.0]
    assert collectives.sum_floats([3.0], group=parallel_state.get_data_parallel_group()) == [3.0]
