"""Every stage's export holds what vLLM reads (`swallow_train/serve/export_check.py`): the
model card's sampling defaults, the chat template, the `<think>` tokens of the qwen3 reasoning
parser, and the eos/bos that each stage carries over (README, Conversion). The exports are
written as the stages write them: CPT from a random init (no start record), SFT from the CPT
export (<|im_end|> becomes the eos), RL from the SFT export as it is. `tests/serve/` then
loads them in vLLM itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from swallow_train.config import compose
from swallow_train.convert.hf_io import write_hf_checkpoint
from swallow_train.convert.hf_meta import ENDOFTEXT, IM_END, read_start_tokens
from swallow_train.convert.names import NameMap, Spec
from swallow_train.serve.export_check import ServeError, check_export

MODEL_CARD = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0}
BOS, EOS, STOPS = ENDOFTEXT, IM_END, [IM_END, ENDOFTEXT]
"""What every tiny-pipeline export carries: CPT from a random init writes Qwen3's bos/eos, SFT
makes <|im_end|> the eos and stops on both, RL keeps the SFT export's. (A CPT from
Qwen3-8B-Base would keep the base model's eos 151643 and generation config instead.)"""


def write_stage_exports(root: Path, stages: tuple[str, ...] = ("cpt", "sft", "rl"),
                        preset: str = "tiny_dense") -> dict[str, Path]:
    """CPT -> SFT -> RL exports (the first `stages`) of the tiny preset (zero weights), as the
    stages write them."""
    model = compose("cpt", [f"model={preset}"]).model
    state = {n: torch.zeros(s) for n, s in NameMap(model, Spec.local).hf_shapes().items()}
    out: dict[str, Path] = {}
    start = None
    for stage in stages:
        out[stage] = write_hf_checkpoint(state, model, root / stage / "hf",
                                         tokenizer=model.tokenizer, progress=False, start=start)
        start = read_start_tokens(out[stage])
        if stage == "cpt":
            start = start.for_chat(IM_END, ENDOFTEXT)  # what the SFT stage records
    return out


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    return write_stage_exports(tmp_path_factory.mktemp("exports"))


@pytest.mark.parametrize("stage", ["cpt", "sft", "rl"])
def test_each_stage_export_holds_what_vllm_reads(exports: dict[str, Path], stage: str) -> None:
    info = check_export(exports[stage], cpu=True)
    assert info.architecture == "Qwen3ForCausalLM" and info.dtype == "bfloat16"
    assert info.sampling == MODEL_CARD  # the server's defaults (--generation-config auto)
    config = json.loads((exports[stage] / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"]) == (BOS, EOS)
    assert info.stop_ids == STOPS
    assert config["head_dim"] == 32 and config["hidden_size"] % 128 == 0  # CPU attention, AWQ
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(exports[stage])
    text = tok.apply_chat_template([{"role": "user", "content": "1+1?"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.convert_tokens_to_ids(["<think>", "</think>"]) == [151667, 151668]


def _broken(src: Path, dst: Path) -> Path:
    """A copy of `src` to damage: JSON and tokenizer files copied, weights linked."""
    import os
    import shutil

    def link_weights(a: str, b: str) -> None:
        os.symlink(a, b) if a.endswith(".safetensors") else shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link_weights)
    return dst


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: (d / "generation_config.json").unlink(), "generation_config.json is missing"),
    (lambda d: [f.unlink() for f in d.glob("chat_template*")]
     and _drop_key(d / "tokenizer_config.json", "chat_template"), "has no chat template"),
    (lambda d: _set(d / "generation_config.json", top_p=1.5), "top_p 1.5 must be a number"),
    (lambda d: _set(d / "config.json", head_dim=16), "head_dim 16 is not served by vLLM's CPU"),
    (lambda d: _set(d / "config.json", architectures=["LlamaForCausalLM"]),
     "architectures ['LlamaForCausalLM'] is not one of"),
    (lambda d: next(d.glob("*.safetensors")).unlink(), "is missing (named by model.safetensors"),
])
def test_what_vllm_would_refuse_is_named(exports, tmp_path, damage, message) -> None:
    broken = _broken(exports["rl"], tmp_path / "hf")
    damage(broken)
    with pytest.raises(ServeError, match="cannot be served by vLLM") as info:
        check_export(broken, cpu=True)
    assert message in str(info.value) and str(broken) in str(info.value)


def _set(file: Path, **values: object) -> None:
    file.write_text(json.dumps({**json.loads(file.read_text()), **values}))


def _drop_key(file: Path, key: str) -> None:
    data = json.loads(file.read_text())
    data.pop(key, None)
    file.write_text(json.dumps(data))


def test_one_unsharded_weights_file_without_an_index_is_served(exports, tmp_path) -> None:
    """The quantize stage saves a small model as one `model.safetensors` without an index, which
    vLLM and transformers read as it is; a file of another name without an index is not."""
    import shutil

    single = tmp_path / "hf"
    shutil.copytree(exports["rl"], single)
    shards = sorted(single.glob("*.safetensors"))
    (single / "model.safetensors.index.json").unlink()
    assert len(shards) == 1
    shards[0].rename(single / "other.safetensors")
    with pytest.raises(ServeError, match=r"model\.safetensors\.index\.json is missing"):
        check_export(single, cpu=True)
    (single / "other.safetensors").rename(single / "model.safetensors")
    assert check_export(single, cpu=True).path == single
