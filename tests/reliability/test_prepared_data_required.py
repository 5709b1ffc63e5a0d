"""A multi-node CPT/SFT job whose prepared data is missing or stale refuses to start before the
model is built, and the command its message names prepares exactly that data; a single-node
job still prepares on first use.

    .venv/bin/python -m pytest tests/reliability/test_prepared_data_required.py -q
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from swallow_train import cli
from swallow_train.config import compose
from swallow_train.data import ready

DOCS = [json.dumps({"text": f"Document number {i}. 文書その{i}。"}, ensure_ascii=False)
        for i in range(12)]


@pytest.fixture
def corpus(tmp_path: Path) -> list[str]:
    (tmp_path / "a.jsonl").write_text("".join(d + "\n" for d in DOCS), encoding="utf-8")
    manifest = tmp_path / "m.yaml"
    manifest.write_text("name: small\nstage: cpt\ncorpora:\n"
                        "  - {name: a, language: en, source: {path: a.jsonl}, budget: 100}\n")
    return [f"data.manifest={manifest}", f"data.prepared_dir={tmp_path / 'prepared'}",
            f"run.root={tmp_path / 'runs'}", "model=tiny_dense", "data.docs_per_shard=4",
            "data.num_workers=1", "data.split='50,50,0'"]


def _last_error(text: str) -> str:
    """stderr after any progress bar: the error message."""
    return text[text.index("swallow-train "):]


def test_multi_node_cpt_refuses_before_the_model_and_names_the_command(
    corpus: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from swallow_train.mcore import trainer

    def no_model(*args: Any, **kw: Any) -> Any:
        raise AssertionError("the model must not be built")

    monkeypatch.setattr(trainer, "build_model", no_model)
    args = [*corpus, "cluster=abci3", "cluster.nodes=2"]
    monkeypatch.setattr(sys, "argv", ["swallow-train", "cpt", *args])  # as the shell runs it
    assert cli.main(["cpt", *args]) == 2
    err = _last_error(capsys.readouterr().err)
    assert err.startswith("swallow-train cpt: error: cpt: the prepared data is missing or stale")
    assert f"corpus a: not prepared ({tmp_path / 'prepared' / 'small' / 'a'}/done.json" in err
    launch = [line.strip() for line in err.splitlines() if "swallow-train launch" in line]
    assert launch == [shlex.join(["swallow-train", "launch", "stage=prepare", "cluster=abci3",
                                  *corpus])]
    (command,) = [line.strip() for line in err.splitlines()
                  if line.strip().startswith("swallow-train prepare ")]
    assert shlex.split(command)[1:] == ["prepare", *args]
    assert not (tmp_path / "runs").exists()  # nothing of the stage was written
    # the named command prepares exactly what the stage checks
    assert cli.main(shlex.split(command)[1:]) == 0
    assert ready.main(["cpt", *args]) == 0
    ready.require_prepared(ready.StageData.of(compose("cpt", args)))  # no error now
    # an edited input makes it stale again: refused, naming the file
    (tmp_path / "a.jsonl").write_text("".join(d + "\n" for d in DOCS[:5]), encoding="utf-8")
    capsys.readouterr()
    assert ready.main(["cpt", *args]) == 1
    err = capsys.readouterr().err
    assert "corpus a: stale, its input changed: a.jsonl: size" in err
    assert f"remove {tmp_path / 'prepared' / 'small' / 'a'} first" in err


def test_single_node_does_not_check(corpus: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = compose("cpt", [*corpus, "cluster=local"])
    for key in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert not ready.multi_node(recipe.cluster)
    # missing data, but rank 0 prepares it on first use
    ready.require_prepared(ready.StageData.of(recipe))
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert ready.multi_node(recipe.cluster)  # torchrun over 2 nodes, whatever cluster.nodes says
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert not ready.multi_node(recipe.cluster)


def test_multi_node_sft_refuses_without_packs(tmp_path: Path, monkeypatch: Any,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    args = ["model=tiny_dense", f"data.prepared_dir={tmp_path / 'p'}", "cluster=slurm",
            "cluster.nodes=2", f"run.root={tmp_path / 'runs'}"]
    monkeypatch.setattr(sys, "argv", ["python", "-m", "x"])  # not ours: explicit fields
    with pytest.raises(ready.DataError) as err:
        ready.require_prepared(ready.StageData.of(compose("sft", args)))
    text = str(err.value)
    assert f"{tmp_path / 'p' / 'tiny_sft_math' / 'seq256'}: not prepared" in text
    (command,) = [line.strip() for line in text.splitlines()
                  if line.strip().startswith("swallow-train prepare-sft ")]
    assert "train.seq_length=256" in command and "data.seed=1234" in command


def _no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_SIZE"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("cluster", [["cluster=abci3", "cluster.nodes=2"], ["cluster=local"]],
                         ids=["multi-node checks", "single node prepares"])
def test_the_cpt_data_source_parses_its_manifest_once(
    corpus: list[str], cluster: list[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 15 item 2: built from its typed sections, the CPT BatchSource parses the manifest
    once per run, whether a multi-node job checks the prepared data first or a single-node one
    prepares it (rank 0) and then opens and blends it."""
    from swallow_train.data import manifest as manifests
    from swallow_train.mcore.data_cpt import CPTData

    _no_launcher(monkeypatch)
    assert cli.main(["prepare", *corpus]) == 0
    recipe = compose("cpt", [*corpus, *cluster])
    parses: list[str] = []
    check = manifests._check_cpt  # every load_manifest of a CPT manifest runs it once

    def counted(manifest: Any, where: str) -> None:
        parses.append(where)
        check(manifest, where)

    monkeypatch.setattr(manifests, "_check_cpt", counted)
    data = CPTData(data=recipe.data, train=recipe.train, model=recipe.model,
                   cluster=recipe.cluster)
    data.prepare(compose("cpt", [*corpus, "cluster=local"]).layout())  # a layout that fits
    assert parses == [recipe.data.manifest]
    t = recipe.train
    assert data.summary()["train_samples"] >= t.train_steps * t.global_batch_size
    assert data.total_steps() == t.train_steps
