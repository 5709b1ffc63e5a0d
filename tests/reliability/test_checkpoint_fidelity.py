"""Checkpoints whose numbers would be silently wrong are refused, and what the start checkpoint
says about generation (bos, eos, generation_config.json) is carried to every stage's export.

    .venv/bin/python -m pytest tests/reliability/test_checkpoint_fidelity.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swallow_train.cli import main
from swallow_train.convert.hf_io import read_hf_config, write_hf_checkpoint
from swallow_train.convert.hf_meta import (
    START_RECORD,
    check_and_record_start,
    read_start_record,
)
from swallow_train.convert.transforms import ConversionError
from tests.convert.helpers import preset, random_hf_state_dict

TOKENIZER = "bundled:qwen3"
BASE_GENERATION = {"bos_token_id": 151643, "do_sample": False, "eos_token_id": 151643,
                   "max_new_tokens": 2048}
"""Qwen3-8B-Base's generation_config.json."""


def hf_dir(path: Path, model, **config) -> Path:
    """A start checkpoint directory holding only its config.json (+ generation_config)."""
    path.mkdir(parents=True)
    generation = config.pop("generation", None)
    (path / "config.json").write_text(json.dumps({**model.to_hf_config(), **config}))
    if generation is not None:
        (path / "generation_config.json").write_text(json.dumps(generation))
    return path


@pytest.mark.parametrize(("config", "field", "fix"), [
    (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0,
                        "original_max_position_embeddings": 32768}),
     "rope_scaling has rope_type 'yarn'", 'Set "rope_scaling": null in that config.json'),
    (dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6}),
     "rope_parameters has rope_type 'linear'", 'Set "rope_parameters": null'),
    (dict(use_sliding_window=True, sliding_window=4096),
     "use_sliding_window is true (sliding_window 4096)", 'Set "use_sliding_window": false'),
])
def test_rope_scaling_and_sliding_windows_are_refused(tmp_path, config, field, fix) -> None:
    path = hf_dir(tmp_path / "start", preset("tiny_dense"), **config)
    with pytest.raises(ConversionError) as err:
        read_hf_config(path)
    assert str(err.value).startswith(f"{path / 'config.json'}: {field}")
    assert fix in str(err.value)


def test_default_rope_is_accepted_in_both_spellings(tmp_path) -> None:
    model = preset("tiny_dense")
    a = hf_dir(tmp_path / "a", model, rope_scaling={"rope_type": "default"})
    b = hf_dir(tmp_path / "b", model, rope_scaling=None,
               rope_parameters={"rope_type": "default", "rope_theta": model.rope_theta})
    assert read_hf_config(a).rope_theta == read_hf_config(b).rope_theta == model.rope_theta


def test_a_stage_refuses_a_yarn_start_before_writing_anything(tmp_path, monkeypatch,
                                                              capsys) -> None:
    monkeypatch.chdir(tmp_path)
    start = hf_dir(tmp_path / "start", preset("tiny_dense", vocab_size=151936),
                   rope_scaling={"rope_type": "yarn", "factor": 4.0})
    assert main(["cpt", "model=tiny_dense", f"init.hf={start}"]) == 2
    err = capsys.readouterr().err
    assert f"{start / 'config.json'}: rope_scaling has rope_type 'yarn'" in err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("model", "config", "message"), [
    ("tiny_dense", dict(max_position_embeddings=1024),
     "model.max_position_embeddings=2048 but {file} has max_position_embeddings 1024: set "
     "model.max_position_embeddings=1024"),
    ("tiny_moe", dict(router_aux_loss_coef=0.01),
     "model.moe_aux_loss_coeff=0.001 but {file} has router_aux_loss_coef 0.01: set "
     "model.moe_aux_loss_coeff=0.01"),
])
def test_preset_settings_that_differ_from_the_start_are_refused(tmp_path, model, config,
                                                                message) -> None:
    ours = preset(model)
    start = hf_dir(tmp_path / "start", ours, **config)
    with pytest.raises(ConversionError) as err:
        check_and_record_start(ours, str(start), tmp_path / "stage", chat=False, record=True)
    assert message.format(file=start / "config.json") in str(err.value)
    assert not (tmp_path / "stage").exists()


def export(tmp_path: Path, model, stage_dir: Path) -> tuple[dict, dict]:
    out = write_hf_checkpoint(random_hf_state_dict(model), model, stage_dir / "hf",
                              tokenizer=TOKENIZER, progress=False,
                              start=read_start_record(stage_dir))
    return (json.loads((out / "config.json").read_text()),
            json.loads((out / "generation_config.json").read_text()))


def test_base_start_tokens_are_carried_through_cpt_and_sft_makes_im_end_the_eos(tmp_path):
    model = preset("tiny_dense")
    base = hf_dir(tmp_path / "base", model, eos_token_id=151643, generation=BASE_GENERATION)
    cpt = tmp_path / "runs/cpt"
    check_and_record_start(model, str(base), cpt, chat=False, record=True)
    config, generation = export(tmp_path, model, cpt)
    assert (config["bos_token_id"], config["eos_token_id"]) == (151643, 151643)
    assert generation == BASE_GENERATION  # as the start had it, byte for byte in content
    sft = tmp_path / "runs/sft"  # SFT starts from the CPT export
    check_and_record_start(model, str(cpt / "hf"), sft, chat=True, record=True)
    config, generation = export(tmp_path, model, sft)
    assert (config["bos_token_id"], config["eos_token_id"]) == (151643, 151645)
    assert generation == {"bos_token_id": 151643, "do_sample": True, "eos_token_id":
                          [151645, 151643], "max_new_tokens": 2048, "min_p": 0.0,
                          "temperature": 0.6, "top_k": 20, "top_p": 0.95}
    rl = tmp_path / "runs/rl"  # RL carries the SFT export's as they are
    tokens = check_and_record_start(model, str(sft / "hf"), rl, chat=False, record=True)
    assert tokens is not None and tokens.generation_config == generation
    assert json.loads((rl / START_RECORD).read_text())["source"] == str(sft / "hf")


def test_a_start_without_generation_config_gets_the_qwen3_model_card_defaults(tmp_path):
    model = preset("tiny_dense")
    start = hf_dir(tmp_path / "start", model, eos_token_id=151643)
    stage = tmp_path / "stage"
    check_and_record_start(model, str(start), stage, chat=False, record=True)
    config, generation = export(tmp_path, model, stage)
    assert config["eos_token_id"] == 151643
    assert {k: generation[k] for k in ("temperature", "top_p", "top_k", "min_p", "do_sample")} \
        == {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0, "do_sample": True}


def test_a_damaged_start_record_names_the_file_and_fix(tmp_path) -> None:
    (tmp_path / START_RECORD).write_text("{not json")
    with pytest.raises(ConversionError, match=f"{tmp_path / START_RECORD} is damaged.*delete it"):
        read_start_record(tmp_path)
