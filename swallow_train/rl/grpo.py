"""GRPO in plain PyTorch: group-normalised advantages, per-token log-probabilities of sampled
responses, the clipped (clip-higher) policy-gradient loss and the KL to the reference model.
`swallow_train.rl.local` runs these in the local backend's loop; they are the same quantities
slime computes on clusters.

    adv = group_advantages(rewards.view(groups, n), std_normalization=False).flatten()
    logp = response_logprobs(model, prompt_ids, responses)
    loss, stats = policy_loss(logp, old_logp, adv, mask, eps_clip=0.2, eps_clip_high=0.28)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from swallow_train.rl.config import KLType


@dataclass(kw_only=True)
class LocalConfig:
    """The local backend's own knobs (the algorithm is `rollout`, `loss`, `optim`)."""

    exit_after: int | None = None
    """Checkpoint and exit (rc 0, stage not done) once this many rollouts are complete; the
    same command then resumes (Megatron's --exit-interval, for time-limited jobs)."""
    deterministic: bool = True
    """torch.use_deterministic_algorithms: bit-identical resumes (same thread count)."""
    eval_prompts: int = 32
    """Held-out prompts scored at each evaluation (one sample each)."""


def group_advantages(rewards: torch.Tensor, *, std_normalization: bool,
                     eps: float = 1e-6) -> torch.Tensor:
    """Rewards [groups, n] minus their group's mean, divided by the group's std (+eps) when
    `std_normalization` (GRPO); a group whose rewards are all equal gets advantage 0."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if std_normalization:
        centred = centred / (rewards.std(dim=1, keepdim=True) + eps)
    return centred


def response_logprobs(model: Any, prompt_ids: torch.Tensor,
                      responses: torch.Tensor) -> torch.Tensor:
    """log p(response token | everything before it), [n, R], for `n` responses to one prompt.

    The rows are prompt + response, right-padded after each response's end; with a causal
    model padding never changes earlier positions, so no attention mask is needed. Only the
    R + 1 last positions go through the output layer (the vocabulary is 151,936 wide)."""
    n, length = responses.shape
    ids = torch.cat([prompt_ids.expand(n, -1), responses], dim=1)
    logits = model(input_ids=ids, logits_to_keep=length + 1, use_cache=False).logits[:, :-1]
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, responses.unsqueeze(-1)).squeeze(-1)


def kl_to_reference(logp: torch.Tensor, ref_logp: torch.Tensor, kl_type: KLType) -> torch.Tensor:
    """Per-token KL(policy || reference) estimate: k1 = log-ratio, k2 = half its square,
    k3 / low_var_kl = exp(-r) - 1 + r with r = logp - ref_logp (low_var_kl clamped to 10)."""
    log_ratio = logp - ref_logp
    if kl_type is KLType.k1:
        return log_ratio
    if kl_type is KLType.k2:
        return 0.5 * log_ratio.square()
    kl = torch.exp(-log_ratio) - 1 + log_ratio
    return kl.clamp(max=10.0) if kl_type is KLType.low_var_kl else kl


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, *, eps_clip: float,
                eps_clip_high: float) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate per token, [n, R]: -min(ratio * A, clip(ratio, 1 - eps_clip,
    1 + eps_clip_high) * A), with A broadcast over each response's tokens. Also the fraction
    of (masked-in) tokens where the clip was active."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(-1)
    unclipped = ratio * adv
    clipped = ratio.clamp(1 - eps_clip, 1 + eps_clip_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    active = (clipped < unclipped).float() * mask
    return loss, {"clip_frac": float(active.sum() / mask.sum().clamp(min=1))}


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, *, per_token_loss: bool,
              batch_tokens: int, batch_samples: int) -> torch.Tensor:
    """This chunk's share of the minibatch loss: summed over its tokens and divided by the
    minibatch's token count (per-token loss), or each response's token mean summed and
    divided by the minibatch's sample count; chunks of one minibatch add up to its loss."""
    masked = per_token * mask
    if per_token_loss:
        return masked.sum() / max(batch_tokens, 1)
    lengths = mask.sum(dim=-1).clamp(min=1)
    return (masked.sum(dim=-1) / lengths).sum() / max(batch_samples, 1)
