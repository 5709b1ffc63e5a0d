"""Rollouts of the local backend: prompts in a fixed seeded order, groups sampled with
`generate` and a `SeededSampler` (seeded per rollout and prompt: a resumed run samples the same
tokens), and
rewards from the same reward function slime calls (`swallow_train.rl.reward.group_reward`).

    prompts = PromptSet.load(recipe.data.train_path, tok, max_prompt_len=128)
    groups = sample_groups(model, tok, batch, n=8, cfg=recipe.rollout, seed=s)
    rewards = score_groups(groups)
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from swallow_train.data.sources import DataError
from swallow_train.rl.config import RolloutConfig
from swallow_train.rl.prompt_rows import read_prompt_file
from swallow_train.rl.reward import RolloutSample, Status, group_reward

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


@dataclass
class Prompt:
    ids: torch.Tensor
    """[1, P] token ids of the chat-templated prompt (`rollout.enable_thinking`)."""
    label: str
    source: str


@dataclass
class Group:
    """The `n` sampled responses of one prompt."""

    prompt: Prompt
    responses: torch.Tensor
    """[n, R] response tokens, padded after each response's end."""
    mask: torch.Tensor
    """[n, R] 1.0 on response tokens (the stop token included), 0.0 on padding."""
    texts: list[str]
    truncated: list[bool]


class PromptSet:
    """Rows of a prepared prompt JSONL, templated and tokenised; too-long prompts dropped."""

    def __init__(self, prompts: list[Prompt], dropped: int) -> None:
        if not prompts:
            raise DataError("no prompts left after dropping those over rollout.max_prompt_len")
        self.prompts = prompts
        self.dropped = dropped
        self._orders: dict[tuple[int, bool], list[int]] = {}

    @classmethod
    def load(cls, path: Path, tok: Any, *, max_prompt_len: int, enable_thinking: bool = True,
             limit: int | None = None) -> PromptSet:
        prompts, dropped = [], 0
        for _lineno, row in read_prompt_file(Path(path)):  # every row valid, else DataError
            if limit is not None and len(prompts) >= limit:
                break
            text = tok.apply_chat_template(row["prompt"], tokenize=False,
                                           add_generation_prompt=True,
                                           enable_thinking=enable_thinking)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if len(ids) > max_prompt_len:
                dropped += 1
                continue
            source = str(row["metadata"].get("source_name", ""))
            prompts.append(Prompt(torch.tensor([ids]), row["label"], source))
        return cls(prompts, dropped)

    def batch(self, rollout: int, size: int, *, seed: int, shuffle: bool) -> list[Prompt]:
        """The prompts of rollout `rollout` (0-based): positions [rollout x size, +size) of an
        endless sequence of epochs, each in its own seeded order."""
        out = []
        for pos in range(rollout * size, (rollout + 1) * size):
            epoch, index = divmod(pos, len(self.prompts))
            out.append(self.prompts[self._order(epoch, seed, shuffle)[index]])
        return out

    def _order(self, epoch: int, seed: int, shuffle: bool) -> list[int]:
        key = (seed * 1_000_003 + epoch, shuffle)
        if key not in self._orders:
            order = list(range(len(self.prompts)))
            if shuffle:
                random.Random(key[0]).shuffle(order)
            self._orders[key] = order
        return self._orders[key]


def stop_ids(tok: Any) -> list[int]:
    ids = [tok.convert_tokens_to_ids(t) for t in STOP_TOKENS]
    return [int(i) for i in ids if i is not None and i != tok.unk_token_id]


class SeededSampler:
    """A `generate` logits processor that samples the next token itself: softmax(logits / T),
    optionally cut to the top-k tokens, the top-p nucleus and the min-p floor, sampled by
    inverse CDF with its own seeded generator, then every other token masked so that greedy
    decoding takes the sample. One uniform number per row and step, and with top-k the softmax,
    nucleus and draw run over the k candidates only: on a 151,936-token vocabulary this is ~5x
    cheaper than `generate(do_sample=True)` (a full-vocabulary sort and `torch.multinomial`
    every step), and it leaves torch's global RNG alone."""

    def __init__(self, *, temperature: float, top_k: int, top_p: float, seed: int,
                 min_p: float = 0.0) -> None:
        self.temperature, self.top_k, self.top_p, self.min_p = temperature, top_k, top_p, min_p
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = scores.float() / self.temperature
        ids = order = None  # candidate -> vocabulary index, when not the identity
        if self.top_k > 0:  # the k best, in descending order: everything below runs over k
            logits, ids = torch.topk(logits, min(self.top_k, logits.shape[-1]))
        probs = torch.softmax(logits, dim=-1)
        if ids is None and self.top_p < 1.0:
            probs, order = probs.sort(dim=-1, descending=True)
        if self.top_p < 1.0:  # probs are in descending order here
            probs = probs.masked_fill(probs.cumsum(-1) - probs > self.top_p, 0.0)  # keeps the top
        if self.min_p > 0.0:
            floor = self.min_p * probs.max(dim=-1, keepdim=True).values
            probs = probs.masked_fill(probs < floor, 0.0)
        cdf = probs.cumsum(dim=-1)
        u = torch.rand((cdf.shape[0], 1), generator=self.generator)
        picked = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp(max=cdf.shape[-1] - 1)
        if order is not None:
            picked = order.gather(-1, picked)
        if ids is not None:
            picked = ids.gather(-1, picked)
        return torch.full_like(scores, float("-inf")).scatter_(-1, picked, 0.0)


def prepare_for_sampling(model: Any, tok: Any) -> None:
    """Replace the checkpoint's generation defaults (Qwen3's top-k 20, ...) with plain greedy
    decoding: `SeededSampler` does the sampling."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=stop_ids(tok),
                                               pad_token_id=int(tok.pad_token_id))


@torch.no_grad()
def sample_groups(model: Any, tok: Any, prompts: list[Prompt], *, n: int, cfg: RolloutConfig,
                  seed: int, max_new_tokens: int | None = None,
                  temperature: float | None = None) -> list[Group]:
    """`n` responses to each prompt from one `generate` call (prompts left-padded; `generate`
    derives positions from the attention mask), sampled by a `SeededSampler` seeded with
    `seed`. `prepare_for_sampling` must have been called on the model."""
    from transformers import LogitsProcessorList

    stops, pad = stop_ids(tok), int(tok.pad_token_id)
    max_new = max_new_tokens or cfg.max_response_len
    width = max(p.ids.shape[1] for p in prompts)
    ids = torch.full((len(prompts) * n, width), pad, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i * n:(i + 1) * n, width - p.ids.shape[1]:] = p.ids
        attention[i * n:(i + 1) * n, width - p.ids.shape[1]:] = 1
    sampler = SeededSampler(temperature=temperature or cfg.temperature, top_k=cfg.top_k,
                            top_p=cfg.top_p, seed=seed)
    out = model.generate(input_ids=ids, attention_mask=attention, max_new_tokens=max_new,
                         logits_processor=LogitsProcessorList([sampler]))
    responses = torch.full((ids.shape[0], max_new), pad, dtype=torch.long)
    responses[:, : out.shape[1] - width] = out[:, width:]
    is_stop = torch.isin(responses, torch.tensor(stops))
    has_stop = is_stop.any(dim=1)
    lengths = torch.where(has_stop, is_stop.float().argmax(dim=1) + 1, max_new)
    mask = (torch.arange(max_new).unsqueeze(0) < lengths.unsqueeze(1)).float()
    texts = [tok.decode(responses[i, : int(lengths[i])].tolist(), skip_special_tokens=True)
             for i in range(ids.shape[0])]
    rows = [slice(i * n, (i + 1) * n) for i in range(len(prompts))]
    return [Group(p, responses[r], mask[r], texts[r], [not bool(x) for x in has_stop[r]])
            for p, r in zip(prompts, rows, strict=True)]


def score_groups(groups: list[Group]) -> torch.Tensor:
    """Rewards [groups, n] from `group_reward` (the pooled math-verify check), all groups at
    once; truncated responses score 0."""
    async def run() -> list[list[float]]:
        batches = [[RolloutSample(response=text, label=g.prompt.label,
                                  status=Status.truncated if cut else Status.completed)
                    for text, cut in zip(g.texts, g.truncated, strict=True)] for g in groups]
        return list(await asyncio.gather(*(group_reward(None, b) for b in batches)))

    return torch.tensor(asyncio.run(run()), dtype=torch.float32)


def rollout_seed(base: int, rollout: int) -> int:
    """The sampling seed of rollout `rollout` (independent of everything else)."""
    return (base * 1_000_003 + rollout) % (2**63 - 1)
