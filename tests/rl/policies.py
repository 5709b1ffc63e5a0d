"""Tiny starting policies for the local-backend tests: a random-init tiny Qwen3, optionally
taught the `\\boxed{}` answer format by a few supervised steps (as the SFT stage would), saved
as an HF directory where the RL stage looks for its start (`runs/<name>/sft/hf`)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from swallow_train.convert.hf_io import write_hf_checkpoint
from swallow_train.data.tiny_math import format_conversations, tiny_problems
from swallow_train.models.config import ModelConfig
from swallow_train.tokenizer import load_tokenizer


def tiny_model_config(moe: bool = False) -> ModelConfig:
    from swallow_train.config import compose

    return compose("rl", ["model=tiny_moe" if moe else "model=tiny_dense"]).model


def format_sft(model: torch.nn.Module, tok, *, steps: int, seed: int, lr: float = 1e-2,
               batch: int = 8, random_answers: bool = False) -> list[float]:
    """`steps` AdamW steps of next-token loss on the assistant turns of the tiny problems
    answered in `\\boxed{}` (correctly, or with uniformly random digits: the format without
    the arithmetic); returns the losses."""
    problems = tiny_problems(seed=seed)
    if random_answers:
        digits = random.Random(seed + 1)
        problems = [{**p, "label": str(digits.randrange(10))} for p in problems]
    rows = format_conversations(problems)
    encoded = []
    for messages in rows:
        prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True,
                                         enable_thinking=True)
        full = tok.apply_chat_template(messages, tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        f_ids = tok(full, add_special_tokens=False)["input_ids"][:-1]  # drop the final "\n"
        encoded.append((f_ids, len(p_ids)))
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, fused=True)
    model.train()
    losses = []
    for _ in range(steps):
        chunk = rng.sample(encoded, batch)
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((batch, width), int(tok.pad_token_id))
        labels = torch.full((batch, width), -100)
        for i, (seq, start) in enumerate(chunk):
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, start : len(seq)] = torch.tensor(seq[start:])
        hidden = model.model(input_ids=ids).last_hidden_state[:, :-1]
        targets = labels[:, 1:]
        keep = targets != -100  # only the answer positions go through the 151,936-wide head
        logits = model.lm_head(hidden[keep])
        loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep])
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def make_policy(out_dir: Path, *, sft_steps: int, seed: int = 0, moe: bool = False,
                random_answers: bool = False) -> Path:
    """A tiny HF checkpoint at `out_dir`: random init (seeded), then `sft_steps` format steps."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = tiny_model_config(moe)
    tok = load_tokenizer(cfg.tokenizer)
    torch.manual_seed(seed)
    hf_cfg = AutoConfig.for_model(**cfg.to_hf_config(torch_dtype="float32"))
    model = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.float32)
    if sft_steps:
        format_sft(model, tok, steps=sft_steps, seed=seed, random_answers=random_answers)
    write_hf_checkpoint(dict(model.state_dict()), cfg, out_dir, tokenizer=cfg.tokenizer,
                        dtype=torch.bfloat16, progress=False)
    return out_dir
