"""Per-GPU memory estimate of the slime RL job: the Megatron actor at `slime.max_tokens_per_gpu`
and, with colocate, SGLang's static pool (`slime.sglang_mem_fraction_static`) on the same GPUs.

    swallow-train rl --dry-run model=qwen3_32b cluster=abci3 cluster.nodes=4

Printed, and refused like a training plan when the actor does not fit the cluster's GPUs or
SGLang's pool cannot hold the weights and one longest sample's KV cache.
"""

from __future__ import annotations

from dataclasses import replace

from swallow_train.memory_plan import CLUSTER_GPUS, RUNTIME_BYTES, GiB, MemoryPlan
from swallow_train.memory_plan import plan_training as _plan
from swallow_train.models.config import ModelConfig
from swallow_train.parallel import LayoutError, ParallelConfig, validate_layout


def kv_bytes_per_token(model: ModelConfig, engine_tp: int) -> float:
    """bf16 K and V of every layer for one token, per GPU of a TP engine (KV heads are split
    over TP, replicated when TP exceeds them)."""
    heads = max(model.num_key_value_heads / engine_tp, 1)
    return model.num_layers * 2 * heads * model.head_dim * 2


def plan_rl(model: ModelConfig, parallel: ParallelConfig, *, world_size: int, cluster: str,
            max_tokens_per_gpu: int, colocate: bool, mem_fraction: float, engine_gpus: int,
            optimizer_cpu_offload: bool, sample_tokens: int) -> MemoryPlan:
    """The actor's training phase as a training plan of `max_tokens_per_gpu` tokens, plus the
    SGLang pool's weights and KV-cache capacity; raises LayoutError when it cannot run."""
    gpu = CLUSTER_GPUS.get(cluster)
    layout = validate_layout(model, parallel, world_size=world_size, global_batch_size=None,
                             micro_batch_size=1, seq_length=max_tokens_per_gpu * parallel.cp)
    actor = _plan(model, parallel, layout, seq_length=max_tokens_per_gpu * parallel.cp,
                  micro_batch_size=1, gpu=gpu)
    items = [(what.replace("batches (2 prefetched steps)", "rollout batch"), b)
             for what, b in actor.items]
    notes: list[str] = []
    if optimizer_cpu_offload:
        items = [(w, 0.0) if w.startswith("optimizer") else (w, b) for w, b in items]
        notes.append("optimizer state in host memory (slime.optimizer_cpu_offload)")
    weights = 2 * model.num_params() / engine_gpus
    gpu_bytes = (gpu.gib if gpu else 0.0) * GiB
    errors: list[str] = []
    if colocate:
        items.append(("SGLang while training (paused; context and graphs)", RUNTIME_BYTES))
        notes.append("colocate: Megatron is offloaded while SGLang rolls out, SGLang paused "
                     "while Megatron trains")
        if gpu:
            pool = mem_fraction * gpu_bytes
            kv = pool - weights
            per_token = kv_bytes_per_token(model, engine_gpus)
            samples = kv / per_token / sample_tokens if kv > 0 else 0.0
            notes.append(f"rollout: SGLang pool {mem_fraction:g} x {gpu.gib:.1f} = "
                         f"{pool / GiB:.1f} GiB = weights {weights / GiB:.1f} + KV cache "
                         f"{max(kv, 0) / GiB:.1f} GiB ({max(kv, 0) / per_token:,.0f} tokens per "
                         f"engine, {samples:.1f} samples of {sample_tokens:,} tokens at once)")
            if samples < 1:
                errors.append(f"SGLang's pool cannot hold the weights and one {sample_tokens:,}-"
                              f"token sample: raise slime.sglang_mem_fraction_static or "
                              f"slime.rollout_num_gpus_per_engine")
            if pool + RUNTIME_BYTES > gpu_bytes:
                errors.append("slime.sglang_mem_fraction_static leaves no room for SGLang's "
                              "activations and the offloaded actor's context: lower it")
    plan = MemoryPlan(items=items, gpu=gpu, notes=notes, header=(
        f"slime actor, {max_tokens_per_gpu:,} tokens per GPU (slime.max_tokens_per_gpu), "
        f"TP{layout.tp} PP{layout.pp} CP{layout.cp} EP{layout.ep}, recompute "
        f"{parallel.recompute or 'none'}"))
    if gpu and not plan.fits(gpu):
        fix = ("set parallel.recompute=full" if parallel.recompute != "full" else
               "lower slime.max_tokens_per_gpu (>= one sample / CP) or raise parallel.cp/tp")
        if not optimizer_cpu_offload:
            fix += " or slime.optimizer_cpu_offload=true"
        errors.append(f"the actor needs {plan.total / GiB:.1f} GiB per GPU, the {gpu.name} of "
                      f"cluster {cluster} has {gpu.gib:.1f}: {fix}")
    if errors:
        raise LayoutError("out of GPU memory (slime RL job):\n" + plan.describe()
                          + "\n".join(f"  - {e}" for e in errors))
    return plan


def rl_memory_plan(recipe) -> MemoryPlan:
    """The estimate for an RL recipe (`RLRecipe` with `backend=slime`)."""
    s, r = recipe.slime, recipe.rollout
    actor_gpus = recipe.cluster.world_size - (0 if s.colocate else (s.rollout_num_gpus or 0))
    sample = r.max_prompt_len + r.max_response_len
    tokens = s.max_tokens_per_gpu or -(-sample // recipe.parallel.cp)
    return plan_rl(recipe.model, replace(recipe.parallel), world_size=actor_gpus,
                   cluster=recipe.cluster.name, max_tokens_per_gpu=tokens, colocate=s.colocate,
                   mem_fraction=s.sglang_mem_fraction_static,
                   engine_gpus=s.rollout_num_gpus_per_engine,
                   optimizer_cpu_offload=s.optimizer_cpu_offload, sample_tokens=sample)
