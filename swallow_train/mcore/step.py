"""One training (or evaluation) step through megatron-core's pipeline schedules.

The loss is a per-token mean over the whole global batch (megatron's
`calculate_per_token_loss`): every micro-batch returns (sum of masked token losses, number of
loss tokens), the schedule accumulates the token count, and `finalize_model_grads` divides the
gradients by the global count. So SFT's assistant-only loss and CPT's all-token loss are one
code path, and a batch split over more micro-batches or DP ranks gives the same loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from megatron.core import parallel_state
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.transformer.moe import moe_utils
from megatron.core.utils import get_batch_on_this_cp_rank

from swallow_train import collectives

Batch = dict[str, Any]


@dataclass
class StepResult:
    loss: float
    """Mean loss per loss token over the global batch."""
    loss_tokens: int
    grad_norm: float | None = None
    lr: float | None = None
    skipped: bool = False
    moe_aux_loss: float | None = None


def _loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    losses = output_tensor.float().reshape(-1)
    mask = loss_mask.float().reshape(-1)
    loss_sum = (losses * mask).sum()
    num_tokens = mask.sum().to(torch.int)
    report = torch.stack([loss_sum.detach(), num_tokens.detach().float()])
    return loss_sum, num_tokens, {"lm loss": report}


def forward_step(data_iterator, model):
    """megatron's forward_step_func: one micro-batch through one model chunk."""
    batch: Batch = dict(next(data_iterator))
    packed = batch.pop("packed_seq_params", None)
    if parallel_state.get_context_parallel_world_size() > 1 and packed is None:
        batch = get_batch_on_this_cp_rank(batch)
    output = model(
        batch["tokens"],
        batch["position_ids"],
        batch.get("attention_mask"),
        labels=batch["labels"],
        packed_seq_params=packed,
    )
    return output, partial(_loss_func, batch["loss_mask"])


def _reduce_report(losses_reduced: list[dict[str, torch.Tensor]]) -> tuple[float, int]:
    """(mean loss per token, token count) over the global batch, on every rank: summed over
    micro-batches and DP x CP ranks, then shared from the last pipeline stage."""
    last_stage = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
    total = [0.0, 0.0]
    if last_stage and losses_reduced:
        # one device-to-host copy per step, not one per micro-batch
        summed = torch.stack([item["lm loss"] for item in losses_reduced]).double().sum(0)
        total = summed.cpu().tolist()
    if collectives.initialized():
        total = collectives.sum_floats(
            total, group=parallel_state.get_data_parallel_group(with_context_parallel=True))
        if parallel_state.get_pipeline_model_parallel_world_size() > 1:
            total = collectives.sum_floats(
                total if last_stage else [0.0, 0.0],
                group=parallel_state.get_pipeline_model_parallel_group())
    tokens = int(total[1])
    return float(total[0] / max(tokens, 1)), tokens


def _moe_aux_loss(num_microbatches: int) -> float | None:
    tracker = moe_utils.get_moe_layer_wise_logging_tracker()
    if "load_balancing_loss" not in tracker:
        return None
    moe_utils.reduce_aux_losses_tracker_across_ranks(["load_balancing_loss"])
    values = tracker["load_balancing_loss"]["values"].float()
    value = float(values.sum().item()) / max(len(values), 1) / num_microbatches
    moe_utils.clear_aux_losses_tracker()
    return value


def schedule_seq_length(batch: Batch, cp: int) -> int:
    """The whole (un-split) sequence length that megatron's schedules take: they divide it by
    CP (and by TP under sequence parallel) for the pipeline's p2p tensor shapes. A CPT
    micro-batch holds the whole sequence (`forward_step` takes this rank's CP share); a packed
    THD micro-batch comes already split over CP by the data source, so it holds 1/CP of it."""
    local = int(batch["tokens"].shape[1])
    return local * cp if batch.get("packed_seq_params") is not None else local


def _schedule(chunks, microbatches: list[Batch], *, forward_only: bool):
    cp = parallel_state.get_context_parallel_world_size()
    seq_length = schedule_seq_length(microbatches[0], cp)
    micro_batch_size = microbatches[0]["tokens"].shape[0]
    iterators = [iter(microbatches) for _ in chunks]
    return get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iterators if len(chunks) > 1 else iterators[0],
        model=chunks if len(chunks) > 1 else chunks[0],
        num_microbatches=len(microbatches),
        seq_length=seq_length,
        micro_batch_size=micro_batch_size,
        forward_only=forward_only,
    )


def train_step(chunks, optimizer, scheduler, microbatches: list[Batch]) -> StepResult:
    """Forward + backward over this rank's micro-batches, gradient sync, clip, AdamW, lr step."""
    for chunk in chunks:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    losses = _schedule(chunks, microbatches, forward_only=False)
    lr = float(optimizer.param_groups[0]["lr"])  # the lr this step uses
    update_successful, grad_norm, _ = optimizer.step()
    scheduler.step(increment=1)
    loss, tokens = _reduce_report(losses)
    return StepResult(
        loss=loss,
        loss_tokens=tokens,
        grad_norm=None if grad_norm is None else float(grad_norm),
        lr=lr,
        skipped=not update_successful,
        moe_aux_loss=_moe_aux_loss(len(microbatches)),
    )


@torch.no_grad()
def eval_step(chunks, microbatches: list[Batch]) -> StepResult:
    for chunk in chunks:
        chunk.eval()
    try:
        losses = _schedule(chunks, microbatches, forward_only=True)
    finally:
        for chunk in chunks:
            chunk.train()
    moe_utils.clear_aux_losses_tracker()
    loss, tokens = _reduce_report(losses)
    return StepResult(loss=loss, loss_tokens=tokens)
