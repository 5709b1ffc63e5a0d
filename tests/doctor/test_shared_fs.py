"""Multi-node doctor: every node must see every rank's token in the run root (swallow_train/
doctor/shared_fs.py). Two "nodes" are two threads here, with one directory (shared) or two."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from swallow_train.check_report import Status
from swallow_train.doctor.shared_fs import Launch, launch_from_env, same_filesystem


def test_launchers_are_read_from_the_environment() -> None:
    torchrun = launch_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "0",
                                "MASTER_ADDR": "n1", "MASTER_PORT": "29500",
                                "TORCHELASTIC_RUN_ID": "none", "PBS_JOBID": "123.pbs"})
    assert torchrun == Launch(rank=3, world_size=4, local_rank=0, job="123.pbs-29500")
    ompi = launch_from_env({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "16",
                            "OMPI_COMM_WORLD_LOCAL_RANK": "1", "PMIX_NAMESPACE": "prterun@1"})
    assert ompi == Launch(rank=1, world_size=16, local_rank=1, job="local-prterun_1")
    slurm = launch_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0",
                             "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "3"})
    assert slurm == Launch(rank=0, world_size=2, local_rank=0, job="77-3")
    assert launch_from_env({"HOME": "/root"}) is None


def _two_nodes(dirs, nodes: int = 2, timeout: float = 20.0):
    def node(rank: int):
        launch = Launch(rank=rank, world_size=2, local_rank=0, job="job1")
        return same_filesystem("run root", "run.root", str(dirs[rank]), launch, f"host{rank}",
                               nodes, timeout)

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(node, range(2)))


def test_one_shared_directory_passes_and_is_cleaned(tmp_path) -> None:
    rows = _two_nodes([tmp_path, tmp_path])
    assert [r.status for r in rows] == [Status.PASS, Status.PASS]
    assert [r.value for r in rows] == [2, 2]
    assert rows[0].data["seen"] == ["host0.0", "host1.1"]
    assert not (tmp_path / ".swallow-doctor" / "job1").exists()


def test_node_local_directories_fail_naming_the_path(tmp_path) -> None:
    rows = _two_nodes([tmp_path / "a", tmp_path / "b"], timeout=1.0)
    assert [r.status for r in rows] == [Status.FAIL, Status.FAIL]
    assert str(tmp_path / "a" / ".swallow-doctor" / "job1") in rows[0].detail
    assert "(host1) sees the tokens of 1 of 2 ranks" in rows[1].detail
    assert "run.root must be on a filesystem every node mounts" in rows[0].detail


def test_node_count_must_match_the_recipe(tmp_path) -> None:
    rows = _two_nodes([tmp_path, tmp_path], nodes=4)
    assert rows[0].status is Status.FAIL
    assert "runs on 2 node(s) (host0, host1) but the recipe says cluster.nodes=4" in rows[0].detail


def test_without_a_launcher_it_skips_with_the_command(tmp_path) -> None:
    row = same_filesystem("run root", "run.root", str(tmp_path), None, "h", 1, 1.0)
    assert row.status is Status.SKIP and "torchrun --nnodes N --nproc-per-node 1" in row.detail
    assert list(tmp_path.iterdir()) == []
