"""PNG plots of a run's curves, redrawn from its `metrics.jsonl` as training goes.

    python -m swallow_train.metrics.plot runs/tiny/cpt/metrics.jsonl
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    """Records of a metrics log; a torn last line (a crash mid-write) is skipped."""
    if not path.exists():
        return []
    rows: list[dict] = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_curves(rows: list[dict], keys: list[str], out: Path, title: str) -> Path | None:
    """One panel per key present in `rows` (x = step); written atomically to `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in keys if any(k in r for r in rows)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        pts = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1])
    print(plot_curves(read_jsonl(path), ["loss", "lr", "grad_norm", "reward"],
                      path.with_name("curves.png"), path.parent.name))
