"""Heavy imports stay in one place: megatron-core only under swallow_train/mcore/, slime nowhere."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "swallow_train"


def _imports(path: Path) -> list[tuple[str, int]]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.module, node.lineno))
    return names


def test_megatron_and_te_are_imported_only_under_mcore() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path in PACKAGE.rglob("*.py") if "mcore" not in path.relative_to(PACKAGE).parts
        for name, line in _imports(path)
        if name.split(".")[0] in ("megatron", "transformer_engine")
    ]
    assert offenders == []


def test_nothing_imports_slime() -> None:
    offenders = [f"{path}:{line}" for path in PACKAGE.rglob("*.py")
                 for name, line in _imports(path) if name.split(".")[0] == "slime"]
    assert offenders == []


def test_light_modules_import_without_megatron() -> None:
    code = (
        "import sys\n"
        "import swallow_train, swallow_train.cli, swallow_train.config, swallow_train.parallel\n"
        "from swallow_train.config import compose\n"
        "for stage in ('cpt', 'sft', 'pipeline'):\n"
        "    compose(stage, ['model=tiny_dense'] if stage != 'pipeline' else [])\n"
        "import swallow_train.data.sources, swallow_train.cluster\n"
        "import swallow_train.metrics.logger, swallow_train.checkpoint_files\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('megatron', 'transformer_engine', 'slime'))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
