"""Which `iter_XXXXXXX/` directory of a megatron torch_dist checkpoint to read: the requested
step, or the latest one its marker names (`swallow-train export`, `mcore/hf_export.py`).

    resolve_iteration_dir("runs/tiny/cpt/checkpoints")          # -> .../iter_0000020
    resolve_iteration_dir("runs/tiny/cpt/checkpoints", 10)      # -> .../iter_0000010
"""

from __future__ import annotations

import os
from pathlib import Path

from swallow_train.checkpoint_files import MARKER as LATEST_FILE
from swallow_train.convert.transforms import ConversionError


def resolve_iteration_dir(ckpt_dir: str | os.PathLike[str], iteration: int | None = None) -> Path:
    """`{root}/iter_{step:07d}` of the requested or latest step (`{root}/release` for
    "release"); a directory that is itself a dist-checkpoint is returned as it is."""
    root = Path(ckpt_dir)
    if not root.is_dir():
        raise ConversionError(f"checkpoint directory {root} does not exist")
    if iteration is not None:
        path = root / f"iter_{iteration:07d}"
    elif (root / "metadata.json").is_file():
        return root
    elif (root / LATEST_FILE).is_file():
        latest = (root / LATEST_FILE).read_text().strip()
        if latest == "release":
            path = root / "release"
        elif latest.isdigit():
            path = root / f"iter_{int(latest):07d}"
        else:
            raise ConversionError(f"{root / LATEST_FILE} holds {latest!r}, not a step number "
                                  "or 'release'")
    else:
        raise ConversionError(f"{root} has no {LATEST_FILE} and is no dist-checkpoint directory: "
                              "pass the checkpoints/ directory of a stage, or --iteration N")
    if not (path / "metadata.json").is_file():
        steps = sorted(p.name for p in root.glob("iter_*"))
        raise ConversionError(f"{path} is not a torch_dist checkpoint (no metadata.json); "
                              f"available: {', '.join(steps) or 'none'}")
    return path
