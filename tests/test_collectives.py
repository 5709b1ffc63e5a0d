"""Control-plane collectives: one module owns them, and it places tensors on the device of the
group's backend (NCCL takes CUDA tensors only)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from swallow_train import collectives
from tests.distributed import run_distributed

ROOT = Path(__file__).resolve().parent.parent
OWNER = ROOT / "swallow_train" / "collectives.py"
COLLECTIVES = {
    "all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_object", "all_to_all",
    "all_to_all_single", "barrier", "broadcast", "broadcast_object_list", "gather",
    "gather_object", "irecv", "isend", "recv", "reduce", "reduce_scatter",
    "reduce_scatter_tensor", "scatter", "scatter_object_list", "send", "batch_isend_irecv",
    "monitored_barrier",
}


def _direct_collective_calls(path: Path) -> list[str]:
    """`dist.X(...)` / `torch.distributed.X(...)` / `from torch.distributed import X` for a
    collective X, under whatever local name torch.distributed was imported as."""
    tree = ast.parse(path.read_text(), str(path))
    aliases = {"torch.distributed"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "torch.distributed"}
        elif isinstance(node, ast.ImportFrom) and node.module == "torch" and node.level == 0:
            aliases |= {a.asname or a.name for a in node.names if a.name == "distributed"}
        elif isinstance(node, ast.ImportFrom) and node.module == "torch.distributed":
            found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {a.name}"
                      for a in node.names if a.name in COLLECTIVES]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in COLLECTIVES
                and ast.unparse(node.value) in aliases):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {ast.unparse(node)}")
    return found


def test_only_the_collectives_module_calls_torch_distributed_collectives() -> None:
    files = [p for d in ("swallow_train", "bench") for p in (ROOT / d).rglob("*.py")]
    offenders = [hit for p in files if p != OWNER for hit in _direct_collective_calls(p)]
    assert offenders == [], ("call swallow_train.collectives instead (it puts tensors on the "
                             "backend's device):\n" + "\n".join(offenders))


def test_the_scan_sees_every_import_style(tmp_path: Path) -> None:
    bad = ROOT / "swallow_train" / "_scan_probe.py"  # relative_to(ROOT) needs a path inside
    bad.write_text("import torch\nimport torch.distributed as d\nfrom torch import distributed"
                   " as td\nfrom torch.distributed import all_reduce\nd.all_reduce(x)\n"
                   "td.barrier()\ntorch.distributed.broadcast(x, 0)\n")
    try:
        hits = _direct_collective_calls(bad)
    finally:
        bad.unlink()
    assert len(hits) == 4, hits


def test_device_for_nccl_is_this_process_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collectives, "initialized", lambda: True)
    monkeypatch.setattr(collectives.dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(collectives.torch.cuda, "current_device", lambda: 3)
    assert collectives.device_for() == torch.device("cuda", 3)
    monkeypatch.setattr(collectives.dist, "get_backend", lambda group=None: "gloo")
    assert collectives.device_for() == torch.device("cpu")
    monkeypatch.setattr(collectives.dist, "get_backend",
                        lambda group=None: "cpu:gloo,cuda:nccl")
    assert collectives.device_for() == torch.device("cpu")


def test_control_plane_tensors_are_built_on_the_backend_device(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tensor handed to a collective is on `device_for(group)`: with a fake backend whose
    device is 'meta', a CPU tensor (the bug of the first cluster run) would be caught here."""
    seen: list[torch.device] = []

    def fake_collective(tensor, *args, **kwargs):
        seen.append(tensor.device)

    monkeypatch.setattr(collectives, "initialized", lambda: True)
    monkeypatch.setattr(collectives, "device_for", lambda group=None: torch.device("meta"))
    monkeypatch.setattr(collectives.dist, "all_reduce", fake_collective)
    # a meta tensor has no values: stop at the copy back to the host, after the collective
    for call in (lambda: collectives.sum_floats([1.0, 2.0]), lambda: collectives.max_int(3),
                 lambda: collectives.all_true(True)):
        with pytest.raises((NotImplementedError, RuntimeError)):
            call()
    assert seen == [torch.device("meta")] * 3


def test_single_process_is_the_identity() -> None:
    assert collectives.sum_floats([1.5, 2.0]) == [1.5, 2.0]
    assert collectives.max_int(7) == 7 and collectives.all_true(False) is False
    assert collectives.broadcast_object({"a": 1}) == {"a": 1}
    assert collectives.all_gather_objects("x") == ["x"]


def _worker(rank: int) -> dict:
    from swallow_train.mcore.distributed import init_process_group

    init_process_group()
    out = {
        "sum": collectives.sum_floats([rank + 0.5, 1.0]),
        "max": collectives.max_int(rank * 5),
        "all_true": collectives.all_true(rank == 0),
        "bcast": collectives.broadcast_object(f"from {rank}", src=1),
        "objects": collectives.all_gather_objects(rank),
        "gather": [t.tolist() for t in collectives.all_gather_tensor(torch.tensor([rank, 9]))],
    }
    if rank == 1:
        collectives.send_tensor(torch.arange(4, dtype=torch.float32), dst=0)
    else:
        out["recv"] = collectives.recv_tensor((4,), torch.float32, src=1).tolist()
    collectives.barrier()
    return out


@pytest.mark.dist
def test_collectives_over_gloo() -> None:
    r0, r1 = run_distributed(_worker, world_size=2)
    for r in (r0, r1):
        assert r["sum"] == [2.0, 2.0] and r["max"] == 5 and r["all_true"] is False
        assert r["bcast"] == "from 1" and r["objects"] == [0, 1]
        assert r["gather"] == [[0, 9], [1, 9]]
    assert r0["recv"] == [0.0, 1.0, 2.0, 3.0]
