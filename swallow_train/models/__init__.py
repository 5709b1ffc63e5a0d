"""Qwen3 model presets (architecture only; no torch or megatron import)."""

from swallow_train.models.config import ModelConfig

__all__ = ["ModelConfig"]
