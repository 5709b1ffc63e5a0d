"""Crash-safe checkpoint directories, shared by the megatron stages and the local RL backend.

A checkpoint is written into `.tmp_iter_XXXXXXX/`, gets a `checksums.json` (SHA-256 of every
file), is renamed to `iter_XXXXXXX/`, and only then does `latest_checkpointed_iteration.txt`
(Megatron-LM's marker name) move to it, atomically. A crash or a full disk at any point leaves
the previous checkpoint and the marker untouched; leftovers are `.tmp_*` directories, which are
removed at the next save. Loading verifies the checksums first, so a truncated or corrupt file
is reported by name instead of failing somewhere inside torch.

    ckpts = CheckpointDir(Path("runs/tiny/cpt/checkpoints"))
    tmp = ckpts.begin(step)        # write files into tmp ...
    ckpts.commit(step, tmp)        # ... then publish
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from swallow_train.errors import SwallowError

MARKER = "latest_checkpointed_iteration.txt"
CHECKSUMS = "checksums.json"


class CheckpointError(SwallowError, RuntimeError):
    """A checkpoint that cannot be written or trusted; the message names the file and the fix."""


def iter_name(step: int) -> str:
    return f"iter_{step:07d}"


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Write a small text file so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_checksums(directory: Path) -> None:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    sums = {str(p.relative_to(directory)): [p.stat().st_size, file_sha256(p)] for p in files}
    write_atomic(directory / CHECKSUMS, json.dumps(sums, indent=1, sort_keys=True))


def verify_checksums(directory: Path) -> None:
    """Raise CheckpointError naming the first missing, truncated or corrupt file."""
    manifest = directory / CHECKSUMS
    if not manifest.is_file():
        raise CheckpointError(
            f"{directory}: no {CHECKSUMS}; the checkpoint is incomplete or was not written by "
            "swallow-train. Remove it or point the marker at an older checkpoint"
        )
    try:
        sums = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        raise CheckpointError(f"{manifest}: corrupt checksum manifest") from None
    for rel, (size, digest) in sorted(sums.items()):
        path = directory / rel
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the checkpoint")
        if path.stat().st_size != size:
            raise CheckpointError(
                f"{path}: truncated or altered ({path.stat().st_size} bytes, expected {size}); "
                "delete this checkpoint directory to resume from the previous one"
            )
        if file_sha256(path) != digest:
            raise CheckpointError(
                f"{path}: checksum mismatch (corrupt file); delete this checkpoint directory to "
                "resume from the previous one"
            )


class CheckpointDir:
    """The `iter_XXXXXXX` directories of one stage and its `latest` marker."""

    def __init__(self, root: Path, keep_last: int = 3) -> None:
        self.root = Path(root)
        self.keep_last = keep_last

    def latest_step(self) -> int | None:
        marker = self.root / MARKER
        if not marker.is_file():
            return None
        text = marker.read_text().strip()
        if not text.isdigit():
            raise CheckpointError(f"{marker}: expected an iteration number, found {text!r}")
        step = int(text)
        if not (self.root / iter_name(step)).is_dir():
            raise CheckpointError(
                f"{marker} points at {iter_name(step)}, which does not exist under {self.root}"
            )
        return step

    def path(self, step: int) -> Path:
        return self.root / iter_name(step)

    def begin(self, step: int) -> Path:
        """A fresh temporary directory for checkpoint `step` (stale leftovers removed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".tmp_iter_*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.root / f".tmp_{iter_name(step)}"
        tmp.mkdir()
        return tmp

    def abort(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def commit(self, step: int, tmp: Path) -> Path:
        """Checksum `tmp`, publish it as `iter_XXXXXXX`, move the marker, prune old ones."""
        write_checksums(tmp)
        final = self.path(step)
        if final.exists():  # the same step saved again (e.g. after a resume): replace it
            old = self.root / f".tmp_old_{iter_name(step)}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(self.root)
        write_atomic(self.root / MARKER, f"{step}\n")
        self.prune()
        return final

    def steps(self) -> list[int]:
        found = []
        for p in self.root.glob("iter_*"):
            suffix = p.name.removeprefix("iter_")
            if p.is_dir() and suffix.isdigit():
                found.append(int(suffix))
        return sorted(found)

    def prune(self) -> None:
        latest = self.latest_step()
        keep = set(self.steps()[-self.keep_last :]) if self.keep_last > 0 else set()
        for step in self.steps():
            if step not in keep and step != latest:
                shutil.rmtree(self.path(step), ignore_errors=True)
