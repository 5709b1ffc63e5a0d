"""The parallel layout (TP/PP/CP/EP/DP) and its validation, before any GPU hour is spent.

    swallow-train cpt --dry-run model=qwen3_32b cluster=abci3 cluster.nodes=16

prints the layout that `validate_layout` derives, or every rule the layout breaks, each naming
the field to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from swallow_train.errors import SwallowError
from swallow_train.models.config import ModelConfig


class Recompute(StrEnum):
    """Activation recompute (megatron's `recompute_granularity` / `recompute_modules`). Costs
    and savings per layer at 32K are in the README's training-loop table."""

    full = "full"
    """Every layer, uniform, 1 layer per unit: stores only each layer's input, reruns the
    whole layer forward in backward (+32% FLOPs for the Qwen3 sizes at 32K)."""
    moe = "moe"
    """Selective, `recompute_modules=[moe]`: the MoE block (router, dispatch, experts, combine)
    reruns in backward; attention is stored, so flash attention is not rerun."""
    moe_act = "moe_act"
    """Selective, `recompute_modules=[moe_act, layernorm]`: output-discarding recompute of the
    experts' SwiGLU and the pre-MoE RMSNorm (TE fuses the input norm into the QKV GEMM):
    elementwise work only, but it saves far less (30B-A3B at 32K does not fit an H200)."""


RECOMPUTE_MODULES: dict[str, list[str]] = {
    Recompute.moe: ["moe"],
    Recompute.moe_act: ["moe_act", "layernorm"],
}
"""megatron's `recompute_modules` of the selective choices, listed explicitly: its
`moe_layer_recompute` would add its default `core_attn` (flash attention rerun in backward)."""


class MoeDispatcher(StrEnum):
    alltoall = "alltoall"
    allgather = "allgather"


class CrossEntropyImpl(StrEnum):
    te = "te"
    """Transformer Engine's fused kernel (Megatron-Bridge's Qwen3 choice)."""
    native = "native"
    """megatron-core's own fused implementation."""


@dataclass(kw_only=True)
class ParallelConfig:
    """How one model replica is split. Data parallelism is what is left of the world size.
    The performance settings after `recompute` are Megatron-Bridge's Qwen3 defaults; what each
    costs or saves, and which are inactive on CPU, is in the README's training-loop table."""

    tp: int = 1
    """Tensor parallel size."""
    pp: int = 1
    """Pipeline parallel size."""
    vpp: int | None = None
    """Virtual pipeline stages per pipeline rank (interleaved 1F1B); None: off."""
    cp: int = 1
    """Context parallel size (splits the sequence; needs Transformer Engine)."""
    ep: int = 1
    """Expert parallel size (MoE only)."""
    etp: int | None = None
    """Expert tensor parallel size; None: megatron-core's default (= tp)."""
    sequence_parallel: bool = False
    distributed_optimizer: bool = True
    moe_token_dispatcher: MoeDispatcher = MoeDispatcher.alltoall
    moe_grouped_gemm: bool = False
    recompute: Recompute | None = None
    """None: store every activation; see `Recompute`."""
    overlap_grad_reduce: bool = False
    """DDP: reduce-scatter each gradient bucket as soon as backward fills it (during backward)
    instead of all buckets after it. Works on CPU (gloo) too."""
    overlap_param_gather: bool = False
    """Distributed optimizer: all-gather the updated parameters bucket by bucket during the next
    forward instead of right after the optimizer step. The trainer syncs them before every save,
    evaluation and the HF export. Works on CPU (gloo) too."""
    gradient_accumulation_fusion: bool = True
    """TE GEMMs accumulate weight gradients straight into megatron DDP's fp32 `main_grad`
    (no bf16 grad tensor, no extra add). GPU with TE only; inactive on CPU."""
    apply_rope_fusion: bool = True
    """TE's fused RoPE kernel; the unfused THD path (packed SFT) splits every micro-batch per
    sample with a host sync in every layer. GPU with TE only; inactive on CPU."""
    cross_entropy_loss_fusion: bool = True
    """Fused vocab-parallel cross entropy: no fp32 copy of the [tokens, vocab/TP] logits.
    GPU only; inactive on CPU."""
    cross_entropy_fusion_impl: CrossEntropyImpl = CrossEntropyImpl.te
    tp_comm_overlap: bool = False
    """TE userbuffers: overlap TP all-gather / reduce-scatter with the GEMMs (TP > 1 with
    sequence parallel). Rendered for slime (Megatron-LM bootstraps the buffers); refused by this
    repository's trainer, which does not bootstrap them (see the README)."""


class LayoutError(SwallowError, ValueError):
    """An impossible parallel layout; the message lists every broken rule and its fix."""


@dataclass(frozen=True)
class Layout:
    """A checked layout: the sizes megatron-core's `initialize_model_parallel` takes, plus DP."""

    world_size: int
    tp: int
    pp: int
    vpp: int | None
    cp: int
    ep: int
    etp: int
    dp: int
    sequence_parallel: bool
    grad_accum_steps: int

    def describe(self) -> str:
        vpp = f" VPP{self.vpp}" if self.vpp else ""
        return (
            f"world {self.world_size} = TP{self.tp} x PP{self.pp} x CP{self.cp} x DP{self.dp}"
            f"{vpp} | EP{self.ep} ETP{self.etp} | SP {'on' if self.sequence_parallel else 'off'}"
            + (f" | {self.grad_accum_steps} micro-batches per step per DP rank"
               if self.grad_accum_steps else "")
        )


def validate_layout(
    model: ModelConfig,
    parallel: ParallelConfig,
    *,
    world_size: int,
    global_batch_size: int | None,
    micro_batch_size: int,
    seq_length: int,
) -> Layout:
    """Check every divisibility rule megatron-core would trip over later; raise LayoutError.
    `global_batch_size=None` skips the batch rule (SFT derives its packed batch at start)."""
    p = parallel
    errors: list[str] = []

    def need(ok: bool, msg: str) -> None:
        if not ok:
            errors.append(msg)

    for name in ("tp", "pp", "cp", "ep"):
        need(getattr(p, name) >= 1, f"parallel.{name}={getattr(p, name)} must be >= 1")
    if errors:
        raise LayoutError(_format(errors))
    etp = p.etp if p.etp is not None else p.tp
    model_parallel = p.tp * p.pp * p.cp
    need(
        world_size % model_parallel == 0,
        f"world size {world_size} (cluster.nodes x cluster.gpus_per_node) is not divisible by "
        f"TP x PP x CP = {p.tp} x {p.pp} x {p.cp} = {model_parallel}: change cluster.nodes or "
        "parallel.tp/pp/cp",
    )
    dp = max(world_size // model_parallel, 1)
    need(
        model.num_attention_heads % p.tp == 0,
        f"model.num_attention_heads={model.num_attention_heads} is not divisible by "
        f"parallel.tp={p.tp}: pick a TP that divides it",
    )
    need(
        model.num_key_value_heads % p.tp == 0,
        f"model.num_key_value_heads={model.num_key_value_heads} (query groups) is not divisible "
        f"by parallel.tp={p.tp}: use parallel.tp <= {model.num_key_value_heads} that divides it",
    )
    need(
        model.vocab_size % p.tp == 0,
        f"model.vocab_size={model.vocab_size} is not divisible by parallel.tp={p.tp}",
    )
    if not model.is_moe:
        need(
            model.ffn_hidden_size % p.tp == 0,
            f"model.ffn_hidden_size={model.ffn_hidden_size} is not divisible by parallel.tp={p.tp}",
        )
    if p.vpp is not None:
        need(p.pp > 1, f"parallel.vpp={p.vpp} needs parallel.pp > 1 (or set parallel.vpp=null)")
        need(
            p.vpp >= 1 and model.num_layers % (p.pp * p.vpp) == 0,
            f"model.num_layers={model.num_layers} is not divisible by PP x VPP = "
            f"{p.pp} x {p.vpp}: change parallel.pp or parallel.vpp",
        )
    else:
        need(
            model.num_layers % p.pp == 0,
            f"model.num_layers={model.num_layers} is not divisible by parallel.pp={p.pp}",
        )
    if model.is_moe:
        need(
            model.num_experts % p.ep == 0,
            f"model.num_experts={model.num_experts} is not divisible by parallel.ep={p.ep}",
        )
        need(
            world_size % (etp * p.ep * p.pp) == 0,
            f"world size {world_size} is not divisible by ETP x EP x PP = {etp} x {p.ep} x "
            f"{p.pp}: change parallel.ep/etp or cluster.nodes",
        )
        need(
            model.moe_ffn_hidden_size % etp == 0,
            f"model.moe_ffn_hidden_size={model.moe_ffn_hidden_size} is not divisible by expert "
            f"tensor parallel {etp} (parallel.etp)",
        )
        need(
            p.tp == 1 or p.sequence_parallel,
            f"MoE with parallel.tp={p.tp} needs parallel.sequence_parallel=true "
            "(megatron-core refuses to train MoE with TP>1 without it)",
        )
    else:
        need(p.ep == 1, f"parallel.ep={p.ep} needs an MoE model (model.num_experts > 0)")
    if p.cp > 1:
        need(
            seq_length % (2 * p.cp) == 0,
            f"seq_length={seq_length} is not divisible by 2 x parallel.cp = {2 * p.cp} "
            "(context parallelism splits each sequence into 2 x CP chunks)",
        )
    if p.sequence_parallel and p.tp > 1:
        need(
            seq_length % p.tp == 0,
            f"seq_length={seq_length} is not divisible by parallel.tp={p.tp} (sequence parallel)",
        )
    need(micro_batch_size >= 1, f"micro_batch_size={micro_batch_size} must be >= 1")
    need(
        global_batch_size is None
        or (micro_batch_size >= 1 and global_batch_size % (micro_batch_size * dp) == 0),
        f"global_batch_size={global_batch_size} is not divisible by micro_batch_size x DP = "
        f"{micro_batch_size} x {dp}: change train.global_batch_size, train.micro_batch_size "
        "or the number of GPUs",
    )
    errors += _performance_errors(model, p)
    if errors:
        raise LayoutError(_format(errors))
    return Layout(
        world_size=world_size,
        tp=p.tp,
        pp=p.pp,
        vpp=p.vpp,
        cp=p.cp,
        ep=p.ep,
        etp=etp,
        dp=dp,
        sequence_parallel=p.sequence_parallel and p.tp > 1,
        grad_accum_steps=(global_batch_size or 0) // (micro_batch_size * dp),
    )


def _is(enum: type[StrEnum], value: object) -> bool:
    return isinstance(value, str) and value in {e.value for e in enum}


def _performance_errors(model: ModelConfig, p: ParallelConfig) -> list[str]:
    """The recompute / overlap / dispatcher settings megatron-core would reject later."""
    errors: list[str] = []
    if p.recompute is not None and not _is(Recompute, p.recompute):
        errors.append(f"parallel.recompute={p.recompute!r} must be null or one of "
                      f"{', '.join(repr(e.value) for e in Recompute)}")
    elif p.recompute in (Recompute.moe, Recompute.moe_act) and not model.is_moe:
        errors.append(f"parallel.recompute={p.recompute} needs an MoE model: use "
                      "parallel.recompute=full (or null) for a dense model")
    elif p.recompute == Recompute.moe_act and not p.moe_grouped_gemm:
        errors.append("parallel.recompute=moe_act needs parallel.moe_grouped_gemm=true "
                      "(megatron-core recomputes the SwiGLU of grouped experts only)")
    if not _is(MoeDispatcher, p.moe_token_dispatcher):
        errors.append(f"parallel.moe_token_dispatcher={p.moe_token_dispatcher!r} must be one of "
                      f"{', '.join(repr(e.value) for e in MoeDispatcher)}")
    if not _is(CrossEntropyImpl, p.cross_entropy_fusion_impl):
        errors.append(f"parallel.cross_entropy_fusion_impl={p.cross_entropy_fusion_impl!r} must "
                      f"be one of {', '.join(repr(e.value) for e in CrossEntropyImpl)}")
    if p.overlap_param_gather and not p.distributed_optimizer:
        errors.append("parallel.overlap_param_gather=true needs "
                      "parallel.distributed_optimizer=true (it gathers the optimizer's shards)")
    if p.tp_comm_overlap and not (p.tp > 1 and p.sequence_parallel):
        errors.append(f"parallel.tp_comm_overlap=true needs parallel.tp > 1 (is {p.tp}) and "
                      "parallel.sequence_parallel=true")
    return errors


def _format(errors: list[str]) -> str:
    return "impossible parallel layout:\n" + "\n".join(f"  - {e}" for e in errors)
