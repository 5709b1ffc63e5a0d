"""The policy update of one local GRPO rollout: `steps_per_rollout` AdamW steps on the clipped
per-token GRPO loss (plus the KL to the reference model when `loss.use_kl`), over the sampled
groups in order. `swallow_train.rl.local` calls it once per rollout.

    stats = grpo_update(model, ref, optimizer, groups, adv, loss_cfg, clip_grad=1.0)

    .venv/bin/python -m pytest tests/rl/test_local.py -q      # bit-identical resume, learning
"""

from __future__ import annotations

from typing import Any

import torch

from swallow_train.rl.config import PolicyLossConfig
from swallow_train.rl.grpo import aggregate, kl_to_reference, policy_loss
from swallow_train.rl.grpo import response_logprobs as logprobs
from swallow_train.rl.rollout import Group


def minibatches(groups: int, n: int, loss: PolicyLossConfig) -> list[dict[int, list[int]]]:
    """Each optimizer step's samples (`loss.global_batch_size` of them, in group order), as
    {group: rows}: a group's rows share their prompt, so they run as one padding-free batch."""
    flat = [(g, j) for g in range(groups) for j in range(n)]
    size, out = loss.global_batch_size, []
    for k in range(loss.steps_per_rollout):
        rows: dict[int, list[int]] = {}
        for g, j in flat[k * size:(k + 1) * size]:
            rows.setdefault(g, []).append(j)
        out.append(rows)
    return out


def grpo_update(model: Any, ref: Any | None, optimizer: torch.optim.Optimizer,
                groups: list[Group], adv: torch.Tensor, loss_cfg: PolicyLossConfig, *,
                clip_grad: float) -> dict[str, float]:
    """`loss_cfg.steps_per_rollout` AdamW steps on the clipped GRPO loss of `groups` (one
    rollout's responses, n per prompt) with advantages `adv` [groups, n]; the mean loss, clip
    fraction, grad norm (and KL, with a reference model) over the steps. The old policy's
    log-probs are those of the first step's own forward (nothing was updated yet); later
    steps' are computed up front, as are the reference model's."""
    n = groups[0].responses.shape[0] if groups else 0
    batches = minibatches(len(groups), n, loss_cfg)
    with torch.no_grad():
        old = {(k, g): logprobs(model, groups[g].prompt.ids, groups[g].responses[js])
               for k, mb in enumerate(batches) if k > 0 for g, js in mb.items()}
        ref_logp = {(k, g): logprobs(ref, groups[g].prompt.ids, groups[g].responses[js])
                    for k, mb in enumerate(batches) for g, js in mb.items()} \
            if ref is not None else None
    model.train()
    totals = {"loss": 0.0, "clip_frac": 0.0, "grad_norm": 0.0, "kl": 0.0}
    for k, mb in enumerate(batches):
        tokens = int(sum(groups[g].mask[js].sum() for g, js in mb.items()))
        samples = sum(len(js) for js in mb.values())
        for g, js in mb.items():
            mask = groups[g].mask[js]
            logp = logprobs(model, groups[g].prompt.ids, groups[g].responses[js])
            per_token, st = policy_loss(logp, logp.detach() if k == 0 else old[k, g],
                                        adv[g][js], mask, eps_clip=loss_cfg.eps_clip,
                                        eps_clip_high=loss_cfg.eps_clip_high)
            if ref_logp is not None:
                kl = kl_to_reference(logp, ref_logp[k, g], loss_cfg.kl_type)
                totals["kl"] += float((kl.detach() * mask).sum()) / max(tokens, 1)
                per_token = per_token + loss_cfg.kl_coef * kl
            loss = aggregate(per_token, mask, per_token_loss=loss_cfg.per_token_loss,
                             batch_tokens=tokens, batch_samples=samples)
            loss.backward()
            totals["loss"] += loss.item()
            totals["clip_frac"] += st["clip_frac"] * float(mask.sum()) / max(tokens, 1)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        totals["grad_norm"] += float(norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    out = {k: v / len(batches) for k, v in totals.items()}
    if ref_logp is None:
        out.pop("kl")
    return out
