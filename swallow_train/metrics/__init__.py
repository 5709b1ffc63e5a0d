"""Metrics: JSONL log, W&B (offline by default), progress bar, PNG plots, throughput/MFU."""
