"""write_hf_checkpoint / read_hf_state_dict: complete, loadable, deterministic, atomic output and
errors that name the tensor."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from swallow_train.convert.hf_io import (
    read_hf_config,
    read_hf_state_dict,
    resolve_hf_path,
    write_hf_checkpoint,
)
from swallow_train.convert.names import NameMap, Spec
from swallow_train.convert.shards import plan_shards
from swallow_train.convert.transforms import ConversionError
from tests.convert.helpers import preset, random_hf_model, random_hf_state_dict

TOKENIZER = "bundled:qwen3"


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def moe():
    model = preset("tiny_moe", vocab_size=151936)
    return model, random_hf_state_dict(model, seed=3)


def test_write_read_round_trip_and_files(tmp_path, moe):
    model, sd = moe
    out = write_hf_checkpoint(sd, model, tmp_path / "hf", tokenizer=TOKENIZER,
                              max_shard_bytes=8 * 2**20, progress=False)
    files = {p.name for p in out.iterdir()}
    shards = sorted(f for f in files if f.endswith(".safetensors"))
    assert shards == [f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                      for i in range(1, len(shards) + 1)] and len(shards) > 1
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(sd) and set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == sum(t.numel() * 2 for t in sd.values())
    back = read_hf_state_dict(out)
    assert back.keys() == sd.keys()
    assert all(back[k].dtype == torch.bfloat16 and torch.equal(back[k], sd[k].bfloat16())
               for k in sd)
    # each shard is a valid safetensors file for the reference reader too
    assert set().union(*(load_file(out / s).keys() for s in shards)) == set(sd)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen3MoeForCausalLM"]
    assert config["torch_dtype"] == "bfloat16"
    assert read_hf_config(out).num_experts == model.num_experts
    gen = json.loads((out / "generation_config.json").read_text())
    assert (gen["temperature"], gen["top_p"], gen["top_k"], gen["min_p"]) == (0.6, 0.95, 20, 0.0)
    assert gen["eos_token_id"] == [151645, 151643]
    assert {"tokenizer.json", "tokenizer_config.json"} <= files
    template = (out / "chat_template.jinja").read_text() if "chat_template.jinja" in files else \
        json.loads((out / "tokenizer_config.json").read_text())["chat_template"]
    assert "<|im_start|>" in template


def test_the_tokenizer_loads_without_the_mistral_regex_warning(tmp_path, moe, caplog):
    """config.json names the transformers that wrote it, as save_pretrained does: without it,
    transformers 5 warns on every load that the tokenizer's regex may be wrong."""
    import transformers
    from transformers import AutoTokenizer

    model, sd = moe
    out = write_hf_checkpoint(sd, model, tmp_path / "hf", tokenizer=TOKENIZER, progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["transformers_version"] == transformers.__version__
    transformers.utils.logging.enable_propagation()
    try:
        AutoTokenizer.from_pretrained(str(out))
        del config["transformers_version"]  # the old export: the warning this test guards
        (out / "config.json").write_text(json.dumps(config))
        assert "incorrect regex" not in caplog.text
        AutoTokenizer.from_pretrained(str(out))
        assert "incorrect regex" in caplog.text
    finally:
        transformers.utils.logging.disable_propagation()


def test_same_tensors_give_byte_identical_files(tmp_path, moe):
    model, sd = moe
    a = write_hf_checkpoint(sd, model, tmp_path / "a", tokenizer=TOKENIZER, progress=False)
    b = write_hf_checkpoint({k: sd[k].clone() for k in reversed(sd)}, model, tmp_path / "b",
                            tokenizer=TOKENIZER, progress=False)
    assert _digests(a) == _digests(b)
    # how this process loaded the tokenizer (offline, from a local directory) is not exported:
    # an offline and an online process write the same bytes
    config = json.loads((a / "tokenizer_config.json").read_text())
    assert not {"is_local", "local_files_only"} & config.keys()
    assert config["eos_token"] == "<|im_end|>" and config["pad_token"] == "<|endoftext|>"


def test_fp32_output_is_bit_exact(tmp_path):
    model = preset("tiny_dense")
    sd = random_hf_state_dict(model)
    out = write_hf_checkpoint(sd, model, tmp_path / "hf", tokenizer=TOKENIZER,
                              dtype=torch.float32, progress=False)
    back = read_hf_state_dict(out)
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "float32"


@pytest.mark.parametrize("name,tied", [("tiny_moe", False), ("tiny_dense", True)])
def test_a_live_transformers_state_dict_is_written_like_save_pretrained(tmp_path, name, tied):
    """transformers 5 fuses a MoE layer's experts into 3D tensors and lists a tied lm_head; the
    files must still be the checkpoint layout save_pretrained writes."""
    model = preset(name, tie_word_embeddings=tied)
    net = random_hf_model(model)
    net.save_pretrained(tmp_path / "theirs")
    live = net.state_dict()
    assert any(k.endswith("experts.gate_up_proj") for k in live) == model.is_moe
    assert "lm_head.weight" in live  # listed even when tied
    ours = write_hf_checkpoint(live, model, tmp_path / "ours", tokenizer=TOKENIZER,
                               dtype=torch.float32, progress=False)
    a, b = read_hf_state_dict(ours), read_hf_state_dict(tmp_path / "theirs")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_existing_output_survives_a_failed_write_and_is_replaced_by_a_good_one(tmp_path):
    model = preset("tiny_dense")
    sd = random_hf_state_dict(model)
    out = tmp_path / "hf"
    out.mkdir()
    (out / "old.txt").write_text("previous export")
    with pytest.raises(Exception, match="no-such-tokenizer"):  # fails after the shards
        write_hf_checkpoint(sd, model, out, tokenizer=str(tmp_path / "no-such-tokenizer"),
                            progress=False)
    assert (out / "old.txt").read_text() == "previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no temporary left behind
    write_hf_checkpoint(sd, model, out, tokenizer=TOKENIZER, progress=False)
    assert not (out / "old.txt").exists() and (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


@pytest.mark.parametrize("problem", ["missing", "shape", "unexpected"])
def test_bad_state_dict_is_refused_naming_the_tensor(tmp_path, problem):
    model = preset("tiny_dense")
    sd = random_hf_state_dict(model)
    name = "model.layers.1.mlp.up_proj.weight"
    if problem == "missing":
        del sd[name]
    elif problem == "shape":
        sd[name] = torch.zeros(7, 64)
    else:
        name = "model.layers.2.mlp.up_proj.weight"
        sd[name] = torch.zeros(192, 64)
    with pytest.raises(ConversionError, match=name.replace(".", r"\.")):
        write_hf_checkpoint(sd, model, tmp_path / "hf", tokenizer=TOKENIZER, progress=False)
    assert not (tmp_path / "hf").exists()


def test_shard_plan_keeps_order_and_bounds():
    sizes = [("a", 4), ("b", 4), ("c", 9), ("d", 1), ("e", 3)]
    assert plan_shards(sizes, 8) == [["a", "b"], ["c"], ["d", "e"]]
    assert plan_shards(sizes, 100) == [["a", "b", "c", "d", "e"]]


def test_hub_id_without_network_names_the_fix(hub_offline):
    with pytest.raises(ConversionError, match="huggingface-cli download Qwen/Qwen3-8B-Base"):
        resolve_hf_path("Qwen/Qwen3-8B-Base")
    with pytest.raises(ConversionError, match="no such directory"):
        resolve_hf_path("./missing/checkpoint")


def test_canonical_order_puts_layers_in_numeric_order():
    names = list(NameMap(preset("tiny_dense", num_layers=12), Spec.local).hf_shapes())
    layers = [int(n.split(".")[2]) for n in names if n.startswith("model.layers.")]
    assert layers == sorted(layers)
    assert names[0] == "model.embed_tokens.weight" and names[-1] == "lm_head.weight"
