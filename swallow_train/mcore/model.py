"""A Qwen3 preset as a megatron-core GPTModel: TE layer spec with CUDA + TE, local spec otherwise.

    from swallow_train.mcore.model import build_model
    chunks = build_model(model_cfg, parallel_cfg, layout, precision=Precision.fp32)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import (
    get_gpt_decoder_block_spec,
)
from megatron.core.transformer.transformer_config import TransformerConfig

from swallow_train.mcore.config import Precision
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import Layout, ParallelConfig


def resolve_precision(precision: Precision) -> Precision:
    if precision is Precision.auto:
        return Precision.bf16 if torch.cuda.is_available() else Precision.fp32
    return precision


def use_transformer_engine() -> bool:
    """TE layers when CUDA and transformer-engine are both present, local spec otherwise."""
    if not torch.cuda.is_available():
        return False
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        return False
    return True


def transformer_config(
    model: ModelConfig,
    parallel: ParallelConfig,
    layout: Layout,
    *,
    precision: Precision,
    calculate_per_token_loss: bool = True,
) -> TransformerConfig:
    """megatron-core's TransformerConfig for a preset. kv_channels is always explicit: for
    30B-A3B and 32B, heads x head_dim != hidden."""
    precision = resolve_precision(precision)
    bf16 = precision is Precision.bf16
    te = use_transformer_engine()
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
        apply_rope_fusion=False,
        persist_layer_norm=False,
        gradient_accumulation_fusion=False,
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
            moe_token_dispatcher_type=parallel.moe_token_dispatcher,
            moe_grouped_gemm=parallel.moe_grouped_gemm,
            moe_permute_fusion=te and parallel.moe_grouped_gemm,
            moe_layer_recompute=parallel.recompute == "moe",
        )
    if parallel.recompute == "full":
        kwargs.update(recompute_granularity="full", recompute_method="uniform",
                      recompute_num_layers=1)
    return TransformerConfig(**kwargs)


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
    return chunks
