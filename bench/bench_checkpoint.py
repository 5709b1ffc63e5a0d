"""Checkpoint save and load: swallow-train's checkpointer against plain megatron
`dist_checkpointing.save/load` of the same state, in the same run (2 processes, gloo, CPU).

    .venv/bin/python bench/bench_checkpoint.py               # ~1 GB of model + optimizer state
    .venv/bin/python bench/bench_checkpoint.py --dir /scratch --repeats 3

Ours (`MegatronCheckpointer`): fully parallel save over the DP group, dp_reshardable optimizer
state, async (the writer runs in a background process while "training" goes on), then each rank
hashes the files it wrote (xxh3-128), rank 0 merges the manifest and publishes; load verifies
the manifest spread over the ranks, then a fully parallel load. Baselines: plain
`dist_checkpointing.save` / `load` (default strategy, fully_reshardable optimizer state, no
integrity check), and the previous implementation (the same plus a SHA-256 of every file on
rank 0 after the save and again before the load). Printed: seconds per phase (median) and the
ratios. "blocked" is the time the training loop waits for `save()`; "published" is until the
marker moved. On a 2-core machine the background writer competes with the timing loop, so
the async gain shows fully only on a real node.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.multiprocessing as mp

from swallow_train.mcore import cpu_runtime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build(hidden: int, layers: int, vocab: int):
    from swallow_train.config import compose
    from swallow_train.mcore import distributed
    from swallow_train.mcore.config import Precision
    from swallow_train.mcore.model import build_model, transformer_config
    from swallow_train.mcore.optim import build_optimizer, wrap_for_training
    from swallow_train.mcore.step import train_step
    from swallow_train.models.config import ModelConfig
    from swallow_train.parallel import ParallelConfig, validate_layout

    model = ModelConfig(name="bench", hidden_size=hidden, num_layers=layers,
                        num_attention_heads=hidden // 64, num_key_value_heads=hidden // 128,
                        head_dim=64, ffn_hidden_size=4 * hidden, vocab_size=vocab)
    parallel = ParallelConfig()
    layout = validate_layout(model, parallel, world_size=2, global_batch_size=2,
                             micro_batch_size=1, seq_length=32)
    distributed.init_parallel_state(layout, seed=0)
    recipe = compose("cpt", ["model=tiny_dense"])
    config = transformer_config(model, parallel, layout, precision=Precision.fp32)
    chunks = wrap_for_training(build_model(model, config), config, parallel)
    optimizer, scheduler = build_optimizer(chunks, config, recipe.optim, parallel, train_steps=10)
    ids = torch.randint(0, vocab, (1, 32))
    train_step(chunks, optimizer, scheduler, [{"tokens": ids, "labels": ids,
                                               "loss_mask": torch.ones(1, 32),
                                               "position_ids": torch.arange(32)[None]}])
    return chunks, optimizer, scheduler, layout


def _plain_state(chunks, optimizer, scheduler):
    from swallow_train.mcore.checkpoint_state import model_state

    model_sd = model_state(chunks)
    return model_sd, {**model_sd, "optimizer": optimizer.sharded_state_dict(
        model_sd, metadata={"distrib_optim_sharding_type": "fully_reshardable"}),
        "opt_param_scheduler": scheduler.state_dict()}


def _sha_all(directory: Path) -> None:
    from swallow_train.checkpoint_files import file_sha256

    for path in sorted(directory.rglob("*")):
        if path.is_file():
            file_sha256(path)


@cpu_runtime.active()  # CPU: megatron's CUDA calls to the CPU
def _worker(rank: int, port: int, root: str, args: argparse.Namespace, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    from megatron.core import dist_checkpointing

    from swallow_train import collectives
    from swallow_train.mcore.checkpoint import MegatronCheckpointer, TrainState
    from swallow_train.mcore.config import CheckpointConfig

    chunks, optimizer, scheduler, layout = _build(args.hidden, args.layers, args.vocab)
    times: dict[str, list[float]] = {}

    def timed(name: str, fn) -> None:
        collectives.barrier()
        start = time.perf_counter()
        fn()
        collectives.barrier()
        times.setdefault(name, []).append(time.perf_counter() - start)

    for repeat in range(args.repeats):
        base = Path(root) / f"r{repeat}"
        plain = base / "plain"
        if rank == 0:
            plain.mkdir(parents=True)
        collectives.barrier()
        _, sharded = _plain_state(chunks, optimizer, scheduler)
        timed("plain save", lambda sharded=sharded, plain=plain:
              dist_checkpointing.save(sharded, str(plain)))
        timed("previous: + rank-0 SHA-256", lambda plain=plain:
              _sha_all(plain) if rank == 0 else None)
        ckpt = MegatronCheckpointer(base / "ours", CheckpointConfig(save_interval=1))
        state = TrainState(step=1, layout=asdict(layout))
        blocked = time.perf_counter()
        ckpt.save(chunks, optimizer, scheduler, state)
        blocked = time.perf_counter() - blocked
        timed("ours: wait until published", ckpt.wait)
        times.setdefault("ours: blocked in save()", []).append(blocked)
        times.setdefault("ours: save -> published", []).append(
            blocked + times["ours: wait until published"][-1])
        _, request = _plain_state(chunks, optimizer, scheduler)
        timed("plain load", lambda request=request, plain=plain:
              dist_checkpointing.load(request, str(plain)))
        timed("ours: verify + load", lambda ckpt=ckpt:
              ckpt.load(chunks, optimizer, scheduler, layout))
        if rank == 0:
            size = sum(p.stat().st_size for p in (base / "ours").rglob("*") if p.is_file())
            times.setdefault("checkpoint GB", []).append(size / 1e9)
            shutil.rmtree(base)
    if rank == 0:
        Path(out).write_text(json.dumps({k: statistics.median(v) for k, v in times.items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        out = str(Path(root) / "result.txt")
        mp.spawn(_worker, args=(_free_port(), root, args, out), nprocs=2, join=True)
        result = json.loads(Path(out).read_text())
    print(f"state: {result.pop('checkpoint GB'):.2f} GB on disk, 2 processes (gloo, CPU), "
          f"median of {args.repeats}")
    for name, seconds in result.items():
        print(f"  {name:<32} {seconds:7.2f} s")
    plain_save = result["plain save"]
    previous = plain_save + result["previous: + rank-0 SHA-256"]
    ratios = {
        "save, ours published / plain": result["ours: save -> published"] / plain_save,
        "save, ours published / previous": result["ours: save -> published"] / previous,
        "save, ours blocked / plain": result["ours: blocked in save()"] / plain_save,
        "load, ours verify+load / plain": result["ours: verify + load"] / result["plain load"],
    }
    for name, ratio in ratios.items():
        print(f"ratio {name:<34} {ratio:.2f}")


if __name__ == "__main__":
    main()
