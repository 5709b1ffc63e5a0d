"""Per-GPU memory plan of a CPT/SFT layout, checked against the cluster's GPUs before any GPU hour.

    swallow-train cpt --dry-run model=qwen3_32b cluster=tsubame4 cluster.nodes=64

Parameters, fp32 gradient buffer and distributed-optimizer shards as megatron-core allocates
them; activations per Korthikanti et al. (2022, Table 2) as Megatron-LM's
`theoretical_memory_usage.py` counts them, adapted to Qwen3 (GQA, SwiGLU, q/k RMSNorm, no
dropout) and flash attention (no s^2 term, an fp32 softmax statistic per head); the logits over
the whole vocabulary (bf16 output, fp32 copy for the loss); MoE dispatch buffers; checkpoint
staging. The slime RL job's estimate is in `swallow_train.memory_plan_rl`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from swallow_train.models.config import ModelConfig
from swallow_train.parallel import Layout, LayoutError, ParallelConfig

GiB = 2**30
RUNTIME_BYTES = 3 * GiB
"""CUDA context, cuBLAS/TE workspaces and NCCL buffers per process."""
ALLOCATOR_MARGIN = 0.05
"""Caching-allocator fragmentation, as a share of the activations (Megatron-LM uses 5%)."""
BATCH_BYTES_PER_TOKEN = 28
"""tokens, labels, position ids (int64) and the loss mask (fp32) of one token."""
PREFETCH_DEPTH = 2


@dataclass(frozen=True)
class Gpu:
    name: str
    gib: float
    """Total device memory as nvidia-smi reports it."""


H100_80 = Gpu("H100 80 GB", 81559 / 1024)
H100_94 = Gpu("H100 94 GB", 95830 / 1024)
H200 = Gpu("H200 141 GB", 143771 / 1024)
CLUSTER_GPUS: dict[str, Gpu] = {"abci3": H200, "tsubame4": H100_94}
"""ABCI 3.0: 8 x H200 SXM per node; TSUBAME 4.0: 4 x H100 SXM5 94 GB HBM2e per node. Other
clusters (slurm, local) are not checked: their plan is printed against H100 80 GB and H200."""


@dataclass(frozen=True)
class MemoryPlan:
    items: list[tuple[str, float]]
    """(what, bytes) per GPU."""
    header: str
    gpu: Gpu | None
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(b for _, b in self.items)

    def fits(self, gpu: Gpu) -> bool:
        return self.total <= gpu.gib * GiB

    def describe(self) -> str:
        lines = [f"# memory plan per GPU: {self.header}"]
        lines += [f"#   {what:<58} {b / GiB:7.1f} GiB" for what, b in self.items]
        if self.gpu is not None:
            verdict = "fits" if self.fits(self.gpu) else "DOES NOT FIT"
            lines.append(f"#   {'total':<58} {self.total / GiB:7.1f} GiB of {self.gpu.gib:.1f} "
                         f"({self.gpu.name}, {self.total / (self.gpu.gib * GiB):.0%}): {verdict}")
        else:
            fits = ", ".join(f"{g.name} {'yes' if self.fits(g) else 'no'}" for g in (H100_80, H200))
            lines.append(f"#   {'total':<58} {self.total / GiB:7.1f} GiB (fits {fits})")
        lines += [f"#   {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def param_counts(model: ModelConfig) -> tuple[int, int, int]:
    """(transformer-layer parameters outside the experts, expert parameters, one embedding
    table); the output layer is a second table unless tied."""
    experts = (model.num_layers * model.num_experts * 3 * model.hidden_size
               * model.moe_ffn_hidden_size)
    embed = model.vocab_size * model.hidden_size
    tables = 1 if model.tie_word_embeddings else 2
    dense = model.num_params() - experts - tables * embed
    return dense, experts, embed


def activation_bytes_per_token(model: ModelConfig, tp: int, sp: bool, part: str = "layer") -> float:
    """Bytes one token leaves stored for backward in one transformer layer (bf16), without
    recompute. `part`: `layer`, `attention` or `mlp`. Korthikanti's 34 sbh for GPT becomes, per
    token (elements): attention 2h (norm input, QKV input) + (q + kv) (q/k norm inputs) +
    (q + 2 kv) (flash-attention q, k, v) + q (its output, the o_proj input) + 2 fp32/head
    (softmax statistics); MLP 2h (norm input, fc1 input) + 2f (SwiGLU input) + f (fc2 input).
    The norm inputs and the QKV/fc1 inputs are split over TP only with sequence parallel."""
    h, q = model.hidden_size, model.num_attention_heads * model.head_dim
    kv = model.num_key_value_heads * model.head_dim
    rep = tp if sp else 1  # divisor of the terms only sequence parallelism shards
    attn = 2 * 2 * h / rep + 2 * ((q + kv) + (q + 2 * kv) + q + 2 * model.num_attention_heads) / tp
    if model.is_moe:  # tokens are sequence-parallel (MoE with TP > 1 needs SP)
        f, k = model.moe_ffn_hidden_size, model.moe_router_topk
        mlp = (2 * 2 * h + 4 * model.num_experts + 2 * k * (2 * h + 3 * f)) / tp
    else:
        mlp = 2 * 2 * h / rep + 2 * 3 * model.ffn_hidden_size / tp
    return {"layer": attn + mlp, "attention": attn, "mlp": mlp}[part]


def plan_training(model: ModelConfig, parallel: ParallelConfig, layout: Layout, *,
                  seq_length: int, micro_batch_size: int, gpu: Gpu | None,
                  async_save: bool = False) -> MemoryPlan:
    """The per-GPU plan of the first pipeline stage (the most loaded one)."""
    tp, pp, cp = layout.tp, layout.pp, layout.cp
    sp = layout.sequence_parallel
    dense, experts, embed = param_counts(model)
    tables = (1 if model.tie_word_embeddings or pp > 1 else 2) * embed
    local_dense = (dense / pp + tables) / tp
    local_experts = experts / (pp * layout.ep * layout.etp)
    local = local_dense + local_experts
    shard_dense = layout.dp * cp if parallel.distributed_optimizer else 1
    shard_experts = (layout.world_size // (pp * layout.ep * layout.etp)
                     if parallel.distributed_optimizer else 1)
    optimizer = 12 * (local_dense / shard_dense + local_experts / shard_experts)

    tokens = seq_length * micro_batch_size / cp  # this rank's tokens of a micro-batch
    layers = model.num_layers / pp
    in_flight = pp if layout.grad_accum_steps == 0 else min(pp, layout.grad_accum_steps)
    if layout.vpp:
        in_flight *= 1 + (pp - 1) / (pp * layout.vpp)
    full = activation_bytes_per_token(model, tp, sp)
    layer_input = 2 * model.hidden_size / (tp if sp else 1)
    recompute = parallel.recompute
    if recompute == "full":
        stored, working = layer_input, full
    elif recompute == "moe" and model.is_moe:
        stored = activation_bytes_per_token(model, tp, sp, "attention") + layer_input
        working = activation_bytes_per_token(model, tp, sp, "mlp")
    elif recompute == "moe_act" and model.is_moe:  # output-discarding: SwiGLU + pre-MoE norm
        k, f = model.moe_router_topk, model.moe_ffn_hidden_size
        stored, working = full - 2 * (k * f + model.hidden_size) / tp, 0.0
    else:
        stored, working = full, 0.0
    activations = tokens * (stored * layers * in_flight + working)
    vocab = model.vocab_size / tp
    logits = tokens * (6 * vocab + 2 * 2 * model.hidden_size / (tp if sp else 1))
    items = [
        (f"parameters (bf16, {local / 1e9:.2f}B on this GPU)", 2 * local),
        ("gradients (fp32 buffer)", 4 * local),
        (f"optimizer (fp32 main + Adam m, v; sharded /{shard_dense}"
         + (f", experts /{shard_experts}" if model.is_moe else "") + ")", optimizer),
        (f"activations ({layers:g} layers x {in_flight:g} micro-batches, recompute "
         f"{recompute or 'none'})", activations),
        (f"logits ({tokens:,.0f} tokens x {vocab:,.0f} vocab, bf16 + fp32 loss)", logits),
    ]
    if model.is_moe:
        dispatch = 2 * 2 * tokens / tp * model.moe_router_topk * model.hidden_size
        items.append(("MoE dispatch buffers (alltoall send + receive)", dispatch))
    largest = max(embed / tp, 3 * model.hidden_size * max(model.ffn_hidden_size, 1) / tp)
    items.append(("checkpoint staging (fp32 copy of the largest tensor)", 4 * largest))
    items.append((f"batches ({PREFETCH_DEPTH} prefetched steps)",
                  BATCH_BYTES_PER_TOKEN * tokens * (1 + PREFETCH_DEPTH)
                  * max(layout.grad_accum_steps, 1)))
    items.append(("CUDA context, NCCL, workspaces + 5% allocator margin",
                  RUNTIME_BYTES + ALLOCATOR_MARGIN * activations))
    host = (2 + 12) * local / max(shard_dense, 1) if async_save else 0.0
    header = (f"seq {seq_length:,} x micro-batch {micro_batch_size}, TP{tp} PP{pp} CP{cp} "
              f"EP{layout.ep} SP {'on' if sp else 'off'}, recompute {recompute or 'none'}")
    notes = ([f"async save stages {host / GiB:.1f} GiB per GPU in pinned host memory"]
             if host else [])
    return MemoryPlan(items=items, header=header, gpu=gpu, notes=notes)


def _alternatives(model: ModelConfig, parallel: ParallelConfig, layout: Layout, **kw) -> list[str]:
    """Changes (fields and values) that make the plan fit, with their estimate."""
    out = []
    candidates: list[tuple[str, ParallelConfig, Layout]] = []
    if parallel.recompute != "full":
        candidates.append(("parallel.recompute=full", replace(parallel, recompute="full"), layout))
    dp = layout.dp
    node = kw.pop("gpus_per_node", None) or layout.world_size
    if dp % 2 == 0 and model.num_key_value_heads % (2 * layout.tp) == 0 and 2 * layout.tp <= node:
        sp = parallel.sequence_parallel or layout.tp == 1
        candidates.append((f"parallel.tp={2 * layout.tp}" + ("" if parallel.sequence_parallel else
                                                            " parallel.sequence_parallel=true"),
                           replace(parallel, tp=2 * layout.tp, sequence_parallel=sp),
                           replace(layout, tp=2 * layout.tp, dp=dp // 2, sequence_parallel=sp)))
    if dp % 2 == 0:
        candidates.append((f"parallel.cp={2 * layout.cp}", replace(parallel, cp=2 * layout.cp),
                           replace(layout, cp=2 * layout.cp, dp=dp // 2)))
    for fix, par, lay in candidates:  # TP stays within a node
        alt = plan_training(model, par, lay, **kw)
        if alt.fits(kw["gpu"]):
            out.append(f"{fix} (-> {alt.total / GiB:.0f} GiB)")
    return out


def check_training(model: ModelConfig, parallel: ParallelConfig, layout: Layout, *,
                   seq_length: int, micro_batch_size: int, cluster: str,
                   gpus_per_node: int | None = None) -> MemoryPlan:
    """The plan against `cluster`'s GPUs; LayoutError naming the fields to change if it does
    not fit. Clusters of unknown GPUs get the plan unchecked."""
    kw = dict(seq_length=seq_length, micro_batch_size=micro_batch_size,
              gpu=CLUSTER_GPUS.get(cluster))
    plan = plan_training(model, parallel, layout, **kw)
    if plan.gpu is None or plan.fits(plan.gpu):
        return plan
    fixes = _alternatives(model, parallel, layout, gpus_per_node=gpus_per_node, **kw)
    raise LayoutError(
        f"out of GPU memory: the memory plan needs {plan.total / GiB:.1f} GiB per GPU, the "
        f"{plan.gpu.name} of cluster {cluster} has {plan.gpu.gib:.1f}:\n{plan.describe()}"
        + (f"fix: set {' or '.join(fixes)}" if fixes else
           "fix: set parallel.recompute=full and raise parallel.tp/pp/cp (more GPUs per replica)"))
