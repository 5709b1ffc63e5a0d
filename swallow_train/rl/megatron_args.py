"""Megatron flags of the model and its parallel layout, as slime's `train.py` takes them, and the
check slime runs at start: the model flags against the `--hf-checkpoint` `config.json`.

Both come from the same `ModelConfig` preset as the HF export of the earlier stages, so they
agree by construction; `check_hf_config` (`ModelConfig.check_compatible` on a file) catches a
checkpoint of another model before a job waits in the queue for nodes.

    from swallow_train.rl.megatron_args import model_args, check_hf_config
    args = model_args(recipe.model)
    check_hf_config(recipe.model, "runs/qwen3_8b/sft/hf/config.json")
"""

from __future__ import annotations

import json
from pathlib import Path

from swallow_train.models.config import ModelConfig
from swallow_train.parallel import RECOMPUTE_MODULES, ParallelConfig, Recompute


def _num(value: float) -> str:
    """1000000.0 -> '1000000', 1e-06 -> '1e-06' (Megatron's int flags reject '1000000.0')."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def model_args(model: ModelConfig) -> list[str]:
    """Megatron architecture flags of a Qwen3 / Qwen3-MoE preset (slime's MODEL_ARGS)."""
    args = [
        "--swiglu",
        "--num-layers", str(model.num_layers),
        "--hidden-size", str(model.hidden_size),
        "--ffn-hidden-size", str(model.ffn_hidden_size),
        "--num-attention-heads", str(model.num_attention_heads),
        "--group-query-attention",
        "--num-query-groups", str(model.num_key_value_heads),
        "--kv-channels", str(model.head_dim),
        "--use-rotary-position-embeddings",
        "--rotary-base", _num(model.rope_theta),
        "--disable-bias-linear",
        "--normalization", "RMSNorm",
        "--norm-epsilon", _num(model.rms_norm_eps),
        "--qk-layernorm",
        "--vocab-size", str(model.vocab_size),
    ]
    if not model.tie_word_embeddings:
        args.append("--untie-embeddings-and-output-weights")
    if model.is_moe:
        args += [
            "--num-experts", str(model.num_experts),
            "--moe-router-topk", str(model.moe_router_topk),
            "--moe-ffn-hidden-size", str(model.moe_ffn_hidden_size),
            "--moe-layer-freq", "1",  # every layer is MoE (decoder_sparse_step 1)
            "--moe-router-score-function", "softmax",
            "--moe-router-dtype", "fp32",
            "--moe-aux-loss-coeff", _num(model.moe_aux_loss_coeff),
            "--moe-token-drop-policy", "probs",
            "--moe-permute-fusion",
        ]
        if not model.norm_topk_prob:
            args.append("--moe-router-pre-softmax")
    return args


def parallel_args(model: ModelConfig, parallel: ParallelConfig) -> list[str]:
    """Megatron layout and performance flags (TP/PP/CP/EP, sequence parallel, recompute, MoE
    kernels, DDP overlap, fusions), from the same ParallelConfig as the megatron-core trainer.
    The fusions are on by default in Megatron-LM as here, so only turning them off is written;
    `cross_entropy_loss_fusion` is not: slime computes its losses from the logits itself."""
    p = parallel
    args = [
        "--tensor-model-parallel-size", str(p.tp),
        "--pipeline-model-parallel-size", str(p.pp),
        "--context-parallel-size", str(p.cp),
    ]
    if p.sequence_parallel and p.tp > 1:
        args.append("--sequence-parallel")
    if p.vpp is not None:
        args += ["--num-virtual-stages-per-pipeline-rank", str(p.vpp)]
    if model.is_moe:
        args += ["--expert-model-parallel-size", str(p.ep),
                 "--moe-token-dispatcher-type", str(p.moe_token_dispatcher)]
        if p.etp is not None:
            args += ["--expert-tensor-parallel-size", str(p.etp)]
        if p.moe_grouped_gemm:
            args.append("--moe-grouped-gemm")
    if p.recompute == Recompute.full:
        args += ["--recompute-granularity", "full", "--recompute-method", "uniform",
                 "--recompute-num-layers", "1"]
    elif p.recompute is not None:
        args += ["--recompute-granularity", "selective",
                 "--recompute-modules", *RECOMPUTE_MODULES[p.recompute]]
    if p.overlap_grad_reduce:
        args.append("--overlap-grad-reduce")
    if p.overlap_param_gather:
        args += ["--use-distributed-optimizer", "--overlap-param-gather"]
    if not p.gradient_accumulation_fusion:
        args.append("--no-gradient-accumulation-fusion")
    if not p.apply_rope_fusion:
        args.append("--no-rope-fusion")
    if p.tp_comm_overlap:
        args.append("--tp-comm-overlap")
    return args


def check_hf_config(model: ModelConfig, config_json: str | Path) -> list[str]:
    """`ModelConfig.check_compatible` against a config.json file (what slime's start-up check
    compares, and more), as messages naming the file and the fix; [] when the file does not
    exist (yet)."""
    path = Path(config_json)
    if not path.is_file():
        return []
    return [d.message(path) for d in model.check_compatible(json.loads(path.read_text()))]
