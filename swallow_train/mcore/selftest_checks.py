"""The single-process self-tests of `swallow-train doctor` (see `selftest_suite.py`): the HF export
against `transformers` fp32, packed SFT against its samples alone, TE against the local spec,
and the tokens/s of the 8B layer shape.

    swallow-train doctor sft model=tiny_dense        # CPU: export, packed (mask path), resume
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from swallow_train.check_report import Check, failed, passed
from swallow_train.mcore import cpu_runtime
from swallow_train.mcore.config import Precision
from swallow_train.mcore.selftest import Tiny, build, device, load, rel_error, run
from swallow_train.parallel import ParallelConfig

EXPORT_TOL = {"cpu": 1e-5, "cuda": 5e-3}
"""Relative error of exported logits: fp32 on both sides (TF32 GEMMs may run on a GPU)."""
PACKED_TOL = {"cpu": 1e-5, "cuda": 2e-2}
"""Per-token losses of a packed sequence vs its samples alone: fp32 mask path / bf16 THD."""
TE_TOL = 2e-2
"""TE vs the local spec, both bf16: rounding differs per kernel, a misplaced weight gives ~1."""
PACK_LENS = (23, 29, 12)


@cpu_runtime.active()  # CPU: megatron's CUDA calls to the CPU, for this check only
def export_parity(tiny: Tiny, recipe, workdir: Path) -> Check:
    """export_to_hf (with the recipe's tokenizer, as the job's last step writes it), loaded by
    `transformers` in fp32: its logits against megatron's."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from swallow_train.mcore.hf_export import export_to_hf

    name = "self-test HF export"
    chunk = load(build(tiny.model, ParallelConfig(), precision=Precision.fp32), tiny)
    ours = run(chunk, tiny.tokens)
    model = replace(tiny.model, tokenizer=recipe.model.tokenizer)
    out = export_to_hf([chunk], model, workdir / "export", tokenizer=model.tokenizer,
                       dtype=torch.float32, progress=False)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the tiny vocabulary does not hold Qwen3's bos/eos ids
    try:
        net = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32,
                                                   attn_implementation="eager").eval()
    finally:
        hf_logging.set_verbosity(verbosity)
    with torch.no_grad():
        theirs = net(tiny.tokens).logits.float()
    error = rel_error(ours, theirs)
    tol = EXPORT_TOL[device().type]
    detail = (f"tiny Qwen3 exported with tokenizer {model.tokenizer}; transformers fp32 logits, "
              f"relative error (tolerance {tol:g})")
    if not error <= tol:
        return failed(name, f"{detail}: the export does not reproduce the model; do not trust "
                      "this installation's exports", value=error, unit="rel")
    return passed(name, error, "rel", detail)


@cpu_runtime.active()  # CPU: megatron's CUDA calls to the CPU, for this check only
def te_vs_local(tiny: Tiny) -> Check:
    """The TE layer spec and the local spec, same HF weights, bf16 logits."""
    te = run(load(build(tiny.model, ParallelConfig(), precision=Precision.bf16), tiny),
             tiny.tokens)
    local = run(load(build(tiny.model, ParallelConfig(), precision=Precision.bf16, te=False),
                     tiny), tiny.tokens)
    error = rel_error(te, local)
    detail = f"bf16 logits, relative error (tolerance {TE_TOL:g})"
    if not error <= TE_TOL:
        return failed("self-test TE vs local", f"{detail}: Transformer Engine computes another "
                      "model; check its version against megatron-core's", value=error, unit="rel")
    return passed("self-test TE vs local", error, "rel", detail)


@cpu_runtime.active()  # CPU: megatron's CUDA calls to the CPU, for this check only
def packed_vs_unpacked(tiny: Tiny) -> Check:
    """Three samples packed into one sequence give, token for token, the losses they give alone:
    THD with cu_seqlens on a GPU (TE), the block-diagonal causal mask on CPU. The same pack with
    plain causal attention must differ (else the test could not tell)."""
    from swallow_train.mcore.data_sft import block_causal_mask, thd_params

    name = "self-test packed SFT"
    lens = np.array(PACK_LENS)
    total = int(lens.sum())
    tokens, labels = tiny.tokens[:1, :total], tiny.labels[:1, :total]
    pos = torch.from_numpy(np.concatenate([np.arange(n) for n in lens]))[None]
    gpu = device().type == "cuda"
    chunk = load(build(tiny.model, ParallelConfig(),
                       precision=Precision.bf16 if gpu else Precision.fp32), tiny)
    if gpu:
        packed = run(chunk, tokens, labels=labels, position_ids=pos,
                     packed=thd_params(lens, device())[0])
        path = "THD (cu_seqlens)"
    else:
        packed = run(chunk, tokens, labels=labels, position_ids=pos,
                     mask=block_causal_mask([lens], total))
        path = "block-causal mask"
    starts = np.concatenate([[0], np.cumsum(lens)])
    alone = torch.cat([run(chunk, tokens[:, a:b], labels=labels[:, a:b])
                       for a, b in itertools.pairwise(starts)], dim=1)
    leaky = run(chunk, tokens, labels=labels, position_ids=pos)
    diff = float((packed - alone).abs().max())
    leak = float((leaky - alone).abs().max())
    tol = PACKED_TOL[device().type]
    detail = (f"{path}: {len(lens)} samples, {total} tokens; max |loss diff| per token "
              f"(tolerance {tol:g}; across-sample attention gives {leak:.3g})")
    if not diff <= tol:
        return failed(name, f"{detail}: packed samples see each other; SFT would train on "
                      "leaked context", value=diff, unit="nats")
    if not leak > 10 * tol:
        return failed(name, f"{detail}: the samples do not interact even without the mask, so "
                      "this test cannot tell", value=diff, unit="nats")
    return passed(name, diff, "nats", detail)


@cpu_runtime.active()  # CPU: megatron's CUDA calls to the CPU, for this check only
def tokens_per_second(layers: int = 2, seq: int = 4096, steps: int = 5) -> Check:
    """Forward + backward of `layers` layers of the Qwen3-8B shape (full vocabulary) at `seq`
    tokens, bf16 with TE on one GPU: tokens/s and model TFLOP/s (no optimizer step)."""
    from swallow_train.config import compose
    from swallow_train.metrics.throughput import H100_BF16_PEAK_FLOPS

    model = replace(compose("cpt", ["model=qwen3_8b"]).model, num_layers=layers)
    chunk = build(model, ParallelConfig(), precision=Precision.bf16).train()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.vocab_size, (1, seq + 1), generator=gen).to(device())
    tokens, labels, pos = ids[:, :-1], ids[:, 1:], torch.arange(seq, device=device())[None]

    def step() -> None:
        chunk.zero_grad(set_to_none=True)
        chunk(tokens, pos, None, labels=labels).float().mean().backward()

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    per_s = seq * steps / (time.perf_counter() - start)
    tflops = per_s * model.flops_per_token(seq) / 1e12
    return passed("self-test tokens/s", round(per_s), "tok/s",
                  f"{layers} layers of the qwen3_8b shape, seq {seq}, fwd+bwd bf16: "
                  f"{tflops:.0f} TFLOP/s, "
                  f"MFU {tflops * 1e12 / H100_BF16_PEAK_FLOPS:.0%} of H100/H200 bf16 peak",
                  tflops=tflops, memory_gib=torch.cuda.max_memory_allocated() / 2**30)
