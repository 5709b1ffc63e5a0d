"""Typed logging config, read by `swallow_train.metrics.logger`.

    swallow-train cpt logging.wandb_mode=online logging.wandb_project=swallow
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class WandbMode(Enum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


@dataclass(kw_only=True)
class LoggingConfig:
    wandb_mode: WandbMode = WandbMode.offline
    """offline by default (sync later with `wandb sync`); online when you set it."""
    wandb_project: str = "swallow-train"
    wandb_entity: str | None = None
    wandb_group: str | None = None
    plot_interval: int = 10
    """Redraw the PNG plot of the curves every N steps (and at the end)."""
    progress_bar: bool = True
