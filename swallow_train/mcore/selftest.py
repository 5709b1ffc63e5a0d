"""The shared tiny case of the megatron-core self-tests (`selftest_suite.py` runs them): a
seeded tiny Qwen3 (hidden 64, 2 layers, vocabulary 1,024, every weight random, norms included, so
that a weight in the wrong place moves the numbers), written once as HF safetensors and loaded
into each model a test compares, and the helpers every test uses.

    tiny = tiny_case(Path("/tmp/selftest")); chunk = load(build(tiny.model, ParallelConfig()), tiny)
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec
from megatron.core.transformer.module import Float16Module

from swallow_train.check_report import Check, Status, guarded
from swallow_train.mcore.config import Precision
from swallow_train.mcore.distributed import init_parallel_state
from swallow_train.mcore.model import build_model, transformer_config, use_transformer_engine
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import ParallelConfig, validate_layout

VOCAB = 1024
SEQ = 64


@dataclass(kw_only=True)
class Tiny:
    """The shared tiny case: its config, its HF weights on disk and a batch of token ids."""

    model: ModelConfig
    weights: Path
    tokens: torch.Tensor
    labels: torch.Tensor


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def build(model: ModelConfig, parallel: ParallelConfig, *, world_size: int = 1,
          precision: Precision = Precision.fp32, te: bool | None = None,
          seed: int = 0) -> torch.nn.Module:
    """Parallel state and one eval-mode chunk (PP=1) of `model`; `te=False` forces the local
    spec on a GPU (the fusions that need TE off). bf16 chunks come in megatron's Float16Module,
    which returns fp32 outputs."""
    layout = validate_layout(model, parallel, world_size=world_size, global_batch_size=None,
                             micro_batch_size=1, seq_length=SEQ)
    init_parallel_state(layout, seed)
    config = transformer_config(model, parallel, layout, precision=precision)
    if te is False and use_transformer_engine():
        config.bias_activation_fusion = config.masked_softmax_fusion = False
        config.bias_dropout_fusion = False
        spec = get_gpt_decoder_block_spec(config, use_transformer_engine=False,
                                          normalization="RMSNorm")
        chunk: torch.nn.Module = GPTModel(
            config=config, transformer_layer_spec=spec, vocab_size=model.vocab_size,
            max_sequence_length=model.max_position_embeddings, pre_process=True,
            post_process=True, share_embeddings_and_output_weights=model.tie_word_embeddings,
            position_embedding_type="rope", rotary_base=int(model.rope_theta)).to(device())
    else:
        chunk = build_model(model, config)[0]
    if config.bf16:
        chunk = Float16Module(config, chunk)
    return chunk.eval()


def inner(chunk: torch.nn.Module) -> torch.nn.Module:
    return getattr(chunk, "module", chunk)


def positions(tokens: torch.Tensor) -> torch.Tensor:
    return torch.arange(tokens.shape[1], device=tokens.device)[None].expand_as(tokens)


@torch.no_grad()
def run(chunk: torch.nn.Module, tokens: torch.Tensor, *, labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None, mask: torch.Tensor | None = None,
        packed=None) -> torch.Tensor:
    """Logits [b, s, v] (labels None) or per-token losses [b, s], in fp32 on the CPU."""
    dev = device()
    pos = positions(tokens) if position_ids is None else position_ids
    out = chunk(tokens.to(dev), pos.to(dev), None if mask is None else mask.to(dev),
                labels=None if labels is None else labels.to(dev), packed_seq_params=packed)
    return out.float().cpu()


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||: scale-free, ~1e-7 for fp32 reorderings, ~1e-2 for bf16, ~1 for a
    weight in the wrong place."""
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def randomize(chunk: torch.nn.Module, seed: int) -> None:
    """Every weight random (norms 1 + noise), as tests/convert/helpers.random_hf_model does."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in inner(chunk).named_parameters():
            noise = torch.randn(param.shape, generator=gen).to(param.device, param.dtype)
            norm = "norm" in name or name.endswith("layer_norm_weight")
            param.copy_(1 + 0.2 * noise if norm else 0.08 * noise)


def save_weights(chunk: torch.nn.Module, model: ModelConfig, out: Path) -> Path:
    """The HF safetensors + config.json of a TP=1 chunk (no tokenizer: only weights travel)."""
    import json

    from safetensors.torch import save_file

    from swallow_train.mcore.hf_export import gather_hf_state_dict

    state = gather_hf_state_dict([inner(chunk)], model, progress=False)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.float().contiguous() for k, v in state.items()}, out / "model.safetensors",
              metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(model.to_hf_config("float32")))
    return out


def tiny_model() -> ModelConfig:
    """`recipes/model/tiny_dense.yaml` with the 1,024-token vocabulary (whatever the recipe's
    model: the self-tests check code paths, not sizes)."""
    import yaml

    from swallow_train.config import recipes_dir

    fields = yaml.safe_load((recipes_dir() / "model" / "tiny_dense.yaml").read_text())
    return replace(ModelConfig(**fields), vocab_size=VOCAB)


def tiny_case(workdir: Path) -> Tiny:
    model = tiny_model()
    chunk = build(model, ParallelConfig(), precision=Precision.fp32, seed=0)
    randomize(chunk, seed=0)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (2, SEQ + 1), generator=gen)
    return Tiny(model=model, weights=save_weights(chunk, model, workdir / "weights"),
                tokens=ids[:, :-1].contiguous(), labels=ids[:, 1:].contiguous())


def load(chunk: torch.nn.Module, tiny: Tiny) -> torch.nn.Module:
    from swallow_train.mcore.hf_import import load_hf_into_model

    load_hf_into_model([inner(chunk)], tiny.model, tiny.weights, progress=False)
    return chunk


def quietly(name: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    """`guarded`, with the trainer's and megatron's prints kept off the doctor's table (their
    last lines go into the JSON of a FAIL)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        checks = guarded(name, fn)
    for check in checks:
        if check.status is Status.FAIL and buffer.getvalue().strip():
            check.data["output"] = buffer.getvalue().strip().splitlines()[-20:]
    return checks
