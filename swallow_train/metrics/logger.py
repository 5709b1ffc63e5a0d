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

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **metrics}
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._wandb is not None:
            self._wandb.log({f"{self.stage}/{k}": v for k, v in metrics.items()}, step=step)
        if self.cfg.plot_interval and step % self.cfg.plot_interval == 0:
            self.plot()

    def plot(self) -> Path | None:
        if not self.enabled:
            return None
        return plot_curves(read_jsonl(self.path), self.plot_keys, self.plot_path,
                           f"{self.stage} ({self.stage_dir.parent.name})")

    def close(self) -> None:
        if not self.enabled:
            return
        self.plot()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
