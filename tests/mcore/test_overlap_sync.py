"""overlap_grad_reduce + overlap_param_gather (gloo, DP=2) train exactly as without them, and
`params_synced` (used before every save, evaluation and the HF export) gives each rank the last
update, which the deferred all-gather would otherwise leave stale between steps."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.distributed import run_distributed

pytestmark = pytest.mark.dist


def _run(rank: int, overlap: bool) -> dict:
    from swallow_train.config import compose
    from swallow_train.mcore import distributed
    from swallow_train.mcore.model import build_model, transformer_config
    from swallow_train.mcore.optim import build_optimizer, params_synced, wrap_for_training
    from swallow_train.mcore.step import train_step
    from swallow_train.parallel import validate_layout

    recipe = compose("cpt", ["model=tiny_dense"])
    model = replace(recipe.model, vocab_size=256)  # the tiny shape without its 151,936 rows
    par = replace(recipe.parallel, overlap_grad_reduce=overlap, overlap_param_gather=overlap)
    layout = validate_layout(model, par, world_size=2, global_batch_size=4,
                             micro_batch_size=2, seq_length=16)
    distributed.init_parallel_state(layout, seed=0)
    config = transformer_config(model, par, layout, precision=recipe.train.precision,
                                for_training=True)
    chunks = wrap_for_training(build_model(model, config), config, par)
    optimizer, scheduler = build_optimizer(chunks, config, recipe.optim, par, train_steps=10)
    gen = torch.Generator().manual_seed(rank)

    def step() -> float:
        ids = torch.randint(0, 128, (2, 16), generator=gen)
        batch = {"tokens": ids, "labels": ids, "loss_mask": torch.ones(2, 16),
                 "position_ids": torch.arange(16)[None].expand(2, -1)}
        return train_step(chunks, optimizer, scheduler, [batch]).loss

    losses = [step(), step()]
    before = {n: p.detach().clone() for n, p in chunks[0].named_parameters()}
    with params_synced(chunks):
        synced = {n: p.detach().clone() for n, p in chunks[0].named_parameters()}
    losses.append(step())  # the hooks are back: training goes on as before
    stale = sorted(n for n in before if not torch.equal(before[n], synced[n]))
    return {"losses": losses, "synced": synced, "stale": stale}


def _worker(rank: int) -> dict[bool, dict]:
    """Both runs in the same two processes (same data), plain first."""
    from swallow_train.mcore import cpu_runtime

    with cpu_runtime.active():  # CPU: megatron's CUDA calls to the CPU
        return {overlap: _run(rank, overlap) for overlap in (False, True)}


def test_overlap_trains_the_same_and_syncs_before_save() -> None:
    runs = run_distributed(_worker, world_size=2)
    plain, overlap = [r[False] for r in runs], [r[True] for r in runs]
    for rank in (0, 1):
        assert overlap[rank]["losses"] == plain[rank]["losses"]
        assert plain[rank]["stale"] == []  # nothing deferred without the overlap
        # with it, each rank holds stale weights until the sync: those the other rank updated
        assert len(overlap[rank]["stale"]) > 0
        synced, reference = overlap[rank]["synced"], plain[rank]["synced"]
        assert synced.keys() == reference.keys()
        for name in reference:
            assert torch.equal(synced[name], reference[name]), name
    assert overlap[0]["stale"] != overlap[1]["stale"]  # each misses the other's shard
