"""The quality gate: the quantized model against the bf16 RL model on (1) perplexity of the
held-out validated generations' responses (given their prompts) and (2) math pass@1 on held-out
RL eval prompts (k seeded samples each, scored by the RL reward's verifier). A drop beyond the
recipe's thresholds fails the stage with both numbers (`GateError`).

    before = measure(rl_hf, ...); after = measure(quant_hf, ...)
    failures = judge_gate(before, after, recipe.gate)     # [] when it passes
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swallow_train.errors import SwallowError
from swallow_train.quant.config import CalibrationConfig, GateConfig
from swallow_train.quant.filter import IM_END, verify
from swallow_train.quant.generate import Sampler, load_model, progress_bar
from swallow_train.rl.rollout import Prompt

EPS = 1e-9
"""A number at its threshold passes (0.50 - 0.47 is 0.030000000000000027 in floating point)."""


class GateError(SwallowError):
    """The quantized model is worse than the bf16 one by more than a recipe threshold."""


@dataclass(frozen=True)
class Quality:
    perplexity: float
    """exp(mean NLL) over the held-out responses' tokens (the `<|im_end|>` included)."""
    pass_at_1: float
    """Mean over eval prompts of the fraction of their k samples the verifier accepts."""
    tokens: int
    """Response tokens the perplexity averages over."""
    samples: int
    """pass@1 samples (prompts x k)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def perplexity(model: Any, tok: Any, rows: list[dict[str, Any]], max_seq_length: int) -> \
        tuple[float, int]:
    """exp of the mean next-token NLL of each row's response (given its prompt), over all
    response tokens; each row is cut at `max_seq_length` tokens."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            prompt_text = row["text"][: len(row["text"]) - len(row["response"] + IM_END)]
            p_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
            ids = tok(row["text"], add_special_tokens=False)["input_ids"][:max_seq_length]
            if len(ids) <= len(p_ids):
                continue
            x = torch.tensor([ids], device=model.device)
            logits = model(input_ids=x).logits[0, len(p_ids) - 1: -1].float()
            nll = torch.nn.functional.cross_entropy(logits, x[0, len(p_ids):], reduction="sum")
            total += float(nll)
            count += len(ids) - len(p_ids)
    if not count:
        raise GateError("no held-out response tokens to measure perplexity on: raise "
                        "calibration.heldout or calibration.max_seq_length")
    return math.exp(total / count), count


def pass_at_1(path: Path, tok: Any, prompts: list[Prompt], gate: GateConfig,
              cal: CalibrationConfig, *, progress: bool, desc: str) -> tuple[float, int]:
    """pass@1 of the checkpoint at `path`: k seeded samples per prompt, truncated ones wrong."""
    k = gate.samples_per_prompt
    with Sampler(path, tok, backend=cal.backend, max_new_tokens=gate.max_new_tokens,
                 sampling=cal.sampling, batch_size=cal.batch_size,
                 max_prompt_len=cal.max_prompt_len) as sampler:
        bar = progress_bar(len(prompts), desc, progress)
        gens = sampler.sample(prompts, n=k, seed=gate.seed, bar=bar)
        bar.close()
    todo = [i for i, g in enumerate(gens) if g.stop is not None]
    scores = verify([(gens[i].text, prompts[gens[i].prompt_index].label) for i in todo])
    correct = dict(zip(todo, scores, strict=True))
    return sum(correct.get(i, 0.0) for i in range(len(gens))) / len(gens), len(gens)


def measure(path: Path, tok: Any, heldout: list[dict[str, Any]], prompts: list[Prompt],
            gate: GateConfig, cal: CalibrationConfig, *, progress: bool, name: str) -> Quality:
    """Perplexity and pass@1 of one checkpoint."""
    import gc

    import torch

    model = load_model(path)
    try:
        ppl, tokens = perplexity(model, tok, heldout, cal.max_seq_length)
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the GPU memory is vLLM's next
    p1, samples = pass_at_1(path, tok, prompts, gate, cal, progress=progress,
                            desc=f"pass@1 {name}")
    return Quality(perplexity=ppl, pass_at_1=p1, tokens=tokens, samples=samples)


def judge_gate(before: Quality, after: Quality, gate: GateConfig) -> list[str]:
    """What exceeds a threshold, each naming the field, both numbers and the fix; [] passes."""
    failures = []
    drop = before.pass_at_1 - after.pass_at_1
    if drop > gate.max_pass_at_1_drop + EPS:
        failures.append(
            f"math pass@1 fell from {before.pass_at_1:.4f} (bf16) to {after.pass_at_1:.4f} "
            f"(quantized), a drop of {drop:.4f} > gate.max_pass_at_1_drop="
            f"{gate.max_pass_at_1_drop:g}")
    ratio = after.perplexity / before.perplexity
    if ratio > gate.max_perplexity_ratio + EPS:
        failures.append(
            f"held-out perplexity rose from {before.perplexity:.4f} (bf16) to "
            f"{after.perplexity:.4f} (quantized), a ratio of {ratio:.4f} > "
            f"gate.max_perplexity_ratio={gate.max_perplexity_ratio:g}")
    return failures


def gate_error(failures: list[str], quant_dir: Path) -> GateError:
    return GateError(
        "quality gate failed:\n  - " + "\n  - ".join(failures)
        + f"\nThe quantized checkpoint is kept in {quant_dir} (gate.json beside it). Fix: "
          "calibrate on more or longer samples (calibration.num_samples, "
          "calibration.max_seq_length), or, if this loss is acceptable, raise the threshold "
          "named above and rerun (the calibration set and the quantized model are reused)")
