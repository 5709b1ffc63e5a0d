"""Where a stage's metrics go: a JSONL log, W&B (offline unless set online) and a PNG plot,
all next to the run. Only rank 0 logs.

    log = MetricsLogger(stage_dir, cfg.logging, stage="cpt", config=resolved_dict,
                        plot_keys=["loss", "lr"])
    log.log(step, {"loss": 2.3, "lr": 1e-4})
    log.close()
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swallow_train.metrics.config import LoggingConfig, WandbMode
from swallow_train.metrics.plot import plot_curves, read_jsonl


class MetricsLogger:
    def __init__(
        self,
        stage_dir: Path,
        cfg: LoggingConfig,
        *,
        stage: str,
        run_name: str,
        config: dict[str, Any] | None = None,
        plot_keys: list[str] | None = None,
        enabled: bool = True,
        resume_step: int = 0,
    ) -> None:
        self.stage_dir = Path(stage_dir)
        self.cfg = cfg
        self.stage = stage
        self.enabled = enabled
        self.plot_keys = plot_keys or ["loss"]
        self.path = self.stage_dir / "metrics.jsonl"
        self.plot_path = self.stage_dir / "curves.png"
        self._wandb: Any = None
        self._failed: set[str] = set()
        if not enabled:
            return
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        if resume_step:
            self._truncate_after(resume_step)
        if cfg.wandb_mode is not WandbMode.disabled:
            self._wandb = self._init_wandb(run_name, config)

    def _truncate_after(self, step: int) -> None:
        """On resume, drop records of steps the restored checkpoint has not seen (they will be
        logged again), so the log reads as one uninterrupted run."""
        rows = [r for r in read_jsonl(self.path) if r.get("step", 0) <= step]
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, self.path)

    def _init_wandb(self, run_name: str, config: dict[str, Any] | None) -> Any:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        run_id = f"{run_name}-{self.stage}".replace("/", "-")
        return wandb.init(
            project=self.cfg.wandb_project,
            entity=self.cfg.wandb_entity,
            group=self.cfg.wandb_group or run_name,
            name=run_id,
            id=run_id,
            resume="allow",
            mode=self.cfg.wandb_mode.value,
            dir=str(self.stage_dir),
            config=config,
        )

    def _sink(self, name: str, write: Callable[[], Any]) -> Any:
        """Run one sink's write. Metrics must never end a run: on a full disk (or any I/O
        error) the sink warns once and is skipped from then on; checkpoints report the disk."""
        if name in self._failed:
            return None
        try:
            return write()
        except Exception as exc:  # OSError (ENOSPC), W&B's own errors on a full disk
            self._failed.add(name)
            print(f"[swallow-train] warning: {name} disabled for the rest of this run "
                  f"({exc.__class__.__name__}: {exc})", file=sys.stderr, flush=True)
            return None

    def _append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._sink(f"metrics log {self.path}", lambda: self._append({"step": step, **metrics}))
        if self._wandb is not None:
            self._sink("W&B", lambda: self._wandb.log(
                {f"{self.stage}/{k}": v for k, v in metrics.items()}, step=step))
        if self.cfg.plot_interval and step % self.cfg.plot_interval == 0:
            self.plot()

    def plot(self) -> Path | None:
        if not self.enabled:
            return None
        return self._sink(f"plot {self.plot_path}", lambda: plot_curves(
            read_jsonl(self.path), self.plot_keys, self.plot_path,
            f"{self.stage} ({self.stage_dir.parent.name})"))

    def close(self) -> None:
        if not self.enabled:
            return
        self.plot()
        if self._wandb is not None:
            self._sink("W&B", self._wandb.finish)
            self._wandb = None
