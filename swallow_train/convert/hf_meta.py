"""What an HF export carries over from the checkpoint its stage started from (bos, eos and
generation_config.json), and the config.json settings an import refuses (rope scaling, sliding
windows) because the megatron-core model here would compute them differently.

    swallow-train cpt init.hf=/data/Qwen3-8B-Base   # records runs/<name>/cpt/start_checkpoint.json
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swallow_train.convert.transforms import ConversionError
from swallow_train.models.config import ModelConfig

if TYPE_CHECKING:
    from swallow_train.training import TrainRecipe

GENERATION_DEFAULTS: dict[str, Any] = {
    "do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0,
}
"""Qwen3's recommended sampling (thinking mode), written to generation_config.json."""
QWEN3_BOS, QWEN3_EOS = 151643, 151645
"""What a random-init export writes (Qwen3's config.json): <|endoftext|> and <|im_end|>."""
ENDOFTEXT, IM_END = 151643, 151645
"""Qwen3's <|endoftext|> and <|im_end|> ids (the same in every Qwen3 tokenizer)."""
START_RECORD = "start_checkpoint.json"
"""Written into a stage directory at its start: the start checkpoint's bos/eos and its
generation_config.json, which the stage's export (`hf/` beside it) writes back."""


@dataclass(frozen=True)
class StartTokens:
    """What an export carries over from the checkpoint its stage started from."""

    bos_token_id: int | None
    eos_token_id: int | list[int]
    generation_config: dict[str, Any] | None
    """The start checkpoint's generation_config.json; None: it had none (Qwen3 defaults)."""

    def for_chat(self, im_end: int, endoftext: int) -> StartTokens:
        """SFT trains chat turns that end in <|im_end|>, so its export makes <|im_end|> the
        eos (and stops generation on both it and <|endoftext|>, as the Qwen3 chat models do),
        with Qwen3's thinking-mode sampling defaults."""
        gen = {**(self.generation_config or {}), **GENERATION_DEFAULTS,
               "eos_token_id": [im_end, endoftext]}
        if self.bos_token_id is not None:
            gen["bos_token_id"] = self.bos_token_id
        return StartTokens(bos_token_id=self.bos_token_id, eos_token_id=im_end,
                           generation_config=gen)


def check_rope_and_window(hf: dict[str, Any], file: Path) -> None:
    """Refuse what megatron-core's plain RoPE model here would silently compute differently:
    a rope type other than the default (YaRN, linear, dynamic, ...) and sliding windows."""
    for key in ("rope_scaling", "rope_parameters"):
        value = hf.get(key)
        kind = value.get("rope_type", value.get("type")) if isinstance(value, dict) else None
        if kind not in (None, "default"):
            raise ConversionError(
                f"{file}: {key} has rope_type {kind!r} ({value}): only the default RoPE is "
                "implemented, so the logits would differ from transformers'. Set "
                f"\"{key}\": null in that config.json (train at the native context, "
                "max_position_embeddings) and add rope scaling back for inference only")
    if hf.get("use_sliding_window"):
        raise ConversionError(
            f"{file}: use_sliding_window is true (sliding_window {hf.get('sliding_window')}): "
            "only full attention is implemented, so the logits would differ from "
            "transformers'. Set \"use_sliding_window\": false in that config.json (Qwen3 "
            "checkpoints are trained with full attention)")


def read_start_tokens(path: str | os.PathLike[str]) -> StartTokens:
    """bos/eos of an HF checkpoint directory's config.json and its generation_config.json."""
    hf = json.loads((Path(path) / "config.json").read_text())
    gen_file = Path(path) / "generation_config.json"
    gen = json.loads(gen_file.read_text()) if gen_file.is_file() else None
    eos = hf.get("eos_token_id")
    return StartTokens(bos_token_id=hf.get("bos_token_id"),
                       eos_token_id=QWEN3_EOS if eos is None else eos, generation_config=gen)


def write_start_record(stage_dir: Path, tokens: StartTokens, source: str) -> None:
    """`{stage_dir}/start_checkpoint.json` (atomically), read back by the stage's export."""
    from dataclasses import asdict

    from swallow_train.checkpoint_files import write_atomic

    stage_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(stage_dir / START_RECORD,
                 json.dumps({"source": source, **asdict(tokens)}, indent=2, sort_keys=True) + "\n")


def read_start_record(stage_dir: Path) -> StartTokens | None:
    """The stage's start record, or None when it started from a random init."""
    file = stage_dir / START_RECORD
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
        return StartTokens(bos_token_id=data["bos_token_id"], eos_token_id=data["eos_token_id"],
                           generation_config=data["generation_config"])
    except (ValueError, KeyError) as exc:
        raise ConversionError(f"{file} is damaged ({exc.__class__.__name__}: {exc}): delete "
                              "it and rerun the stage (it is written again at start)") from None


def start_config_errors(model: ModelConfig, hf: dict[str, Any], file: Path) -> list[str]:
    """Settings of the start checkpoint's config.json that no tensor shape shows and that the
    preset must repeat: max_position_embeddings and (MoE) router_aux_loss_coef. The message
    gives the override that makes the preset match."""
    pairs = [("max_position_embeddings", "max_position_embeddings")]
    if model.is_moe and "router_aux_loss_coef" in hf:
        pairs.append(("moe_aux_loss_coeff", "router_aux_loss_coef"))
    return [f"model.{ours}={getattr(model, ours)!r} but {file} has {theirs} {hf[theirs]!r}: set "
            f"model.{ours}={hf[theirs]!r} (or start from a checkpoint with "
            f"{getattr(model, ours)!r})"
            for ours, theirs in pairs if theirs in hf and hf[theirs] != getattr(model, ours)]


def start_config_dir(source: str) -> Path:
    """The directory holding `source`'s config.json: a local HF directory as it is, or the
    *.json files of a hub id (cached; the weights come later, with the import)."""
    path = Path(source).expanduser()
    if path.is_dir() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, allow_patterns=["*.json"]))
    except Exception as exc:  # offline, unknown repo, gated repo: all need the same fix
        raise ConversionError(
            f"HF checkpoint {source!r} is no local directory and its config could not be fetched "
            f"from the Hugging Face hub ({exc.__class__.__name__}). Without hub access, download "
            f"it on a machine that has it (huggingface-cli download {source} --local-dir DIR), "
            "copy DIR here and pass DIR") from exc


def check_and_record_start(model: ModelConfig, source: str, stage_dir: Path, *,
                           chat: bool, record: bool) -> StartTokens | None:
    """Before a stage builds anything: refuse a start checkpoint whose config.json the preset
    does not reproduce (rope scaling, sliding window, max_position_embeddings, aux loss), then
    (`record`: rank 0) write what its export must carry over. `chat` (SFT): <|im_end|> becomes
    the eos. None when `source` has no config.json (the import then says what is wrong)."""
    file = start_config_dir(source) / "config.json"
    if not file.is_file():
        return None
    hf = json.loads(file.read_text())
    check_rope_and_window(hf, file)
    wrong = start_config_errors(model, hf, file)
    if wrong:
        raise ConversionError("the start checkpoint and the model preset disagree:\n  "
                              + "\n  ".join(wrong))
    tokens = read_start_tokens(file.parent)
    if chat:
        tokens = tokens.for_chat(IM_END, ENDOFTEXT)
    if record:
        write_start_record(stage_dir, tokens, source)
    return tokens


def check_start(recipe: TrainRecipe, stage_dir: Path, *, chat: bool) -> None:
    """The start checkpoint (`init`) against the preset, and (rank 0) its bos/eos and
    generation_config recorded for the stage's export; nothing for a random init."""
    source = recipe.init.resolve(recipe.run)
    if source is not None:
        check_and_record_start(recipe.model, source, stage_dir, chat=chat,
                               record=os.environ.get("RANK", "0") == "0")
