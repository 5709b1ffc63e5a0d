"""A Qwen3 preset as a megatron-core GPTModel: TE layer spec on GPU (required), local spec on CPU.

    from swallow_train.mcore.model import build_model
    chunks = build_model(model_cfg, parallel_cfg, layout, precision=Precision.fp32)
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import (
    get_gpt_decoder_block_spec,
)
from megatron.core.transformer.transformer_config import TransformerConfig

from swallow_train.errors import SwallowError
from swallow_train.mcore.config import Fp8Recipe, Precision
from swallow_train.mcore.fp8 import device_capability, fp8_settings
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import (
    RECOMPUTE_MODULES,
    Layout,
    LayoutError,
    ParallelConfig,
    Recompute,
)


def resolve_precision(precision: Precision) -> Precision:
    if precision is Precision.auto:
        return Precision.bf16 if torch.cuda.is_available() else Precision.fp32
    return precision


class TransformerEngineMissing(SwallowError):
    """CUDA without transformer-engine: the local spec would run, but not at scale."""


def use_transformer_engine() -> bool:
    """TE layers on GPU, the local spec on CPU. With CUDA but without transformer-engine this
    stops at once: the local spec builds full s x s attention masks (1 GB per 32K SFT pack),
    cannot run packed THD sequences or context parallelism, and has none of the fused kernels,
    so a silent fallback would turn a cluster job into a slow or out-of-memory one."""
    if not torch.cuda.is_available():
        return False
    if importlib.util.find_spec("transformer_engine") is None:
        raise TransformerEngineMissing(
            "CUDA is available but transformer-engine is not installed: the GPU path needs "
            "its layers (fused attention, THD packing, context parallelism). Install it in "
            "this environment (`pip install --no-build-isolation transformer-engine[pytorch]`, "
            "or use an NGC PyTorch / slime container that ships it), then rerun; "
            "`swallow-train doctor` checks it before a job")
    return True


def transformer_config(
    model: ModelConfig,
    parallel: ParallelConfig,
    layout: Layout,
    *,
    precision: Precision,
    calculate_per_token_loss: bool = True,
    for_training: bool = False,
    fp8: Fp8Recipe | None = None,
) -> TransformerConfig:
    """megatron-core's TransformerConfig for a preset. kv_channels is always explicit: for
    30B-A3B and 32B, heads x head_dim != hidden. The parallel config's kernel fusions are
    active only with TE (GPU); `for_training`: the chunks get megatron DDP, whose `main_grad`
    the gradient-accumulation fusion writes into (a bare backward would have none)."""
    precision = resolve_precision(precision)
    bf16 = precision is Precision.bf16
    te = use_transformer_engine()
    if parallel.tp_comm_overlap:
        raise LayoutError(
            "parallel.tp_comm_overlap=true: this trainer does not bootstrap Transformer "
            "Engine's userbuffers (initialize_ub), and TP comm overlap is untested here; set "
            "parallel.tp_comm_overlap=false (slime's Megatron-LM takes it for the RL stage)")
    kwargs: dict = dict(
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        num_attention_heads=model.num_attention_heads,
        num_query_groups=model.num_key_value_heads,
        kv_channels=model.head_dim,
        ffn_hidden_size=model.ffn_hidden_size,
        normalization="RMSNorm",
        layernorm_epsilon=model.rms_norm_eps,
        qk_layernorm=True,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=model.init_std,
        attention_softmax_in_fp32=True,
        calculate_per_token_loss=calculate_per_token_loss,
        # parallelism
        tensor_model_parallel_size=layout.tp,
        pipeline_model_parallel_size=layout.pp,
        virtual_pipeline_model_parallel_size=layout.vpp,
        context_parallel_size=layout.cp,
        expert_model_parallel_size=layout.ep,
        expert_tensor_parallel_size=layout.etp,
        sequence_parallel=layout.sequence_parallel,
        pipeline_dtype=torch.bfloat16 if bf16 else torch.float32,
        params_dtype=torch.bfloat16 if bf16 else torch.float32,
        bf16=bf16,
        # fusions need CUDA kernels; keep the plain paths elsewhere
        bias_activation_fusion=te,
        bias_dropout_fusion=te,
        masked_softmax_fusion=te,
        apply_rope_fusion=te and parallel.apply_rope_fusion,
        persist_layer_norm=False,
        gradient_accumulation_fusion=te and for_training and parallel.gradient_accumulation_fusion,
        cross_entropy_loss_fusion=te and parallel.cross_entropy_loss_fusion,
        cross_entropy_fusion_impl=str(parallel.cross_entropy_fusion_impl),
        use_cpu_initialization=not torch.cuda.is_available(),
    )
    if model.is_moe:
        kwargs.update(
            num_moe_experts=model.num_experts,
            moe_router_topk=model.moe_router_topk,
            moe_ffn_hidden_size=model.moe_ffn_hidden_size,
            # HF norm_topk_prob=True: top-k on logits then softmax over the k (renormalised).
            moe_router_pre_softmax=not model.norm_topk_prob,
            moe_router_load_balancing_type="aux_loss",
            moe_aux_loss_coeff=model.moe_aux_loss_coeff,
            moe_router_dtype="fp32",
            moe_token_dispatcher_type=str(parallel.moe_token_dispatcher),
            moe_grouped_gemm=parallel.moe_grouped_gemm,
            moe_permute_fusion=te and parallel.moe_grouped_gemm,
        )
    kwargs.update(recompute_fields(parallel.recompute))
    kwargs.update(fp8_settings(fp8, precision=precision, te=te, capability=device_capability(),
                               parallel=parallel, moe=model.is_moe))
    return TransformerConfig(**kwargs)


def recompute_fields(choice: Recompute | None) -> dict:
    """`parallel.recompute` as TransformerConfig fields (None: nothing recomputed); a fresh
    module list each call, since megatron-core may extend the one it is given."""
    if choice is None:
        return {}
    if choice == Recompute.full:
        return dict(recompute_granularity="full", recompute_method="uniform",
                    recompute_num_layers=1)
    return dict(recompute_granularity="selective",
                recompute_modules=list(RECOMPUTE_MODULES[choice]))


def build_model(
    model: ModelConfig,
    config: TransformerConfig,
) -> list[GPTModel]:
    """One GPTModel chunk per virtual pipeline stage on this rank (a list of one without VPP)."""
    te = use_transformer_engine()
    vpp = config.virtual_pipeline_model_parallel_size or 1
    chunks: list[GPTModel] = []
    for vp_stage in range(vpp):
        stage = vp_stage if vpp > 1 else None
        spec = get_gpt_decoder_block_spec(
            config, use_transformer_engine=te, normalization="RMSNorm", vp_stage=stage
        )
        chunk = GPTModel(
            config=config,
            transformer_layer_spec=spec,
            vocab_size=model.vocab_size,
            max_sequence_length=model.max_position_embeddings,
            pre_process=parallel_state.is_pipeline_first_stage(ignore_virtual=False,
                                                               vp_stage=stage),
            post_process=parallel_state.is_pipeline_last_stage(ignore_virtual=False,
                                                               vp_stage=stage),
            share_embeddings_and_output_weights=model.tie_word_embeddings,
            position_embedding_type="rope",
            rotary_percent=1.0,
            rotary_base=int(model.rope_theta),
            vp_stage=stage,
        )
        chunks.append(chunk)
    if torch.cuda.is_available():
        # as Megatron-LM's get_model: every parameter and buffer on this rank's GPU before the
        # Float16Module / DDP wrappers (the DDP grad buffers do not move what they do not own,
        # e.g. with the distributed optimizer off, or the MoE router built on the host)
        for chunk in chunks:
            chunk.cuda(torch.cuda.current_device())
    return chunks
