"""Sample responses from an HF checkpoint to chat prompts: transformers on CPU (the RL local
backend's seeded sampler, `rl/rollout.py`), vLLM on clusters. Both return `Generation`s.

    with Sampler(path, tok, backend=GenBackend.auto, max_new_tokens=16384,
                 sampling=cfg.sampling, batch_size=64, max_prompt_len=2048) as sampler:
        gens = sampler.sample(prompts, n=4, seed=0, bar=progress_bar(len(prompts), "gen", True))
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swallow_train.quant.config import GenBackend, SamplingConfig
from swallow_train.quant.filter import Generation
from swallow_train.rl.rollout import STOP_TOKENS, Prompt


def resolve_backend(backend: GenBackend) -> GenBackend:
    """`auto`: vLLM when CUDA and the vllm package are both there, else transformers."""
    if backend is not GenBackend.auto:
        return backend
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None:
        return GenBackend.vllm
    return GenBackend.transformers


def load_model(path: str | Path, *, cpu: bool = False) -> Any:
    """An HF checkpoint (bf16 or compressed-tensors) for sampling and scoring: float32 on CPU
    (the RL local backend's precision), its own dtype on a GPU."""
    import torch
    from transformers import AutoModelForCausalLM

    if torch.cuda.is_available() and not cpu:
        return AutoModelForCausalLM.from_pretrained(path, dtype="auto", device_map="cuda").eval()
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


class Sampler:
    """One checkpoint loaded once for sampling; `sample` returns `Generation`s in prompt order
    (each prompt's `n` samples together). Use as a context manager (frees the model)."""

    def __init__(self, path: str | Path, tok: Any, *, backend: GenBackend, max_new_tokens: int,
                 sampling: SamplingConfig, batch_size: int, max_prompt_len: int) -> None:
        self.path, self.tok, self.backend = Path(path), tok, resolve_backend(backend)
        self.max_new_tokens, self.sampling, self.batch_size = max_new_tokens, sampling, batch_size
        self.stops = {int(tok.convert_tokens_to_ids(t)): t for t in STOP_TOKENS}
        self.model: Any = None
        if self.backend is GenBackend.vllm:
            import torch
            from vllm import LLM

            self.model = LLM(model=str(path), dtype="auto", enable_prefix_caching=True,
                             max_model_len=max_prompt_len + max_new_tokens,
                             tensor_parallel_size=max(1, torch.cuda.device_count()))
        else:
            from swallow_train.rl.rollout import prepare_for_sampling

            self.model = load_model(path, cpu=True)
            prepare_for_sampling(self.model, tok)

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.model = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def sample(self, prompts: Sequence[Prompt], *, n: int, seed: int, bar: Any) -> list[Generation]:
        if self.backend is GenBackend.vllm:
            return self._vllm(prompts, n=n, seed=seed, bar=bar)
        return self._transformers(prompts, n=n, seed=seed, bar=bar)

    def _transformers(self, prompts: Sequence[Prompt], *, n: int, seed: int,
                      bar: Any) -> list[Generation]:
        from swallow_train.rl.config import RolloutConfig
        from swallow_train.rl.rollout import rollout_seed, sample_groups

        s = self.sampling
        cfg = RolloutConfig(num_rollout=1, rollout_batch_size=self.batch_size,
                            n_samples_per_prompt=n, max_response_len=self.max_new_tokens,
                            temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, seed=seed)
        out: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[start:start + self.batch_size])
            groups = sample_groups(self.model, self.tok, chunk, n=n, cfg=cfg,
                                   seed=rollout_seed(seed, start // self.batch_size))
            for offset, group in enumerate(groups):
                for j, text in enumerate(group.texts):
                    ids = group.responses[j, : int(group.mask[j].sum())].tolist()
                    stop = None if group.truncated[j] else self.stops.get(ids[-1])
                    out.append(Generation(start + offset, text, tuple(ids), stop))
            bar.update(len(chunk))
        return out

    def _vllm(self, prompts: Sequence[Prompt], *, n: int, seed: int,
              bar: Any) -> list[Generation]:
        from vllm import SamplingParams

        s = self.sampling
        params = SamplingParams(n=n, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                max_tokens=self.max_new_tokens, seed=seed,
                                stop_token_ids=list(self.stops), skip_special_tokens=True)
        requests = [{"prompt_token_ids": p.ids[0].tolist()} for p in prompts]
        outputs = self.model.generate(requests, params, use_tqdm=not bar.disable)
        gens: list[Generation] = []
        for index, request in enumerate(outputs):
            for sample in request.outputs:
                ids = tuple(int(i) for i in sample.token_ids)
                stop = None
                if sample.finish_reason == "stop":
                    last = ids[-1] if ids and ids[-1] in self.stops else sample.stop_reason
                    # the model's own eos when it is no stop token: not an end of turn
                    stop = self.stops.get(last, "<eos>") if isinstance(last, int) else "<eos>"
                gens.append(Generation(index, sample.text, ids, stop))
        bar.update(len(prompts))
        return gens


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar over prompts, quiet when disabled or when stderr is not a terminal."""
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="prompt", dynamic_ncols=True,
                disable=not (enabled and sys.stderr.isatty()))
