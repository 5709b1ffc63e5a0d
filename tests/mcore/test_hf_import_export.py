"""HF <-> megatron-core: logits parity with `transformers` float32, bit-exact round trips, parallel
exports (TP=2, EP=2, TP=2 x ETP=2, PP=2 x VPP=2 in 2 gloo processes) byte-identical to the TP=1
export, export of a torch_dist checkpoint from disk, and errors naming the tensor.

Tolerance: megatron's fp32 logits equal transformers' fp32 logits to max |diff| < 2e-5. Measured on
logits of magnitude ~3: 0.0 for dense TP=1, ~1e-6 for MoE, 2.2e-6 for dense TP=2 (the TP split
reorders the fp32 sums); a wrong router normalisation moves them by ~0.4, a wrong layout by more.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from swallow_train.convert.hf_io import read_hf_state_dict
from swallow_train.convert.transforms import ConversionError
from swallow_train.parallel import ParallelConfig
from tests.convert.helpers import preset, random_hf_model
from tests.distributed import run_distributed
from tests.mcore._convert_workers import build, layouts_worker, logits, save_torch_dist

TOL = 2e-5
TOKENIZER = "bundled:qwen3"
IDS = torch.randint(0, 1024, (2, 16), generator=torch.Generator().manual_seed(1))


def _hf_case(tmp: Path, name: str, **overrides) -> dict:
    model = preset(name, **overrides)
    net = random_hf_model(model, seed=0)
    net.save_pretrained(tmp / "hf")
    with torch.no_grad():
        reference = net(IDS).logits
    return {"model": model, "net": net, "hf_dir": tmp / "hf", "reference": reference}


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    return _hf_case(tmp_path_factory.mktemp("dense"), "tiny_dense", num_layers=4)


@pytest.fixture(scope="module")
def dense_tied(tmp_path_factory):
    return _hf_case(tmp_path_factory.mktemp("tied"), "tiny_dense", num_layers=4,
                    tie_word_embeddings=True)


@pytest.fixture(scope="module")
def moe(tmp_path_factory):
    return _hf_case(tmp_path_factory.mktemp("moe"), "tiny_moe")


@pytest.fixture(scope="module")
def moe_unnormalised(tmp_path_factory):
    return _hf_case(tmp_path_factory.mktemp("moe_nonorm"), "tiny_moe", norm_topk_prob=False)


def _import(case: dict, precision: str = "fp32") -> list[torch.nn.Module]:
    from swallow_train.mcore.hf_import import load_hf_into_model

    chunks = build(case["model"], ParallelConfig(), world_size=1, precision=precision)
    load_hf_into_model(chunks, case["model"], str(case["hf_dir"]), progress=False)
    return chunks


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("which", ["dense", "dense_tied", "moe", "moe_unnormalised"])
def test_logits_match_transformers_fp32(request, which):
    case = request.getfixturevalue(which)
    diff = (logits(_import(case), IDS) - case["reference"]).abs().max().item()
    assert diff < TOL, f"max |megatron - transformers| = {diff}"
    if case["model"].is_moe:  # the router setting matters far beyond the tolerance
        for layer in case["net"].model.layers:
            layer.mlp.gate.norm_topk_prob = not case["model"].norm_topk_prob
        with torch.no_grad():
            flipped = case["net"](IDS).logits
        for layer in case["net"].model.layers:
            layer.mlp.gate.norm_topk_prob = case["model"].norm_topk_prob
        assert (flipped - case["reference"]).abs().max().item() > 100 * TOL


@pytest.fixture(scope="module")
def tp1_exports(request, tmp_path_factory):
    """The TP=1 fp32 exports every parallel layout must reproduce byte for byte."""
    from swallow_train.mcore.hf_export import export_to_hf

    root = tmp_path_factory.mktemp("tp1")
    exports = {}
    for name in ("dense", "dense_tied", "moe"):
        case = request.getfixturevalue(name)
        exports[name] = export_to_hf(_import(case), case["model"], root / name,
                                     tokenizer=TOKENIZER, dtype=torch.float32, progress=False)
    return exports


@pytest.mark.parametrize("which", ["dense", "dense_tied", "moe"])
def test_hf_megatron_hf_round_trip_is_bit_exact(request, tp1_exports, which):
    case = request.getfixturevalue(which)
    original = read_hf_state_dict(case["hf_dir"])
    exported = read_hf_state_dict(tp1_exports[which])
    assert exported.keys() == original.keys()
    assert all(torch.equal(exported[k], original[k]) for k in original)
    config = json.loads((tp1_exports[which] / "config.json").read_text())
    assert config["architectures"] == [case["model"].hf_architecture]


def test_exported_directory_loads_in_transformers_and_generates(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swallow_train.mcore.hf_export import export_to_hf

    case = _hf_case(tmp_path, "tiny_dense", vocab_size=151936)  # the real tokenizer's vocab
    out = export_to_hf(_import(case), case["model"], tmp_path / "export", tokenizer=TOKENIZER,
                       progress=False)
    net = AutoModelForCausalLM.from_pretrained(out)
    assert net.dtype == torch.bfloat16
    original = case["net"].state_dict()
    assert all(torch.equal(t, original[k].bfloat16()) for k, t in net.state_dict().items())
    gen = net.generation_config
    assert (gen.temperature, gen.top_p, gen.top_k, gen.min_p) == (0.6, 0.95, 20, 0.0)
    tok = AutoTokenizer.from_pretrained(out)
    prompt = tok.apply_chat_template([{"role": "user", "content": "こんにちは"}],
                                     add_generation_prompt=True, return_tensors="pt",
                                     return_dict=True)
    torch.manual_seed(0)
    ids = net.generate(**prompt, max_new_tokens=6, min_new_tokens=6)
    assert ids.shape[1] == prompt["input_ids"].shape[1] + 6
    assert isinstance(tok.decode(ids[0]), str)


def test_export_of_a_bf16_torch_dist_checkpoint_from_disk(dense, tmp_path):
    """The CLI path: a bf16 training checkpoint (model beside optimizer keys) exported in one
    process equals the bf16 cast of the original HF weights."""
    import torch.distributed as dist

    from swallow_train.convert.cli import main

    chunks = _import(dense, precision="bf16")
    assert dist.get_world_size() == 1
    save_torch_dist(chunks, tmp_path / "checkpoints", step=12)
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"model": asdict(dense["model"])}))
    code = main(["--checkpoint", str(tmp_path / "checkpoints"), "--config", str(config),
                 "--out", str(tmp_path / "hf")])
    assert code == 0
    exported, original = read_hf_state_dict(tmp_path / "hf"), read_hf_state_dict(dense["hf_dir"])
    assert all(exported[k].dtype == torch.bfloat16 and torch.equal(exported[k], v.bfloat16())
               for k, v in original.items())
    from swallow_train.mcore.hf_export import export_checkpoint

    with pytest.raises(ConversionError, match="Global shape mismatch"):  # 4 layers saved, 2 asked
        export_checkpoint(tmp_path / "checkpoints", replace(dense["model"], num_layers=2),
                          tmp_path / "wrong", tokenizer=TOKENIZER, progress=False)
    assert not (tmp_path / "wrong").exists()


def test_export_of_a_te_spec_moe_checkpoint_on_the_local_spec(moe, tp1_exports, tmp_path):
    """The TE spec saves an MoE layer's norm as `pre_mlp_layernorm`, the local spec asks for
    `mlp.linear_fc1.layer_norm_weight`: a GPU-trained MoE checkpoint must still export on CPU."""
    from swallow_train.mcore.hf_export import export_checkpoint

    te_key = {"decoder.layers.mlp.linear_fc1.layer_norm_weight":
              "decoder.layers.pre_mlp_layernorm.weight"}
    save_torch_dist(_import(moe), tmp_path / "ckpt", step=3, rename=te_key)
    out = export_checkpoint(tmp_path / "ckpt", moe["model"], tmp_path / "hf", tokenizer=TOKENIZER,
                            dtype=torch.float32, progress=False)
    assert _digests(out) == _digests(tp1_exports["moe"])
    tied = replace(moe["model"], tie_word_embeddings=True)  # would silently drop the lm_head
    with pytest.raises(ConversionError, match=r"lacks: \['output_layer\.weight'\]"):
        export_checkpoint(tmp_path / "ckpt", tied, tmp_path / "wrong", tokenizer=TOKENIZER,
                          progress=False)


def _broken_copy(case: dict, tmp: Path, edit) -> Path:
    sd = read_hf_state_dict(case["hf_dir"])
    edit(sd)
    case["net"].config.save_pretrained(tmp)
    from safetensors.torch import save_file

    save_file(sd, tmp / "model.safetensors", metadata={"format": "pt"})
    return tmp


@pytest.mark.parametrize("problem", ["shape", "missing"])
def test_import_names_the_bad_tensor(dense, tmp_path, problem):
    from swallow_train.mcore.hf_import import load_hf_into_model

    name = "model.layers.2.self_attn.k_proj.weight"

    def edit(sd):
        if problem == "shape":
            sd[name] = sd[name][:16].clone()
        else:
            del sd[name]

    path = _broken_copy(dense, tmp_path, edit)
    chunks = build(dense["model"], ParallelConfig(), world_size=1)
    with pytest.raises(ConversionError, match=name.replace(".", r"\.")):
        load_hf_into_model(chunks, dense["model"], str(path), progress=False)


def test_import_refuses_a_config_that_changes_the_function(dense):
    from swallow_train.mcore.hf_import import load_hf_into_model

    model = replace(dense["model"], rope_theta=10_000.0)
    chunks = build(model, ParallelConfig(), world_size=1)
    with pytest.raises(ConversionError, match=r"model\.rope_theta=10000\.0"):
        load_hf_into_model(chunks, model, str(dense["hf_dir"]), progress=False)


# ---- 2 processes ---------------------------------------------------------------------------

CASES = {
    "dense": [{"name": "dense-tp2", "parallel": {"tp": 2}},
              {"name": "dense-pp2-vpp2", "parallel": {"pp": 2, "vpp": 2},
               "save_checkpoint": True}],
    "dense_tied": [{"name": "tied-pp2", "parallel": {"pp": 2}}],
    "moe": [{"name": "moe-ep2", "parallel": {"ep": 2}},
            {"name": "moe-tp2-etp2", "parallel": {"tp": 2, "etp": 2, "sequence_parallel": True}}],
}


@pytest.fixture(scope="module")
def parallel_runs(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    jobs = []
    for name, cases in CASES.items():
        case = request.getfixturevalue(name)
        jobs.append({"model": asdict(case["model"]), "hf_dir": str(case["hf_dir"]), "ids": IDS,
                     "reference_logits": case["reference"], "cases": cases})
    return root, run_distributed(layouts_worker, world_size=2, jobs=jobs, out_root=str(root))


ALL = [(m, c["name"]) for m, cases in CASES.items() for c in cases]


@pytest.mark.dist
@pytest.mark.parametrize("which,name", ALL, ids=[n for _, n in ALL])
def test_parallel_export_is_byte_identical_to_tp1(parallel_runs, tp1_exports, which, name):
    root, results = parallel_runs
    assert results[0][name]["export"] == str(root / name)  # rank 0 wrote it
    assert results[1][name]["export"] is None
    assert _digests(root / name) == _digests(tp1_exports[which])


@pytest.mark.dist
@pytest.mark.parametrize("name", ["dense-tp2", "moe-ep2", "moe-tp2-etp2"])
def test_parallel_logits_match_transformers(parallel_runs, name):
    for rank in range(2):
        diff = parallel_runs[1][rank][name]["logits_diff"]
        assert diff < TOL, f"rank {rank}: max |megatron - transformers| = {diff}"


@pytest.mark.dist
def test_tied_output_layer_of_the_last_stage_is_the_embedding(parallel_runs):
    """Not exported (the embedding is), so only this check covers its import at PP=2."""
    assert [r["tied-pp2"]["tied_output"] for r in parallel_runs[1]] == [None, True]


@pytest.mark.dist
def test_export_checkpoint_of_a_pp2_vpp2_torch_dist_checkpoint(parallel_runs, dense, tp1_exports):
    from swallow_train.mcore.hf_export import export_checkpoint

    root = parallel_runs[0]
    out = export_checkpoint(root / "dense-pp2-vpp2-ckpt", dense["model"], root / "from-ckpt",
                            tokenizer=TOKENIZER, dtype=torch.float32, progress=False)
    assert _digests(out) == _digests(tp1_exports["dense"])
