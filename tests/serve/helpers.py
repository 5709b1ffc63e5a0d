"""What the vLLM suite compares against: transformers' greedy tokens from the same checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

PROMPT = [{"role": "user", "content": "What is 3 + 4? 答えは？"}]
MODEL_CARD = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0}


def chat_prompt_ids(hf: Path) -> list[int]:
    """PROMPT through the export's chat template, tokenized by transformers."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf)
    text = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    return tok(text)["input_ids"]


def transformers_greedy(hf: Path, prompt_ids: list[int], n: int) -> list[int]:
    """n greedy tokens from transformers in the export's dtype (argmax of each step's logits;
    eos is not special, as with vLLM's ignore_eos)."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = json.loads((hf / "config.json").read_text())["dtype"]
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=getattr(torch, dtype)).eval()
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        for _ in range(n):
            nxt = model(ids).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return ids[0, len(prompt_ids):].tolist()
