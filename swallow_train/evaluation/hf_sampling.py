"""lm-eval's HF backend with the RL stage's sampler: `swallow-hf`, the `hf` model whose sampled
generations draw from the same distribution (temperature, top-k, top-p, min-p, as transformers
orders them) through `rl.rollout.SeededSampler` instead of `generate(do_sample=True)`.

On the tiny model the HF sampling path spends ~80% of a generation step outside the model: a
sort and a `torch.multinomial` over all 151,936 tokens of every row (`bench/bench_eval_sampling.py`
measures it against greedy and against transformers' own sampling). The sampler draws over the
top-k candidates only, from its own generator seeded by the eval's `seed`, so a run is
reproducible and torch's global RNG stays where lm-eval seeded it. Greedy requests go to
transformers unchanged.

    from swallow_train.evaluation.hf_sampling import MODEL_NAME   # registers the model
    lm_eval.simple_evaluate(model=MODEL_NAME, model_args={"pretrained": "runs/tiny/sft/hf"}, ...)
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from swallow_train.rl.rollout import SeededSampler

MODEL_NAME = "swallow-hf"


@register_model(MODEL_NAME)
class SeededSamplingHFLM(HFLM):
    """HFLM whose sampled `generate` calls use `SeededSampler` (seeded once, by `seed`)."""

    def __init__(self, *args: Any, sampling_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sampling_seed = sampling_seed
        self.calls = 0

    def _model_generate(self, context: Any, max_length: int, stop: list[str],
                        **generation_kwargs: Any) -> Any:
        from transformers import LogitsProcessorList

        if not generation_kwargs.get("do_sample"):
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        kwargs = dict(generation_kwargs)
        sampler = SeededSampler(temperature=float(kwargs.pop("temperature", 1.0)),
                                top_k=int(kwargs.pop("top_k", 0) or 0),
                                top_p=float(kwargs.pop("top_p", 1.0) or 1.0),
                                min_p=float(kwargs.pop("min_p", 0.0) or 0.0),
                                seed=self.sampling_seed * 1_000_003 + self.calls)
        self.calls += 1
        kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None,
                      logits_processor=LogitsProcessorList([sampler]))
        return super()._model_generate(context, max_length, stop, **kwargs)
