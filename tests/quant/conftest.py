"""The quantize tests run llm-compressor in this process: no torch.distributed process group may
be left over from an earlier test of the same pytest worker (llm-compressor then all-reduces its
AWQ statistics through the accelerator, which a CPU machine lacks). The stage itself always runs
as a single process."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="package")
def _no_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
