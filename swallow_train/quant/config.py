"""Typed sections of the `quantize` recipe: the calibration set, the AWQ settings and the
quality gate (`recipes/quantize.yaml`, per size `recipes/size/quantize_<model>.yaml`).

    swallow-train quantize --dry-run model=qwen3_30b_a3b
    swallow-train quantize model=tiny_dense calibration.num_samples=8 gate.max_perplexity_ratio=1.2
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from swallow_train.models.config import ModelConfig


class GenBackend(Enum):
    """What generates the calibration responses and the gate's pass@1 samples."""

    auto = "auto"
    """vLLM when a CUDA GPU and the `vllm` package are there, else transformers."""
    transformers = "transformers"
    """`generate` with the RL backend's seeded sampler (`rl/rollout.py`): CPU, tests."""
    vllm = "vllm"
    """vLLM's offline `LLM.generate` (clusters)."""


@dataclass(kw_only=True)
class SamplingConfig:
    """Qwen3's model-card sampling for thinking mode (what the released model is used with)."""

    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    """-1: off."""


@dataclass(kw_only=True)
class CalibrationConfig:
    """Responses of the RL model to the RL prompts' train split, kept only when complete, well
    formed and correct; `num_samples` of them calibrate AWQ, `heldout` more serve the gate."""

    num_samples: int = 256
    """Validated generations AWQ calibrates on. 256, as llm-compressor's AWQ examples (256-512;
    AutoAWQ uses 128): AWQ fits one scale per input channel from activation magnitudes, which
    settle after ~10^5 tokens (256 x up to 2,048 tokens is 0.5M); more samples cost
    generation and grid-search time without moving the scales."""
    heldout: int = 64
    """Further validated generations, never calibrated on: the gate's perplexity set."""
    max_seq_length: int = 2048
    """Tokens of each calibration sample (chat prompt + response) AWQ sees; longer ones are cut
    here. 2,048, the upper end of llm-compressor's examples (512-2,048): a reasoning trace's
    first 2k tokens hold the prompt, the thinking and often the answer's style, and the grid
    search's memory and time grow linearly with it."""
    max_new_tokens: int = 16384
    """Generation budget of one response; one that reaches it is rejected as truncated (the RL
    stage trained with 24,576; most math traces end well before 16k)."""
    max_prompt_len: int = 2048
    """Longer prompts are skipped (as the RL stage drops them)."""
    samples_per_prompt: int = 1
    """Responses sampled per prompt (1: every calibration sample answers another prompt)."""
    enable_thinking: bool = True
    """The chat template's `enable_thinking` for the prompts, as the RL stage sampled them
    (`rollout.enable_thinking`); false (the tiny recipes): the empty think block is prefilled
    and judged as the response's start."""
    max_prompts: int | None = None
    """Train prompts tried at most, in a seeded order; None: the whole train split."""
    batch_size: int = 64
    """Prompts per generation call (transformers; vLLM gets them all at once)."""
    min_samples: int = 32
    """Fewer validated generations than this (after trying every prompt) fail the stage; between
    this and `num_samples + heldout`, both parts shrink in proportion (reported)."""
    backend: GenBackend = GenBackend.auto
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seed: int = 0


@dataclass(kw_only=True)
class AWQConfig:
    """llm-compressor's AWQ then W4A16 round-to-nearest with the AWQ-smoothed weights."""

    num_bits: int = 4
    group_size: int = 128
    """Input channels per scale; must divide the input width of every quantized Linear (every
    preset here, tiny included, has widths that are multiples of 128)."""
    symmetric: bool = True
    """Symmetric (no zero point): asymmetric checkpoints failed to load in transformers 5.24
    (weight_zero_point shape), and vLLM's Marlin kernels serve symmetric INT4 fastest."""
    n_grid: int = 20
    """Scale exponents AWQ tries per mapping (llm-compressor's default; at least 3: with duo
    scaling one point is the identity and the rest span [0, 1])."""
    duo_scaling: bool = True
    """Scales from activations and weights (AWQ's default); false: activations only."""
    ignore: list[str] = field(default_factory=lambda: ["lm_head", "re:.*mlp\\.gate$"])
    """Modules kept in bf16: the output layer and the MoE routers (Qwen3-MoE `mlp.gate`; the
    pattern matches nothing in a dense model, whose MLP gate is `mlp.gate_proj`)."""


@dataclass(kw_only=True)
class GateConfig:
    """The quantized model against the bf16 RL model: the stage fails when it is worse by more
    than these thresholds (the quantized files are kept either way)."""

    max_pass_at_1_drop: float = 0.03
    """Largest allowed fall of math pass@1 (absolute, bf16 minus quantized). 0.03: published
    AWQ-INT4 Qwen3 checkpoints lose 1-3 points on math; with 256 prompts x 4 samples the
    standard error of a pass@1 near 0.5 is about 0.016, so a smaller bound would fail on noise."""
    max_perplexity_ratio: float = 1.05
    """Largest allowed quantized / bf16 perplexity on the held-out validated generations
    (W4A16 g128 AWQ typically adds 1-4% at 8B and above)."""
    eval_prompts: int | None = 256
    """Held-out RL eval prompts for pass@1 (the first N of the eval split); None: all."""
    samples_per_prompt: int = 4
    """k: pass@1 is the mean over prompts of the fraction of their k samples that are correct."""
    max_new_tokens: int = 16384
    """Generation budget of a pass@1 sample; a truncated one counts as wrong (as in RL)."""
    seed: int = 1234
    """The samplers' seed: both models draw with the same seed."""


def linear_input_widths(model: ModelConfig) -> dict[str, int]:
    """The input width of every kind of Linear that AWQ quantizes in `model`."""
    widths = {"q/k/v_proj": model.hidden_size,
              "o_proj": model.num_attention_heads * model.head_dim}
    if model.is_moe:
        widths |= {"experts.gate/up_proj": model.hidden_size,
                   "experts.down_proj": model.moe_ffn_hidden_size}
    else:
        widths |= {"gate/up_proj": model.hidden_size, "down_proj": model.ffn_hidden_size}
    return widths


def group_size_errors(awq: AWQConfig, model: ModelConfig) -> list[str]:
    """awq.group_size must divide every quantized Linear's input width."""
    bad = {name: w for name, w in linear_input_widths(model).items() if w % awq.group_size}
    if not bad:
        return []
    widths = sorted(set(linear_input_widths(model).values()))
    fits = [g for g in (128, 64, 32, 16) if all(w % g == 0 for w in widths)]
    fix = f"set awq.group_size={fits[0]}" if fits else "pick a group size dividing all of them"
    return [f"awq.group_size={awq.group_size} does not divide the input width of "
            + ", ".join(f"{n} ({w})" for n, w in bad.items())
            + f" of model {model.name}: {fix}"]


def calibration_errors(cal: CalibrationConfig) -> list[str]:
    """Settings that cannot work together (ranges.py checks each value alone)."""
    errors = []
    if cal.min_samples > cal.num_samples + cal.heldout:
        errors.append(f"calibration.min_samples={cal.min_samples} exceeds calibration."
                      f"num_samples + calibration.heldout = {cal.num_samples + cal.heldout}: "
                      "lower calibration.min_samples")
    if cal.max_seq_length > cal.max_prompt_len + cal.max_new_tokens:
        errors.append(f"calibration.max_seq_length={cal.max_seq_length} is longer than any "
                      f"sample can be (max_prompt_len + max_new_tokens = "
                      f"{cal.max_prompt_len + cal.max_new_tokens}): lower it")
    if cal.sampling.temperature <= 0:
        errors.append("calibration.sampling.temperature must be > 0 (the model card samples "
                      "at 0.6)")
    return errors
