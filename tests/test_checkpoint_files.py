"""Crash safety of checkpoint directories: a failed write never damages the previous
checkpoint; corrupt or truncated files are named."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from swallow_train.checkpoint_files import (
    MARKER,
    CheckpointDir,
    CheckpointError,
    verify_checksums,
)


def _save(ckpts: CheckpointDir, step: int, payload: bytes) -> Path:
    tmp = ckpts.begin(step)
    (tmp / "weights.bin").write_bytes(payload)
    (tmp / "sub").mkdir()
    (tmp / "sub" / "common.pt").write_bytes(b"common-%d" % step)
    return ckpts.commit(step, tmp)


def test_commit_publishes_and_moves_the_marker_last(tmp_path) -> None:
    ckpts = CheckpointDir(tmp_path, keep_last=2)
    assert ckpts.latest_step() is None
    for step in (10, 20, 30):
        _save(ckpts, step, b"x" * step)
    assert ckpts.latest_step() == 30
    assert ckpts.steps() == [20, 30]  # pruned to the last two
    assert (tmp_path / MARKER).read_text() == "30\n"
    verify_checksums(ckpts.path(30))
    assert not list(tmp_path.glob(".tmp*"))


def test_a_write_that_dies_midway_leaves_the_previous_checkpoint(tmp_path) -> None:
    ckpts = CheckpointDir(tmp_path, keep_last=3)
    _save(ckpts, 10, b"good")
    tmp = ckpts.begin(20)
    (tmp / "weights.bin").write_bytes(b"half-writ")  # then the process dies (no commit)
    assert ckpts.latest_step() == 10
    verify_checksums(ckpts.path(10))
    _save(ckpts, 20, b"good again")  # the next save clears the leftovers
    assert not (tmp_path / ".tmp_iter_0000020").exists() and ckpts.latest_step() == 20


def test_a_full_disk_while_checksumming_keeps_the_old_marker(tmp_path, monkeypatch) -> None:
    import swallow_train.checkpoint_files as cf

    ckpts = CheckpointDir(tmp_path, keep_last=3)
    _save(ckpts, 10, b"good")

    def no_space(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cf, "write_checksums", no_space)
    tmp = ckpts.begin(20)
    (tmp / "weights.bin").write_bytes(b"new")
    with pytest.raises(OSError, match="No space"):
        ckpts.commit(20, tmp)
    assert ckpts.latest_step() == 10 and ckpts.steps() == [10]
    verify_checksums(ckpts.path(10))


def test_truncated_file_is_named(tmp_path) -> None:
    ckpts = CheckpointDir(tmp_path)
    path = _save(ckpts, 10, b"0123456789")
    (path / "weights.bin").write_bytes(b"01234")
    with pytest.raises(CheckpointError, match=r"weights\.bin: truncated or altered \(5 bytes, "
                                              r"expected 10\)"):
        verify_checksums(path)


def test_corrupt_file_is_named(tmp_path) -> None:
    ckpts = CheckpointDir(tmp_path)
    path = _save(ckpts, 10, b"0123456789")
    (path / "sub" / "common.pt").write_bytes(b"common-99")  # same size, other bytes
    with pytest.raises(CheckpointError, match=r"sub/common\.pt: checksum mismatch"):
        verify_checksums(path)


def test_missing_file_and_missing_manifest_are_named(tmp_path) -> None:
    ckpts = CheckpointDir(tmp_path)
    path = _save(ckpts, 10, b"0123456789")
    (path / "weights.bin").unlink()
    with pytest.raises(CheckpointError, match=r"weights\.bin: missing"):
        verify_checksums(path)
    (path / "checksums.json").unlink()
    with pytest.raises(CheckpointError, match=r"no checksums\.json"):
        verify_checksums(path)


def test_marker_pointing_nowhere_is_an_error(tmp_path) -> None:
    ckpts = CheckpointDir(tmp_path)
    _save(ckpts, 10, b"x")
    (tmp_path / MARKER).write_text("40\n")
    with pytest.raises(CheckpointError, match="iter_0000040, which does not exist"):
        ckpts.latest_step()
    (tmp_path / MARKER).write_text("release\n")
    with pytest.raises(CheckpointError, match="expected an iteration number"):
        ckpts.latest_step()


def test_resaving_a_step_replaces_it_atomically(tmp_path) -> None:
    ckpts = CheckpointDir(tmp_path)
    _save(ckpts, 10, b"first")
    _save(ckpts, 10, b"second")
    assert (ckpts.path(10) / "weights.bin").read_bytes() == b"second"
    sums = json.loads((ckpts.path(10) / "checksums.json").read_text())["files"]
    assert sums["weights.bin"][0] == len(b"second")
