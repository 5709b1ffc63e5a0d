"""The GRPO pieces of the local backend: advantages, clipped loss, KL estimators, loss
aggregation, response log-probabilities, and the seeded sampler used inside `generate`."""

from __future__ import annotations

import math

import pytest
import torch

from swallow_train.rl.config import KLType
from swallow_train.rl.grpo import (
    aggregate,
    group_advantages,
    kl_to_reference,
    policy_loss,
    response_logprobs,
)
from swallow_train.rl.rollout import SeededSampler


def test_group_advantages() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    centred = group_advantages(rewards, std_normalization=False)
    assert torch.equal(centred, torch.tensor([[0.75, -0.25, -0.25, -0.25], [0.0] * 4]))
    scaled = group_advantages(rewards, std_normalization=True)
    std = math.sqrt((0.75**2 + 3 * 0.25**2) / 3)  # unbiased, as slime
    assert torch.allclose(scaled[0], centred[0] / (std + 1e-6))
    assert torch.equal(scaled[1], torch.zeros(4))  # no signal in an all-equal group


def test_clipped_loss_with_clip_higher() -> None:
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    ratio = torch.tensor([[1.0], [1.5], [0.5], [1.5]])
    old = torch.zeros(4, 1)
    loss, stats = policy_loss(ratio.log(), old, adv, torch.ones(4, 1), eps_clip=0.2,
                              eps_clip_high=0.28)
    # A>0: gains stop at 1 + 0.28; A<0: the ratio is clipped at 1 - 0.2 from below
    assert torch.allclose(loss.squeeze(1), torch.tensor([-1.0, -1.28, 0.8, 1.5]))
    assert stats["clip_frac"] == pytest.approx(0.5)


def test_kl_estimators() -> None:
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -2.0])
    r = logp - ref
    assert torch.allclose(kl_to_reference(logp, ref, KLType.k1), r)
    assert torch.allclose(kl_to_reference(logp, ref, KLType.k2), 0.5 * r * r)
    k3 = torch.exp(-r) - 1 + r
    assert torch.allclose(kl_to_reference(logp, ref, KLType.k3), k3)
    assert torch.allclose(kl_to_reference(logp, ref, KLType.low_var_kl), k3)
    assert kl_to_reference(logp, ref, KLType.k3)[1] == 0.0


def test_aggregation_chunks_add_up() -> None:
    per_token = torch.arange(12.0).view(3, 4)
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    whole = aggregate(per_token, mask, per_token_loss=True, batch_tokens=7, batch_samples=3)
    assert whole == pytest.approx((0 + 1 + 2 + 3 + 4 + 5 + 8) / 7)
    parts = sum(aggregate(per_token[i:i + 1], mask[i:i + 1], per_token_loss=True,
                          batch_tokens=7, batch_samples=3) for i in range(3))
    assert float(parts) == pytest.approx(float(whole))
    sample_mean = aggregate(per_token, mask, per_token_loss=False, batch_tokens=7,
                            batch_samples=3)
    assert sample_mean == pytest.approx((1.5 + 4.5 + 8.0) / 3)


@pytest.fixture(scope="module")
def small_lm():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    return Qwen3ForCausalLM(cfg).eval()


def test_response_logprobs_match_a_full_forward(small_lm) -> None:
    prompt = torch.tensor([[3, 7, 11, 2]])
    responses = torch.tensor([[5, 9, 1], [4, 4, 8]])
    got = response_logprobs(small_lm, prompt, responses)
    full = torch.cat([prompt.expand(2, -1), responses], dim=1)
    logp = torch.log_softmax(small_lm(input_ids=full).logits, dim=-1)
    want = torch.stack([logp[:, 3 + t].gather(-1, responses[:, t:t + 1]).squeeze(-1)
                        for t in range(3)], dim=1)
    assert torch.allclose(got, want, atol=1e-6)


def test_policy_gradient_step_raises_rewarded_responses(small_lm) -> None:
    import copy

    model = copy.deepcopy(small_lm).train()
    prompt = torch.tensor([[3, 7, 11, 2]])
    responses = torch.tensor([[5, 9, 1], [4, 4, 8]])
    adv = group_advantages(torch.tensor([[1.0, 0.0]]), std_normalization=False)[0]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = response_logprobs(model, prompt, responses).detach().sum(-1)
    logp = response_logprobs(model, prompt, responses)
    loss, _ = policy_loss(logp, logp.detach(), adv, torch.ones(2, 3), eps_clip=0.2,
                          eps_clip_high=0.28)
    aggregate(loss, torch.ones(2, 3), per_token_loss=True, batch_tokens=6,
              batch_samples=2).backward()
    opt.step()
    after = response_logprobs(model, prompt, responses).detach().sum(-1)
    assert after[0] > before[0] and after[1] < before[1]


def test_seeded_sampler_samples_the_softmax() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -30.0]]).expand(4000, -1)
    picks = []
    sampler = SeededSampler(temperature=1.0, top_k=-1, top_p=1.0, seed=3)
    state = torch.get_rng_state()
    for _ in range(5):
        out = sampler(None, logits)
        assert torch.all(torch.isfinite(out).sum(-1) == 1)  # one token left for greedy
        picks.append(out.argmax(-1))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    freq = torch.bincount(torch.cat(picks), minlength=5).float() / 20000
    assert torch.allclose(freq, torch.softmax(logits[0], -1), atol=0.01)
    again = SeededSampler(temperature=1.0, top_k=-1, top_p=1.0, seed=3)
    assert torch.equal(again(None, logits).argmax(-1), picks[0])
    top2 = SeededSampler(temperature=1.0, top_k=2, top_p=1.0, seed=0)(None, logits).argmax(-1)
    assert set(top2.tolist()) == {0, 1}
    nucleus = SeededSampler(temperature=1.0, top_k=-1, top_p=0.5, seed=0)(None, logits)
    assert set(nucleus.argmax(-1).tolist()) == {0}  # p(top) = 0.64 >= 0.5
    hot = SeededSampler(temperature=100.0, top_k=-1, top_p=1.0, seed=0)(None, logits[:, :4])
    assert len(set(hot.argmax(-1).tolist())) == 4


@pytest.mark.parametrize(("top_k", "top_p", "min_p"), [(20, 0.95, 0.0), (3, 0.8, 0.0),
                                                       (-1, 0.9, 0.0), (20, 1.0, 0.3)])
def test_seeded_sampler_matches_transformers_warpers(top_k: int, top_p: float,
                                                     min_p: float) -> None:
    """The distribution SeededSampler draws from is the one transformers' sampling warpers
    (temperature, top-k, top-p, min-p, in generate's order) leave."""
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    logits = torch.randn(1, 50, generator=torch.Generator().manual_seed(0)) * 2
    ref = TemperatureLogitsWarper(0.6)(None, logits)
    if top_k > 0:
        ref = TopKLogitsWarper(top_k)(None, ref)
    if top_p < 1.0:
        ref = TopPLogitsWarper(top_p)(None, ref)
    if min_p > 0.0:
        ref = MinPLogitsWarper(min_p)(None, ref)
    expected = torch.softmax(ref, -1)[0]
    sampler = SeededSampler(temperature=0.6, top_k=top_k, top_p=top_p, min_p=min_p, seed=1)
    picks = torch.cat([sampler(None, logits.expand(5000, -1)).argmax(-1) for _ in range(8)])
    freq = torch.bincount(picks, minlength=50).float() / picks.numel()
    assert not freq[expected == 0].any()  # nothing outside the warpers' support
    assert torch.allclose(freq, expected, atol=0.01)
