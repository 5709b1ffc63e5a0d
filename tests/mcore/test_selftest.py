"""Doctor's megatron-core self-tests (swallow_train/mcore/selftest*.py): each passes on a healthy
installation and fails when the property it guards is broken (a leaking pack mask, a wrong
exported tensor, data that changes on resume). TP=2 over gloo runs in tests/doctor/test_cli.py;
GPU-only paths are `gpu` tests."""

from __future__ import annotations

import pytest
import torch

from swallow_train.check_report import Status
from swallow_train.config import compose
from swallow_train.mcore import selftest_checks as sc
from swallow_train.mcore.selftest import tiny_case
from swallow_train.mcore.selftest_parallel import parity, parity_rows
from swallow_train.parallel import ParallelConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_case(tmp_path_factory.mktemp("st"))


def test_packed_selftest_passes_and_catches_a_leaking_mask(tiny, monkeypatch) -> None:
    row = sc.packed_vs_unpacked(tiny)
    assert row.status is Status.PASS and row.value <= 1e-5, row.detail
    from swallow_train.mcore import data_sft

    def causal_only(seq_lens, length):  # the bug: attention across the packed samples
        return torch.triu(torch.ones(length, length, dtype=torch.bool), 1)[None, None]

    monkeypatch.setattr(data_sft, "block_causal_mask", causal_only)
    row = sc.packed_vs_unpacked(tiny)
    assert row.status is Status.FAIL and "packed samples see each other" in row.detail
    assert row.value > 1e-3


def test_export_selftest_passes_and_catches_a_wrong_tensor(tiny, tmp_path, monkeypatch) -> None:
    recipe = compose("cpt", ["model=tiny_dense"])
    row = sc.export_parity(tiny, recipe, tmp_path / "good")
    assert row.status is Status.PASS and row.value <= 1e-5, row.detail
    from swallow_train.mcore import hf_export

    gather = hf_export.gather_hf_state_dict

    def scaled_norm(*args, **kwargs):  # the bug: one tensor exported wrong
        state = gather(*args, **kwargs)
        state["model.norm.weight"] = state["model.norm.weight"] * 1.5
        return state

    monkeypatch.setattr(hf_export, "gather_hf_state_dict", scaled_norm)
    row = sc.export_parity(tiny, recipe, tmp_path / "bad")
    assert row.status is Status.FAIL and "the export does not reproduce the model" in row.detail


@pytest.mark.slow
def test_resume_selftest_catches_data_that_changes_on_resume(tmp_path, monkeypatch) -> None:
    from swallow_train.mcore import selftest_train

    runs = []
    sample = selftest_train.SyntheticTokens._sample

    def shifted(self, index):  # the bug: the resumed run reads other data than the first
        if self not in runs:
            runs.append(self)
        item = sample(self, index)
        if len(runs) > 1:
            item["tokens"] = (item["tokens"] + 1) % selftest_train.ACTIVE_TOKENS
        return item

    monkeypatch.setattr(selftest_train.SyntheticTokens, "_sample", shifted)
    row = selftest_train.resume_check(tmp_path)
    assert row.status is Status.FAIL and "step 6 differs" in row.detail
    assert row.data["straight"][:5] == row.data["resumed"][:5]


def test_parity_runs_only_for_the_layouts_the_recipe_uses(tiny) -> None:
    rows = parity_rows(tiny, ParallelConfig(), gpus=0, te=False)
    assert [(r.name, r.status, r.detail) for r in rows] == [
        ("self-test TP=2 parity", Status.SKIP, "the recipe runs parallel.tp=1"),
        ("self-test CP=2 parity", Status.SKIP, "the recipe runs parallel.cp=1")]
    (cp,) = [r for r in parity_rows(tiny, ParallelConfig(cp=2), gpus=0, te=False)
             if r.name.startswith("self-test CP")]
    assert cp.status is Status.SKIP and "GPU only" in cp.detail
    assert all(r.status is Status.SKIP and "needs 2" in r.detail
               for r in parity_rows(tiny, ParallelConfig(tp=2, cp=2), gpus=1, te=True))


def test_rl_runs_only_the_export_selftest_on_tiny_shapes() -> None:
    """RL (slime) uses our export alone; the self-tests never build the recipe's own size."""
    from swallow_train.mcore.selftest import tiny_model
    from swallow_train.mcore.selftest_suite import selftests

    assert tiny_model().hidden_size == 128 and tiny_model().vocab_size == 1024
    rows = selftests(compose("rl", ["model=tiny_dense"]), "rl")
    assert [(r.name, r.status) for r in rows] == [("self-test HF export", Status.PASS)]


@pytest.mark.gpu
def test_gpu_te_vs_local_and_packed_thd(tiny) -> None:
    te = sc.te_vs_local(tiny)
    assert te.status is Status.PASS, te.detail
    packed = sc.packed_vs_unpacked(tiny)
    assert packed.status is Status.PASS and packed.detail.startswith("THD"), packed.detail


@pytest.mark.gpu
def test_gpu_tokens_per_second_of_the_8b_shape() -> None:
    row = sc.tokens_per_second(steps=2)
    assert row.status is Status.PASS and row.value > 0 and row.data["tflops"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_gpu_tp2_and_cp2_parity_over_nccl(tiny) -> None:
    for key in ("tp", "cp"):
        row = parity(tiny, key)
        assert row.status is Status.PASS, row.detail
