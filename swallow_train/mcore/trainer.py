"""The one megatron-core training loop of CPT and SFT (they differ only in their BatchSource).

    swallow-train cpt model=tiny_dense   # -> runs/tiny_dense/cpt/{checkpoints,hf,metrics.jsonl}

Per run: resume from the stage's latest checkpoint if there is one, otherwise start from
`init` (an HF checkpoint) or a random init; train; checkpoint every `save_interval` steps, on
SIGTERM/SIGUSR1 and at the end; export to HF; write `DONE` last. A stage whose `DONE` exists is
skipped.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from swallow_train.checkpoint_files import write_atomic
from swallow_train.config import to_yaml
from swallow_train.convert.hf_meta import check_start
from swallow_train.mcore import distributed
from swallow_train.mcore.batches import BatchSource, SampleLengths
from swallow_train.mcore.checkpoint import MegatronCheckpointer, TrainState
from swallow_train.mcore.model import build_model, resolve_precision, transformer_config
from swallow_train.mcore.optim import build_optimizer, params_synced, wrap_for_training
from swallow_train.mcore.step import StepResult, eval_step, train_step
from swallow_train.metrics.logger import MetricsLogger
from swallow_train.metrics.throughput import StepWork, Throughput, sample_work
from swallow_train.run import check_stage_dir_model, finished_stage
from swallow_train.run_lock import stage_lock
from swallow_train.signals import StopRequest
from swallow_train.training import TrainRecipe

DONE = "DONE"


def _say(msg: str) -> None:
    if distributed.is_rank0():
        print(f"[swallow-train] {msg}", flush=True)


def _configure_determinism(recipe: TrainRecipe) -> None:
    """`train.deterministic` (default: on for CPU, off on GPU; see TrainConfig)."""
    if recipe.train.resolved_deterministic(torch.cuda.is_available()):
        # TE reads this when it picks attention backends: no non-deterministic backward
        os.environ["NVTE_ALLOW_NONDETERMINISTIC_ALGO"] = "0"
        torch.use_deterministic_algorithms(True, warn_only=True)


def _step_metrics(result: StepResult) -> dict[str, float]:
    metrics: dict[str, float] = {"loss": result.loss, "loss_tokens": result.loss_tokens}
    for key in ("lr", "grad_norm", "moe_aux_loss"):
        value = getattr(result, key)
        if value is not None:
            metrics[key] = value
    if result.skipped:
        metrics["skipped"] = 1
    return metrics


def data_crc(microbatches) -> int:
    """CRC32 of this rank's tokens of a step: logged so that data order can be audited (e.g.
    that a resumed run read exactly what an uninterrupted one did)."""
    crc = 0
    for batch in microbatches:
        crc = zlib.crc32(batch["tokens"].detach().cpu().numpy().tobytes(), crc)
    return crc


def _start_weights(recipe: TrainRecipe, raw_chunks) -> None:
    init = recipe.init.resolve(recipe.run)
    if init is None:
        _say("random init")
        return
    from swallow_train.mcore.hf_import import load_hf_into_model

    _say(f"initialising from HF checkpoint {init}")
    load_hf_into_model(raw_chunks, recipe.model, init)


def train(recipe: TrainRecipe, *, stage: str, data: BatchSource) -> int:
    stage_dir = recipe.run.stage_dir(stage)
    check_stage_dir_model(stage_dir, recipe.model)
    if finished_stage(stage_dir, recipe):  # another recipe than the finished one: RecipeError
        _say(f"{stage}: {stage_dir / DONE} exists, finished with this recipe; skipping")
        return 0
    check_start(recipe, stage_dir, chat=stage == "sft")  # SFT: <|im_end|> becomes the eos
    layout = recipe.layout()
    distributed.init_parallel_state(layout, recipe.train.seed)
    with stage_lock(stage_dir, stage):
        if finished_stage(stage_dir, recipe):  # finished while this run waited to start
            return 0
        return _run(recipe, stage, stage_dir, layout, data)


def _run(recipe: TrainRecipe, stage: str, stage_dir: Path, layout, data: BatchSource) -> int:
    _configure_determinism(recipe)
    precision = resolve_precision(recipe.train.precision)
    config = transformer_config(recipe.model, recipe.parallel, layout, precision=precision,
                                for_training=True, fp8=recipe.train.fp8)
    raw_chunks = build_model(recipe.model, config)
    data.prepare(layout)
    total_steps = data.total_steps()
    ckpt = MegatronCheckpointer(stage_dir / "checkpoints", recipe.checkpoint)
    resume = ckpt.latest_step() is not None
    if not resume and recipe.checkpoint.load is None:
        _start_weights(recipe, raw_chunks)
    chunks = wrap_for_training(raw_chunks, config, recipe.parallel)
    optimizer, scheduler = build_optimizer(chunks, config, recipe.optim, recipe.parallel,
                                           train_steps=total_steps)
    state = TrainState(layout=asdict(layout))
    if resume:
        state = ckpt.load(chunks, optimizer, scheduler, layout)
        _say(f"resumed from {ckpt.dir.path(state.step)} (step {state.step})")
    elif recipe.checkpoint.load is not None:
        state = ckpt.load(chunks, optimizer, scheduler, layout,
                          root=Path(recipe.checkpoint.load))
        _say(f"loaded {recipe.checkpoint.load} (step {state.step})")
    state.layout = asdict(layout)
    if distributed.is_rank0():
        stage_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(stage_dir / "config.yaml", to_yaml(recipe))
    fp8 = f" + fp8 {recipe.train.fp8.value}" if recipe.train.fp8 else ""
    _say(f"{stage}: {layout.describe()}; precision {precision.value}{fp8}; {total_steps} steps; "
         f"data {data.summary()}")
    code = _loop(recipe, stage, stage_dir, layout, chunks, optimizer, scheduler, ckpt, state,
                 data, total_steps)
    if code:
        return code
    if recipe.checkpoint.export_hf:
        from swallow_train.mcore.hf_export import export_to_hf

        with params_synced(chunks):  # overlap_param_gather: the last update, everywhere
            out = export_to_hf(raw_chunks, recipe.model, stage_dir / "hf",
                               tokenizer=recipe.model.tokenizer)
        _say(f"HF export: {out or stage_dir / 'hf'}")
    if distributed.is_rank0():
        write_atomic(stage_dir / DONE, f"{state.step}\n")
    distributed.barrier()
    return 0


def _loop(recipe, stage, stage_dir, layout, chunks, optimizer, scheduler, ckpt, state, data,
          total_steps) -> int:
    rank0 = distributed.is_rank0()
    logger = MetricsLogger(stage_dir, recipe.logging, stage=stage, run_name=recipe.run.name,
                           config=None, plot_keys=["loss", "lr", "grad_norm", "eval_loss"],
                           enabled=rank0, resume_step=state.step)
    stop = StopRequest().install() if recipe.checkpoint.save_on_signal else None
    meter = Throughput(recipe.model.flops_per_token(recipe.train.seq_length), layout.world_size)
    tokens_per_step = data.global_batch_size() * recipe.train.seq_length
    bar = tqdm(total=total_steps, initial=state.step, desc=stage, unit="step",
               disable=not (rank0 and recipe.logging.progress_bar), dynamic_ncols=True)
    from swallow_train.mcore.prefetch import Prefetcher

    batches = Prefetcher(data.train_microbatches, start=state.step, stop=total_steps)
    try:
        while state.step < total_steps:
            microbatches = batches.get(state.step)  # built in the background (prefetch.py)
            work = step_work(recipe.model, data, state.step)
            meter.start()
            result = train_step(chunks, optimizer, scheduler, microbatches)
            state.step += 1
            state.consumed_samples += data.global_batch_size()
            metrics = {**_step_metrics(result), **meter.stop(tokens_per_step, work),
                       "data_crc": data_crc(microbatches)}
            if recipe.train.eval_interval and state.step % recipe.train.eval_interval == 0:
                with params_synced(chunks):
                    metrics.update(_evaluate(chunks, data, recipe.train.eval_steps))
            if state.step % recipe.train.log_interval == 0 or state.step == total_steps:
                logger.log(state.step, metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{result.loss:.4f}", lr=f"{result.lr:.2e}",
                            tok_s=f"{metrics['tokens_per_s']:.0f}")
            signum = stop.requested() if stop else None
            ckpt.poll()  # publish a background save whose files are all written
            interval = recipe.checkpoint.save_interval
            if signum or state.step == total_steps or (interval and state.step % interval == 0):
                with params_synced(chunks):  # overlap_param_gather: save the update
                    ckpt.save(chunks, optimizer, scheduler, state,
                              final=state.step == total_steps, blocking=bool(signum))
            if signum:
                _say(f"signal {signum}: checkpointed step {state.step}; rerun to resume")
                return StopRequest.exit_code(signum)
    finally:
        batches.close()
        bar.close()
        logger.close()
        if stop:
            stop.restore()
    return 0


def step_work(model, data: BatchSource, step: int) -> StepWork | None:
    """Packed SFT: the real tokens and per-sample attention (sum of L_i^2) of step `step`, over
    all DP ranks, for an honest MFU. None for a source without sample lengths (CPT: every token
    is real and attends causally over the whole sequence, as `flops_per_token` counts)."""
    if not isinstance(data, SampleLengths):
        return None
    return sample_work(model, data.step_sample_lengths(step))


def _evaluate(chunks, data: BatchSource, steps: int) -> dict[str, float]:
    losses, tokens = 0.0, 0
    for index in range(steps):
        microbatches = data.eval_microbatches(index)
        if not microbatches:
            return {}
        result = eval_step(chunks, microbatches)
        losses += result.loss * result.loss_tokens
        tokens += result.loss_tokens
    return {"eval_loss": losses / max(tokens, 1)}
