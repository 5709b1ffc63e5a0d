"""Wrap model chunks for training (bf16 + megatron DDP) and build the distributed AdamW optimizer
and the warmup + decay schedule, the way Megatron-LM's pretrain_gpt sets them up.

    chunks = wrap_for_training(chunks, config, parallel)
    optimizer, scheduler = build_optimizer(chunks, config, optim_cfg, parallel, train_steps=...)
    with params_synced(chunks):   # before a save, an evaluation or the HF export
        ...
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
from megatron.core.distributed.finalize_model_grads import finalize_model_grads
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.transformer.module import Float16Module
from megatron.core.transformer.transformer_config import TransformerConfig

from swallow_train.mcore.config import OptimConfig
from swallow_train.parallel import ParallelConfig


def wrap_for_training(
    chunks: list[torch.nn.Module], config: TransformerConfig, parallel: ParallelConfig
) -> list[DistributedDataParallel]:
    """bf16 chunks get megatron's Float16Module; every chunk gets megatron DDP (fp32 grad
    buffers, reduce-scatter into the distributed optimizer when it is on). Also installs the
    hooks the pipeline schedules call (`finalize_model_grads`, `no_sync`)."""
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=parallel.overlap_grad_reduce,
        overlap_param_gather=parallel.overlap_param_gather,
        use_distributed_optimizer=parallel.distributed_optimizer,
        check_for_nan_in_grad=True,
        bucket_size=None,
    )
    wrapped = []
    for i, chunk in enumerate(chunks):
        if config.bf16:
            chunk = Float16Module(config, chunk)
        # Only the first virtual chunk uses buckets (as Megatron-LM: later chunks' grads are
        # ready at different times under interleaving).
        wrapped.append(
            DistributedDataParallel(config=config, ddp_config=ddp_config, module=chunk,
                                    disable_bucketing=i > 0)
        )
    config.finalize_model_grads_func = finalize_model_grads
    no_sync = [c.no_sync for c in wrapped]
    config.no_sync_func = no_sync[0] if len(no_sync) == 1 else no_sync
    if parallel.overlap_param_gather and parallel.distributed_optimizer:
        config.param_sync_func = [c.start_param_sync for c in wrapped]
        if len(wrapped) == 1:
            config.param_sync_func = config.param_sync_func[0]
    return wrapped


def build_optimizer(
    chunks: list[DistributedDataParallel],
    config: TransformerConfig,
    optim: OptimConfig,
    parallel: ParallelConfig,
    *,
    train_steps: int,
) -> tuple[torch.optim.Optimizer, OptimizerParamScheduler]:
    """AdamW (decoupled weight decay; none on norms and biases) through megatron's optimizer
    factory, and a scheduler stepped once per optimizer step: linear warmup from 0 to `lr`, then
    `decay_style` down to `min_lr` at `train_steps`."""
    opt_config = OptimizerConfig(
        optimizer="adam",
        lr=optim.lr,
        min_lr=optim.min_lr,
        weight_decay=optim.weight_decay,
        adam_beta1=optim.adam_beta1,
        adam_beta2=optim.adam_beta2,
        adam_eps=optim.adam_eps,
        clip_grad=optim.clip_grad,
        bf16=config.bf16,
        params_dtype=config.params_dtype,
        use_distributed_optimizer=parallel.distributed_optimizer,
        overlap_param_gather=parallel.overlap_param_gather,
    )
    optimizer = get_megatron_optimizer(opt_config, chunks)
    config.grad_scale_func = optimizer.scale_loss
    warmup = min(optim.warmup_steps, max(train_steps - 1, 0))
    scheduler = OptimizerParamScheduler(
        optimizer,
        init_lr=0.0,
        max_lr=optim.lr,
        min_lr=optim.min_lr,
        lr_warmup_steps=warmup,
        lr_decay_steps=max(train_steps, warmup + 1),
        lr_decay_style=optim.decay_style.value,
        start_wd=optim.weight_decay,
        end_wd=optim.weight_decay,
        wd_incr_steps=max(train_steps, 1),
        wd_incr_style="constant",
    )
    return optimizer, scheduler


@contextmanager
def params_synced(chunks: list[DistributedDataParallel]) -> Iterator[None]:
    """Every parameter up to date on every rank inside the block. With `overlap_param_gather`
    the all-gather of the last optimizer step's update is deferred to the next forward (each
    module's forward pre-hook waits for its bucket), so between steps a rank holds stale
    weights for the shards other DP ranks updated. As Megatron-LM's
    `disable_forward_pre_hook` / `enable_forward_pre_hook` around save and evaluation: remove
    the hooks with a synchronous all-gather, then put them back (the next forward does not
    gather again). Without the overlap this does nothing."""
    hooked = [c for c in chunks if getattr(c, "use_forward_hook", False)]
    for chunk in hooked:
        chunk.disable_forward_pre_hook(param_sync=True)
    try:
        yield
    finally:
        for chunk in hooked:
            chunk.enable_forward_pre_hook()
