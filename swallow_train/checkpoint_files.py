"""Crash-safe checkpoint directories, shared by the megatron stages and the local RL backend.

A checkpoint is written into `.tmp_iter_XXXXXXX/`, gets a `checksums.json` (size and xxh3-128 of
every file, each hashed by the rank that wrote it: `owner_rank`), is renamed to `iter_XXXXXXX/`,
and only then does `latest_checkpointed_iteration.txt` (Megatron-LM's marker name) move to it,
atomically. A crash or a full disk at any point leaves
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
import re
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


def file_xxh3(path: Path, chunk: int = 1 << 24) -> str:
    """xxh3-128 of a file: ~10x SHA-256's speed, so hashing runs at the disk's read rate."""
    import xxhash

    digest = xxhash.xxh3_128()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


HASHES = {"sha256": file_sha256, "xxh3_128": file_xxh3}
HASH = "xxh3_128"


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


_WRITER_FILE = re.compile(r"__(\d+)_\d+\.distcp$")


def owner_rank(rel: str, world: int) -> int:
    """Which rank hashes (after a save) and verifies (before a load) a checkpoint file: the rank
    that wrote a `__<rank>_<n>.distcp` file (it is still in that node's page cache), modulo the
    world size; rank 0 for the common files (metadata, common.pt)."""
    match = _WRITER_FILE.search(rel)
    return int(match.group(1)) % world if match else 0


def checkpoint_files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                  if p.is_file() and p.name != CHECKSUMS)


def hash_entries(directory: Path, rels: list[str]) -> dict[str, list]:
    """{relative path: [size, xxh3-128]} of the given files."""
    return {rel: [(directory / rel).stat().st_size, file_xxh3(directory / rel)] for rel in rels}


def write_manifest(directory: Path, entries: dict[str, list]) -> None:
    missing = sorted(set(checkpoint_files(directory)) - set(entries))
    if missing:
        raise CheckpointError(f"{directory}: files without a checksum: {missing[:5]}")
    body = {"format": 2, "hash": HASH, "files": dict(sorted(entries.items()))}
    write_atomic(directory / CHECKSUMS, json.dumps(body, indent=1))


def write_checksums(directory: Path) -> None:
    """Hash every file of `directory` in this process and write the manifest."""
    write_manifest(directory, hash_entries(directory, checkpoint_files(directory)))


def read_manifest(directory: Path) -> tuple[str, dict[str, list]]:
    """(hash name, {relative path: [size, digest]}); also reads the SHA-256 manifests of
    checkpoints written before the xxh3 format."""
    manifest = directory / CHECKSUMS
    if not manifest.is_file():
        raise CheckpointError(
            f"{directory}: no {CHECKSUMS}; the checkpoint is incomplete or was not written by "
            "swallow-train")
    try:
        body = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{manifest}: corrupt checksum manifest") from None
    if isinstance(body, dict) and body.get("format") == 2:
        return body["hash"], body["files"]
    return "sha256", body


def verify_checksums(directory: Path, *, rank: int = 0, world: int = 1) -> None:
    """Raise CheckpointError naming the first missing, truncated or corrupt file among those
    this rank owns (`owner_rank`); with world 1, every file."""
    algorithm, sums = read_manifest(directory)
    hasher = HASHES[algorithm]
    for rel, (size, digest) in sorted(sums.items()):
        if owner_rank(rel, world) != rank:
            continue
        path = directory / rel
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the checkpoint")
        if path.stat().st_size != size:
            raise CheckpointError(
                f"{path}: truncated or altered ({path.stat().st_size} bytes, expected {size})")
        if hasher(path) != digest:
            raise CheckpointError(f"{path}: checksum mismatch (corrupt file)")


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

    def repair_advice(self, step: int) -> str:
        """The complete fix for a checkpoint `step` that failed verification."""
        older = [s for s in self.steps() if s < step]
        marker = self.root / MARKER
        if not older:
            return (f"no older checkpoint under {self.root}: delete {self.path(step)} and "
                    f"{marker} to start the stage again from its init")
        return (f"rerun with checkpoint.fallback=true to resume from the newest checkpoint that "
                f"verifies, or by hand: `rm -r {self.path(step)} && echo {older[-1]} > {marker}`")

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

    def point_marker(self, step: int) -> None:
        """Move the marker to an existing checkpoint (after setting newer bad ones aside)."""
        write_atomic(self.root / MARKER, f"{step}\n")

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
