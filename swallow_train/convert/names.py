"""The Hugging Face <-> megatron-core name map of Qwen3 and Qwen3-MoE, as data.

Each `Rule` pairs one megatron-core parameter with the HF tensor(s) it is made of, the transform
between them (`Transform`) and how tensor parallelism shards the megatron tensor (`TPSplit`).
`{layer}` is the global layer index, `{expert}` the global expert index. Two name families exist
on the megatron side: the Transformer Engine spec fuses the input / pre-MLP RMSNorm into
`linear_qkv` / `linear_fc1` (`layer_norm_weight`), the local spec keeps separate norms; experts
are either sequential (`local_experts.E.linear_fc1.weight`) or grouped-GEMM
(`experts.linear_fc1.weightE`).

    from swallow_train.convert.names import NameMap, Spec
    nm = NameMap(model_cfg, Spec.local)
    nm.hf_shapes()      # every HF tensor of the checkpoint, in canonical order
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from swallow_train.models.config import ModelConfig


class Spec(Enum):
    """megatron-core layer spec: which names the attention / MLP norms get."""

    local = "local"
    te = "te"


class Experts(Enum):
    """How the MoE experts are stored in megatron-core."""

    sequential = "sequential"
    """`SequentialMLP` (local spec; TE spec without grouped GEMM)."""
    grouped = "grouped"
    """`TEGroupedMLP` (TE spec with `moe_grouped_gemm`)."""


class Transform(Enum):
    copy = "copy"
    qkv = "qkv"
    """q, k, v -> one tensor, interleaved per query group (see transforms.qkv_merge)."""
    gate_up = "gate_up"
    """gate, up -> one tensor, gate first."""


class TPSplit(Enum):
    """How (expert) tensor parallelism shards the megatron tensor."""

    replicated = "replicated"
    rows = "rows"
    """dim 0: column-parallel output features, the vocabulary."""
    cols = "cols"
    """dim 1: row-parallel input features."""
    qkv = "qkv"
    """dim 0 by whole query groups (each rank holds q_g, k_g, v_g of its groups)."""
    gate_up = "gate_up"
    """dim 0 of gate and of up separately: rank i holds [gate_i; up_i]."""


@dataclass(frozen=True)
class Rule:
    mcore: str
    hf: tuple[str, ...]
    transform: Transform = Transform.copy
    tp: TPSplit = TPSplit.replicated
    expert: bool = False
    """An expert weight: sharded by expert parallelism and expert tensor parallelism."""
    export: bool = True
    """False for a megatron copy of a tensor exported elsewhere (tied output layer)."""


L = "decoder.layers.{layer}."
H = "model.layers.{layer}."

EMBEDDING = Rule("embedding.word_embeddings.weight", ("model.embed_tokens.weight",),
                 tp=TPSplit.rows)
FINAL_NORM = Rule("decoder.final_layernorm.weight", ("model.norm.weight",))
OUTPUT = Rule("output_layer.weight", ("lm_head.weight",), tp=TPSplit.rows)
OUTPUT_TIED = Rule("output_layer.weight", ("model.embed_tokens.weight",), tp=TPSplit.rows,
                   export=False)
"""With tied embeddings the last pipeline stage keeps its own copy of the embedding."""

_QKV = (H + "self_attn.q_proj.weight", H + "self_attn.k_proj.weight", H + "self_attn.v_proj.weight")
_ATTENTION = (
    Rule(L + "self_attention.linear_qkv.weight", _QKV, Transform.qkv, TPSplit.qkv),
    Rule(L + "self_attention.q_layernorm.weight", (H + "self_attn.q_norm.weight",)),
    Rule(L + "self_attention.k_layernorm.weight", (H + "self_attn.k_norm.weight",)),
    Rule(L + "self_attention.linear_proj.weight", (H + "self_attn.o_proj.weight",),
         tp=TPSplit.cols),
)
_INPUT_NORM = (H + "input_layernorm.weight",)
_POST_NORM = (H + "post_attention_layernorm.weight",)

ATTENTION: dict[Spec, tuple[Rule, ...]] = {
    Spec.local: (Rule(L + "input_layernorm.weight", _INPUT_NORM), *_ATTENTION),
    Spec.te: (Rule(L + "self_attention.linear_qkv.layer_norm_weight", _INPUT_NORM), *_ATTENTION),
}

_DENSE_FC = (
    Rule(L + "mlp.linear_fc1.weight", (H + "mlp.gate_proj.weight", H + "mlp.up_proj.weight"),
         Transform.gate_up, TPSplit.gate_up),
    Rule(L + "mlp.linear_fc2.weight", (H + "mlp.down_proj.weight",), tp=TPSplit.cols),
)
DENSE_MLP: dict[Spec, tuple[Rule, ...]] = {
    Spec.local: (Rule(L + "pre_mlp_layernorm.weight", _POST_NORM), *_DENSE_FC),
    Spec.te: (Rule(L + "mlp.linear_fc1.layer_norm_weight", _POST_NORM), *_DENSE_FC),
}

# MoE layers keep a separate pre-MLP norm in both specs (the router reads its output).
MOE_MLP: tuple[Rule, ...] = (
    Rule(L + "pre_mlp_layernorm.weight", _POST_NORM),
    Rule(L + "mlp.router.weight", (H + "mlp.gate.weight",)),
)

_E = H + "mlp.experts.{expert}."
_EXPERT_GATE_UP = (_E + "gate_proj.weight", _E + "up_proj.weight")
EXPERTS: dict[Experts, tuple[Rule, ...]] = {
    Experts.sequential: (
        Rule(L + "mlp.experts.local_experts.{expert}.linear_fc1.weight", _EXPERT_GATE_UP,
             Transform.gate_up, TPSplit.gate_up, expert=True),
        Rule(L + "mlp.experts.local_experts.{expert}.linear_fc2.weight", (_E + "down_proj.weight",),
             tp=TPSplit.cols, expert=True),
    ),
    Experts.grouped: (
        Rule(L + "mlp.experts.linear_fc1.weight{expert}", _EXPERT_GATE_UP,
             Transform.gate_up, TPSplit.gate_up, expert=True),
        Rule(L + "mlp.experts.linear_fc2.weight{expert}", (_E + "down_proj.weight",),
             tp=TPSplit.cols, expert=True),
    ),
}


def rules(model: ModelConfig, spec: Spec, experts: Experts = Experts.sequential) -> list[Rule]:
    """Every rule of one architecture (the output layer's depends on tied embeddings)."""
    layer = [*ATTENTION[spec]]
    layer += [*MOE_MLP, *EXPERTS[experts]] if model.is_moe else [*DENSE_MLP[spec]]
    return [EMBEDDING, *layer, FINAL_NORM, OUTPUT_TIED if model.tie_word_embeddings else OUTPUT]


def _regex(pattern: str) -> re.Pattern[str]:
    text = re.escape(pattern)
    for field in ("layer", "expert"):
        text = text.replace(re.escape("{" + field + "}"), f"(?P<{field}>\\d+)")
    return re.compile(text + "$")


@dataclass(frozen=True)
class Match:
    rule: Rule
    layer: int | None
    expert: int | None

    def hf_names(self) -> tuple[str, ...]:
        return tuple(n.format(layer=self.layer, expert=self.expert) for n in self.rule.hf)

    def mcore_name(self) -> str:
        return self.rule.mcore.format(layer=self.layer, expert=self.expert)


class NameMap:
    """The rules of one model and spec, with name matching and the full HF tensor list."""

    def __init__(self, model: ModelConfig, spec: Spec, experts: Experts = Experts.sequential):
        self.model = model
        self.rules = rules(model, spec, experts)
        self._compiled = [(_regex(r.mcore), r) for r in self.rules]

    def match(self, mcore_name: str) -> Match | None:
        """The rule of a megatron parameter name (layer / expert indices as written in it)."""
        for regex, rule in self._compiled:
            found = regex.match(mcore_name)
            if found:
                groups = found.groupdict()
                layer, expert = groups.get("layer"), groups.get("expert")
                return Match(rule, None if layer is None else int(layer),
                             None if expert is None else int(expert))
        return None

    def instances(self) -> list[Match]:
        """Every (rule, layer, expert) of the whole model, in canonical HF order."""
        m = self.model
        out: list[Match] = []
        for rule in self.rules:
            if "{layer}" not in rule.mcore:
                continue
            for layer in range(m.num_layers):
                experts = range(m.num_experts) if rule.expert else [None]
                out += [Match(rule, layer, e) for e in experts]
        out.sort(key=lambda x: (x.layer, x.expert is not None, x.expert or 0))
        head = [Match(r, None, None) for r in self.rules if "{layer}" not in r.mcore]
        return [head[0], *out, *head[1:]]

    def hf_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor of the HF checkpoint with its shape, in canonical order."""
        m = self.model
        h, hd = m.hidden_size, m.head_dim
        ffn = m.moe_ffn_hidden_size if m.is_moe else m.ffn_hidden_size
        shapes = {
            "embed_tokens": (m.vocab_size, h), "lm_head": (m.vocab_size, h),
            "q_proj": (m.num_attention_heads * hd, h), "k_proj": (m.num_key_value_heads * hd, h),
            "v_proj": (m.num_key_value_heads * hd, h), "o_proj": (h, m.num_attention_heads * hd),
            "q_norm": (hd,), "k_norm": (hd,), "gate_proj": (ffn, h), "up_proj": (ffn, h),
            "down_proj": (h, ffn), "gate": (m.num_experts, h),
        }
        out: dict[str, tuple[int, ...]] = {}
        for match in self.instances():
            if not match.rule.export:
                continue
            for name in match.hf_names():
                module = name.split(".")[-2]
                out[name] = shapes.get(module, (h,))
        return out
