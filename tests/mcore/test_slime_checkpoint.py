"""`swallow-train export` of a checkpoint as Megatron-LM writes it under slime: `common.pt` holds
the pickled `args` namespace with a class that cannot be imported here
(`slime.utils.eval_config.EvalDatasetConfig`), which megatron-core 0.16.1's weights-only load
refuses; the vocabulary may be padded (152,064 rows for 8B at TP2). The export must give exactly
the export of the same weights, run nothing the pickle names, and check `args` against the
model."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import pickle
import shutil
import sys
import types
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pytest
import torch

from swallow_train.convert.cli import main as export_cli
from swallow_train.convert.common_pt import read_common_pt
from swallow_train.convert.hf_io import read_hf_state_dict
from swallow_train.parallel import ParallelConfig
from tests.convert.helpers import preset, save_random_hf
from tests.mcore._convert_workers import build, save_torch_dist

TOKENIZER = "bundled:qwen3"
MARKER = "swallow-train-pickle-ran"


@dataclass
class EvalDatasetConfig:  # pickled as slime.utils.eval_config.EvalDatasetConfig
    name: str
    path: str
    n_samples_per_eval_prompt: int = 1


class RunsCode:
    """Unpickling this with a normal loader would create a file (it must not happen)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (self.path,))  # type: ignore[return-value]


def slime_common_pt(path: Path, iteration: int, marker: Path, **args: object) -> None:
    """Write `path` as Megatron-LM does under slime: `args` (a Namespace holding slime's
    EvalDatasetConfig), `checkpoint_version`, `iteration`, scheduler state, content metadata."""
    names = ("slime", "slime.utils", "slime.utils.eval_config")
    module = types.ModuleType(names[-1])
    module.EvalDatasetConfig = EvalDatasetConfig  # type: ignore[attr-defined]
    saved = (EvalDatasetConfig.__module__, EvalDatasetConfig.__qualname__)
    EvalDatasetConfig.__module__ = names[-1]
    sys.modules.update({n: types.ModuleType(n) for n in names[:2]} | {names[-1]: module})
    try:
        namespace = argparse.Namespace(
            eval_datasets=[EvalDatasetConfig("dolci_heldout", "/data/eval.jsonl")],
            custom_rm_path="swallow_train.rl.reward.reward", ckpt_format="torch_dist",
            params_dtype=torch.bfloat16, hook=RunsCode(str(marker)), **args)
        torch.save({"args": namespace, "checkpoint_version": 3.0, "iteration": iteration,
                    "opt_param_scheduler": {"num_steps": iteration * 64},
                    "num_floating_point_operations_so_far": 1.5e15,
                    "content_metadata": {"singleton_local_shards": False,
                                         "distrib_optim_sharding_type": "dp_reshardable",
                                         "chained_optim_avoid_prefix": True}}, path)
    finally:
        for name in names:
            sys.modules.pop(name, None)
        EvalDatasetConfig.__module__, EvalDatasetConfig.__qualname__ = saved
    assert b"slime.utils.eval_config" in path.read_bytes() or _in_zip(path)


def _in_zip(path: Path) -> bool:
    import zipfile

    with zipfile.ZipFile(path) as z:
        return any(b"slime.utils.eval_config" in z.read(n) for n in z.namelist()
                   if n.endswith("data.pkl"))


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir()) if p.is_file()}


def _megatron_args(model) -> dict[str, object]:
    return {"num_layers": model.num_layers, "hidden_size": model.hidden_size,
            "num_attention_heads": model.num_attention_heads, "group_query_attention": True,
            "num_query_groups": model.num_key_value_heads, "kv_channels": model.head_dim,
            "ffn_hidden_size": model.ffn_hidden_size, "num_experts": None}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A bf16 torch_dist checkpoint of a tiny dense model (as slime saves, bf16) and the export
    of it with megatron's own common.pt."""
    from swallow_train.mcore.hf_import import load_hf_into_model

    tmp = tmp_path_factory.mktemp("slime_ckpt")
    model = preset("tiny_dense", num_layers=2)
    save_random_hf(model, tmp / "hf_in")
    chunks = build(model, ParallelConfig(), world_size=1, precision="bf16")
    load_hf_into_model(chunks, model, str(tmp / "hf_in"), progress=False)
    save_torch_dist(chunks, tmp / "ours", step=4)
    config = tmp / "config.yaml"
    config.write_text(json.dumps({"model": asdict(model)}))
    code = export_cli(["--checkpoint", str(tmp / "ours"), "--config", str(config),
                       "--out", str(tmp / "hf_ours"), "--tokenizer", TOKENIZER])
    assert code == 0
    return {"tmp": tmp, "model": model, "config": config, "hf": tmp / "hf_ours"}


def _slime_copy(checkpoint, name: str, **args: object) -> tuple[Path, Path]:
    root = checkpoint["tmp"] / name
    shutil.copytree(checkpoint["tmp"] / "ours", root)
    marker = checkpoint["tmp"] / f"{name}-{MARKER}"
    merged = {**_megatron_args(checkpoint["model"]), **args}
    slime_common_pt(root / "iter_0000004" / "common.pt", 4, marker, **merged)
    return root, marker


def test_export_of_a_slime_checkpoint_with_an_unimportable_class(checkpoint, capsys):
    from megatron.core import dist_checkpointing

    root, marker = _slime_copy(checkpoint, "slime")
    iter_dir = root / "iter_0000004"
    assert importlib.util.find_spec("slime") is None
    with pytest.raises(pickle.UnpicklingError):  # what megatron-core 0.16.1 does with it
        dist_checkpointing.load_common_state_dict(str(iter_dir))
    capsys.readouterr()
    code = export_cli(["--checkpoint", str(root), "--config", str(checkpoint["config"]),
                       "--out", str(checkpoint["tmp"] / "hf_slime"), "--tokenizer", TOKENIZER])
    out = capsys.readouterr().out
    assert code == 0
    [line] = [x for x in out.splitlines() if x.startswith("  common.pt:")]
    assert "iteration 4" in line and "slime.utils.eval_config.EvalDatasetConfig" in line, line
    assert _digests(checkpoint["tmp"] / "hf_slime") == _digests(checkpoint["hf"])
    exported = read_hf_state_dict(checkpoint["tmp"] / "hf_slime")
    original = read_hf_state_dict(checkpoint["tmp"] / "hf_in")
    assert all(torch.equal(exported[k], v.bfloat16()) for k, v in original.items())
    assert not marker.exists()  # the pickled callable was never called
    assert "slime" not in sys.modules


def test_restricted_reader_stubs_and_runs_nothing(checkpoint):
    root, marker = _slime_copy(checkpoint, "reader")
    state = read_common_pt(root / "iter_0000004" / "common.pt")
    assert state.data["iteration"] == 4 and state.data["checkpoint_version"] == 3.0
    assert state.args is not None and state.args.num_layers == 2
    assert state.args.params_dtype is torch.bfloat16
    [eval_set] = state.args.eval_datasets
    assert eval_set._stub_name == "slime.utils.eval_config.EvalDatasetConfig"
    assert eval_set.stub_state == {"name": "dolci_heldout", "path": "/data/eval.jsonl",
                                   "n_samples_per_eval_prompt": 1}
    stubbed = " ".join(state.stubbed)  # Path.touch: getattr(PosixPath, "touch")
    assert "getattr" in stubbed and "pathlib.Path" in stubbed
    assert state.args.hook.stub_args == (str(marker),)  # the call, recorded, not made
    assert state.content_metadata["singleton_local_shards"] is False
    assert not marker.exists()


def test_args_of_another_model_are_refused_with_the_fix(checkpoint, capsys):
    root, _ = _slime_copy(checkpoint, "other", num_layers=36, hidden_size=4096)
    out_dir = checkpoint["tmp"] / "hf_other"
    code = export_cli(["--checkpoint", str(root), "--config", str(checkpoint["config"]),
                       "--out", str(out_dir), "--tokenizer", TOKENIZER])
    err = capsys.readouterr().err
    assert code == 2
    assert "num_layers=36 (model.num_layers=2)" in err
    assert "hidden_size=4096 (model.hidden_size=128)" in err
    assert "Pick the preset or config.yaml the run was trained with" in err
    assert not out_dir.exists()


def test_padded_vocabulary_is_narrowed_to_the_model(checkpoint):
    """Megatron-LM pads the vocabulary to a multiple of 128 x TP; the export keeps the model's
    rows, exactly the first rows of the checkpoint's."""
    from swallow_train.mcore.hf_export import export_checkpoint

    model = checkpoint["model"]
    padded = replace(model, vocab_size=model.vocab_size + 128)
    chunks = build(padded, ParallelConfig(), world_size=1, precision="bf16")
    root = checkpoint["tmp"] / "padded"
    save_torch_dist(chunks, root, step=9)
    slime_common_pt(root / "iter_0000009" / "common.pt", 9, checkpoint["tmp"] / MARKER,
                    **_megatron_args(model))
    out = export_checkpoint(root, model, checkpoint["tmp"] / "hf_padded", tokenizer=TOKENIZER,
                            dtype=torch.float32, progress=False)
    exported = read_hf_state_dict(out)
    rows = model.vocab_size
    assert exported["model.embed_tokens.weight"].shape[0] == rows
    assert torch.equal(exported["model.embed_tokens.weight"],
                       chunks[0].embedding.word_embeddings.weight.detach()[:rows].float())
    assert torch.equal(exported["lm_head.weight"],
                       chunks[0].output_layer.weight.detach()[:rows].float())
