"""The example scripts in launch/ are exactly what `swallow-train launch` renders today (byte for
byte) and shellcheck clean. Regenerate after an intended change:

    .venv/bin/python -m swallow_train.launch.golden
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from swallow_train.launch import golden

SHELLCHECK = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "shellcheck"
CASES = golden.cases()


@pytest.mark.parametrize(("path", "argv", "index"), CASES,
                         ids=[str(p.relative_to(golden.ROOT)) for p, _, _ in CASES])
def test_golden_script_matches_the_renderer(path, argv, index):
    assert path.exists(), f"missing {path}: run python -m swallow_train.launch.golden"
    assert golden.render(argv, index) == path.read_text(), (
        f"{path} is stale: run python -m swallow_train.launch.golden")


def test_node_counts_are_whole_nodes():
    for stage, sizes in golden.GPUS.items():
        for model, gpus in sizes.items():
            for cluster, (per_node, _) in golden.CLUSTERS.items():
                assert gpus % per_node == 0, (stage, model, cluster)


def test_golden_scripts_are_shellcheck_clean():
    paths = sorted(golden.ROOT.glob("*/*.sh"))
    assert len(paths) >= 39  # 3 clusters x (9 GPU jobs + 4 CPU jobs)
    result = subprocess.run([str(SHELLCHECK), *map(str, paths)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
