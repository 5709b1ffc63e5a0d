"""The one megatron-core training loop of CPT and SFT (they differ only in their BatchSource),
as the `StageLoop` the stage runner drives (swallow_train/lifecycle).

    swallow-train cpt model=tiny_dense   # -> runs/tiny_dense/cpt/{checkpoints,hf,metrics.jsonl}

`MegatronLoop` supplies the state (model chunks, optimizer, scheduler, `TrainState`) and the
step; the runner skips a finished stage, locks the directory, writes config.yaml, logs, checks
for stop signals, asks for checkpoints (every `save_interval` steps, on SIGTERM/SIGUSR1, at
`train.exit_after` and at the end), exports to HF and writes `DONE` last. The state resumes
from the stage's latest checkpoint if there is one, otherwise from `checkpoint.load`, `init`
(an HF checkpoint) or a random init.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from swallow_train.convert.hf_meta import check_start
from swallow_train.lifecycle import LoopOptions, Metrics, StageRunner, say
from swallow_train.mcore import cpu_runtime, distributed
from swallow_train.mcore.batches import BatchSource, SampleLengths
from swallow_train.mcore.checkpoint import MegatronCheckpointer, TrainState
from swallow_train.mcore.model import build_model, resolve_precision, transformer_config
from swallow_train.mcore.optim import build_optimizer, params_synced, wrap_for_training
from swallow_train.mcore.step import StepResult, eval_step, train_step
from swallow_train.metrics.throughput import StepWork, Throughput, sample_work
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import Layout
from swallow_train.training import TrainRecipe


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


def train(recipe: TrainRecipe, *, stage: str, data: BatchSource) -> int:
    """Run (or resume, or skip) the `stage` of `recipe` on `data`: 0 when finished or stopped
    by `train.exit_after`, 128 + signal when stopped by a signal."""
    ckpt = recipe.checkpoint
    options = LoopOptions(save_interval=ckpt.save_interval, save_on_signal=ckpt.save_on_signal,
                          exit_after=recipe.train.exit_after, export_hf=ckpt.export_hf,
                          log_interval=recipe.train.log_interval)
    runner = StageRunner(recipe=recipe, stage=stage, options=options)
    with cpu_runtime.active():  # CPU: megatron's CUDA calls to the CPU, for this run only
        return runner.run(MegatronLoop(recipe, stage, data))


class MegatronLoop:
    """The megatron-core state and step of CPT/SFT (a `lifecycle.StageLoop`)."""

    unit = "step"
    plot_keys = ("loss", "lr", "grad_norm", "eval_loss")

    def __init__(self, recipe: TrainRecipe, stage: str, data: BatchSource) -> None:
        self.recipe, self.stage, self.data = recipe, stage, data
        self.stage_dir = recipe.run.stage_dir(stage)
        self.batches: Any = None  # the Prefetcher, once set up

    def preflight(self) -> None:
        """The start checkpoint against the preset (SFT: <|im_end|> becomes the eos), then
        the process groups of the validated layout."""
        check_start(self.recipe, self.stage_dir, chat=self.stage == "sft")
        self.layout: Layout = self.recipe.layout()
        distributed.init_parallel_state(self.layout, self.recipe.train.seed)

    def setup(self) -> int:
        recipe, layout, data = self.recipe, self.layout, self.data
        _configure_determinism(recipe)
        precision = resolve_precision(recipe.train.precision)
        config = transformer_config(recipe.model, recipe.parallel, layout, precision=precision,
                                    for_training=True, fp8=recipe.train.fp8)
        self.raw_chunks = build_model(recipe.model, config)
        data.prepare(layout)
        self.total = data.total_steps()
        self.ckpt = MegatronCheckpointer(self.stage_dir / "checkpoints", recipe.checkpoint)
        resume = self.ckpt.latest_step() is not None
        if not resume and recipe.checkpoint.load is None:
            _start_weights(recipe, self.raw_chunks)
        self.chunks = wrap_for_training(self.raw_chunks, config, recipe.parallel)
        self.optimizer, self.scheduler = build_optimizer(
            self.chunks, config, recipe.optim, recipe.parallel, train_steps=self.total)
        state = TrainState(layout=asdict(layout))
        if resume:
            state = self._load()
            say(f"resumed from {self.ckpt.dir.path(state.step)} (step {state.step})")
        elif recipe.checkpoint.load is not None:
            state = self._load(Path(recipe.checkpoint.load))
            say(f"loaded {recipe.checkpoint.load} (step {state.step})")
        state.layout = asdict(layout)
        self.state = state
        fp8 = f" + fp8 {recipe.train.fp8.value}" if recipe.train.fp8 else ""
        say(f"{self.stage}: {layout.describe()}; precision {precision.value}{fp8}; "
            f"{self.total} steps; data {data.summary()}")
        self.meter = Throughput(recipe.model.flops_per_token(recipe.train.seq_length),
                                layout.world_size)
        from swallow_train.mcore.prefetch import Prefetcher

        self.batches = Prefetcher(data.train_microbatches, start=state.step, stop=self.total)
        return state.step

    def _load(self, root: Path | None = None) -> TrainState:
        return self.ckpt.load(self.chunks, self.optimizer, self.scheduler, self.layout,
                              **({} if root is None else {"root": root}))

    def total_steps(self) -> int:
        return self.total

    def step(self, index: int) -> dict[str, float]:
        recipe, data, state = self.recipe, self.data, self.state
        microbatches = self.batches.get(index)  # built in the background (prefetch.py)
        work = step_work(recipe.model, data, index)
        self.meter.start()
        result = train_step(self.chunks, self.optimizer, self.scheduler, microbatches)
        state.step = index + 1
        state.consumed_samples += data.global_batch_size()
        tokens = data.global_batch_size() * recipe.train.seq_length
        metrics = {**_step_metrics(result), **self.meter.stop(tokens, work),
                   "data_crc": data_crc(microbatches)}
        interval = recipe.train.eval_interval
        if interval and state.step % interval == 0:
            with params_synced(self.chunks):
                metrics.update(_evaluate(self.chunks, data, recipe.train.eval_steps))
        return metrics

    def save(self, step: int, *, final: bool, blocking: bool) -> None:
        with params_synced(self.chunks):  # overlap_param_gather: save the update
            self.ckpt.save(self.chunks, self.optimizer, self.scheduler, self.state,
                           final=final, blocking=blocking)

    def poll(self) -> None:
        self.ckpt.poll()  # publish a background save whose files are all written

    def export(self, hf_dir: Path) -> Path | None:
        from swallow_train.mcore.hf_export import export_to_hf

        with params_synced(self.chunks):  # overlap_param_gather: the last update, everywhere
            return export_to_hf(self.raw_chunks, self.recipe.model, hf_dir,
                                tokenizer=self.recipe.model.tokenizer)

    def postfix(self, metrics: Metrics) -> dict[str, str]:
        return {"loss": f"{metrics['loss']:.4f}", "lr": f"{metrics.get('lr', 0.0):.2e}",
                "tok_s": f"{metrics['tokens_per_s']:.0f}"}

    def close(self) -> None:
        if self.batches is not None:
            self.batches.close()


def _start_weights(recipe: TrainRecipe, raw_chunks: list[Any]) -> None:
    init = recipe.init.resolve(recipe.run)
    if init is None:
        say("random init")
        return
    from swallow_train.mcore.hf_import import load_hf_into_model

    say(f"initialising from HF checkpoint {init}")
    load_hf_into_model(raw_chunks, recipe.model, init)


def step_work(model: ModelConfig, data: BatchSource, step: int) -> StepWork | None:
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
