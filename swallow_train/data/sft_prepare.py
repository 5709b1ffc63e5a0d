"""`swallow-train prepare-sft`: SFT manifest -> filtered, rendered, packed sequences (the engine;
`data/prepared.py` runs it from a recipe's data section).

    swallow-train prepare-sft model=tiny_dense                     # tiny synthetic chat set
    swallow-train prepare-sft model=qwen3_8b data.num_workers=32   # 2.1M conversations, 32k packs

Pipeline: read every source in order -> validate each record (a malformed one is a DataError
naming file:line, before anything is written) -> drop, counted per reason, conversations that
break a record rule (`chat.DROP_REASONS`: no assistant turn, chat control tokens in a text, two
assistant turns in a row, reasoning given twice or malformed <think> tags, an empty answer),
trim turns after the last assistant turn -> PII filter
(counted per category) -> render with the chat template, loss on assistant tokens -> the
too-long rule (`data.too_long`: drop, or truncate to the pack length) -> take the first
`max_conversations` kept per source -> shuffle (seed) and best-fit-decreasing packing into
`train.seq_length` -> `{prepared_dir}/{manifest}/seq{L}/` (written under a temporary name and
renamed when complete) with stats.json: conversations read / kept / dropped per reason, PII per
category, packs, efficiency, conversations per pack, tokens and loss tokens. Every read
conversation is accounted for: read = kept + dropped. A re-run with the same inputs does nothing;
a directory prepared from other inputs is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from swallow_train.data.chat import drop_reason, trim_trailing, validate_messages
from swallow_train.data.config import SFTDataConfig, TooLongRule
from swallow_train.data.decontam import identity
from swallow_train.data.decontam_check import Tally, init_checked, sft_task
from swallow_train.data.manifest import SFTManifest, Stage, load_manifest, resolve_manifest_path
from swallow_train.data.packed import padded_length, write_packs
from swallow_train.data.packing import best_fit_decreasing
from swallow_train.data.sft_render import init_worker
from swallow_train.data.sft_stats import apply_rule, new_counts, summarize, why_dropped
from swallow_train.data.shards import (
    changed_inputs,
    disk_full,
    input_identity,
    read_json,
    tokenizer_identity,
    write_json,
)
from swallow_train.data.sources import DataError, iter_records, source_files
from swallow_train.data.workers import SMALL_INPUT_BYTES, effective_workers, ordered_map


def sft_manifest(data: SFTDataConfig) -> SFTManifest:
    """`data.manifest`, parsed and checked (DataError names the file, line and fix)."""
    manifest = load_manifest(resolve_manifest_path(data.manifest), Stage.sft)
    assert isinstance(manifest, SFTManifest)
    return manifest


def packs_dir_name(seq_length: int, pad_multiple: int) -> str:
    return f"seq{seq_length}" + (f"-pad{pad_multiple}" if pad_multiple > 1 else "")


def packs_path(data: SFTDataConfig, seq_length: int, manifest: SFTManifest) -> Path:
    """`{data.prepared_dir}/{manifest name}/seq{seq_length}[-pad{M}]`."""
    return Path(data.prepared_dir) / manifest.name / packs_dir_name(seq_length,
                                                                     data.pad_to_multiple)


def expected_fingerprint(data: SFTDataConfig, tokenizer: str, seq_length: int,
                         manifest: SFTManifest | None = None) -> tuple[Path, str, dict[str, Any]]:
    """(output directory, the fingerprint its stats.json must carry, the input identities) of
    the packs `data` asks for, without preparing anything (`swallow_train.data.ready`);
    `manifest`: `data.manifest` when already parsed."""
    manifest = manifest or sft_manifest(data)
    synth = Path(data.prepared_dir) / "synthetic"
    inputs = {**source_inputs(manifest, synth, data.fingerprint_content),
              **identity(data.decontam, "data.decontam")}  # with drop on, the eval sets too
    fp = _fingerprint(manifest, tokenizer_identity(tokenizer)[0], seq_length, data.seed,
                      data.too_long, data.pad_to_multiple, inputs)
    return packs_path(data, seq_length, manifest), fp, inputs


def _tasks(manifest: SFTManifest, synth: Path, kept: list[int], batch_size: int):
    for si, src in enumerate(manifest.sources):
        cap, batch = src.max_conversations, []
        for where, record in iter_records(src.source, manifest.base, synth):
            if cap is not None and kept[si] >= cap:
                break  # enough kept; results already in flight beyond the cap are ignored
            field = src.messages_field
            if field not in record:
                raise DataError(
                    f"{where}: no field {field!r}; set messages_field of source "
                    f"{src.name} in {manifest.origin}"
                )
            messages = validate_messages(record[field], where, field)
            reason, trimmed = drop_reason(messages), False
            if reason is None:
                messages, trimmed = trim_trailing(messages)
            batch.append((where, messages, reason, trimmed))
            if len(batch) >= batch_size:
                yield si, src.pii_filter, batch
                batch = []
        if batch:
            yield si, src.pii_filter, batch


def source_inputs(manifest: SFTManifest, synth: Path, content: bool = False) -> dict[str, Any]:
    """The identity (size and mtime, or SHA-256) of every local input file of the manifest."""
    out: dict[str, Any] = {}
    for src in manifest.sources:
        out.update(input_identity(src.source, manifest.base, synth, content))
    return out


def _fingerprint(
    manifest: SFTManifest, tok_id: str, seq_length: int, seed: int, rule: TooLongRule,
    pad_multiple: int = 1, inputs: dict[str, Any] | None = None,
) -> str:
    key = {
        **({"inputs": inputs} if inputs else {}),
        "sources": [  # what decides the packs (not names, languages or notes)
            [asdict(s.source), s.messages_field, s.max_conversations, s.pii_filter]
            for s in manifest.sources
        ],
        "tokenizer": tok_id,
        "seq_length": seq_length,
        "seed": seed,
        "too_long": rule.value,
        **({"pad_multiple": pad_multiple} if pad_multiple > 1 else {}),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _preflight(manifest: SFTManifest, synth: Path) -> list[Path] | None:
    """Check every source; its local files (None when one is on the hub)."""
    files: list[Path] = []
    for src in manifest.sources:
        if src.source.hf:  # reachable (DataError names the fix otherwise), first record valid
            for where, record in iter_records(src.source):
                if src.messages_field not in record:
                    raise DataError(
                        f"{where}: no field {src.messages_field!r}; set "
                        f"messages_field of source {src.name}"
                    )
                validate_messages(record[src.messages_field], where, src.messages_field)
                break
        else:
            files += source_files(src.source, manifest.base, synth)
    return None if any(s.source.hf for s in manifest.sources) else files


def prepare_sft(
    manifest: SFTManifest,
    data: SFTDataConfig,
    tokenizer: str,
    seq_length: int,
    *,
    progress: bool = True,
    in_process_below: int = SMALL_INPUT_BYTES,
    command: str = "swallow-train prepare-sft",
) -> tuple[dict[str, Any], Path, bool]:
    """(stats, output directory, whether it was already there) of the packs of `manifest`
    (parsed from `data.manifest`) as `data` asks: workers, too-long rule, seed, padding, output
    directory. Local input smaller than `in_process_below` bytes is processed in this process
    (workers would take longer to start)."""
    from tqdm import tqdm

    from swallow_train.tokenizer import load_tokenizer

    pad_multiple, seed, too_long = data.pad_to_multiple, data.seed, data.too_long
    if pad_multiple < 1 or seq_length % pad_multiple:
        raise DataError(f"data.pad_to_multiple={pad_multiple} must be >= 1 and divide "
                        f"train.seq_length={seq_length}")
    out = packs_path(data, seq_length, manifest)
    synth = Path(data.prepared_dir) / "synthetic"
    tok_id = tokenizer_identity(tokenizer)[0]
    pad_id = int(load_tokenizer(tokenizer).pad_token_id)
    inputs = {**source_inputs(manifest, synth, data.fingerprint_content),
              **identity(data.decontam, "data.decontam")}  # as expected_fingerprint
    fp = _fingerprint(manifest, tok_id, seq_length, seed, too_long, pad_multiple, inputs)
    if out.exists():
        old = read_json(out / "stats.json") or {}
        if old.get("fingerprint") == fp:
            return old, out, True
        changed = changed_inputs(old.get("inputs"), inputs)
        if changed:
            raise DataError(
                f"{out}: an input changed since these packs were prepared (they are stale):\n  "
                + "\n  ".join(changed) + f"\nremove {out} and run `{command}` again"
            )
        raise DataError(
            f"{out} holds packs prepared from other inputs (manifest sources, "
            "tokenizer, seq_length, seed or too_long rule); it is not overwritten: "
            "remove it, or set data.prepared_dir elsewhere"
        )
    workers = effective_workers(data.num_workers, _preflight(manifest, synth), in_process_below)
    tally = Tally.open(data.decontam, Path(data.prepared_dir))  # eval-set overlap, per worker
    stage = out.with_name(f".{out.name}.tmp-{int(time.time() * 1e6)}")
    stage.mkdir(parents=True)
    start = time.time()
    try:
        counts = [new_counts() for _ in manifest.sources]
        kept = [0] * len(manifest.sources)
        lengths: list[int] = []
        bar = tqdm(
            desc=f"prepare-sft {manifest.name}", unit="conv", disable=not progress, mininterval=1
        )
        with (
            open(stage / "staged_tokens.bin", "wb") as ft,
            open(stage / "staged_assistant.bin", "wb") as fa,
        ):
            tasks = _tasks(manifest, synth, kept, data.batch_conversations)
            for si, results, found in ordered_map(
                sft_task, tasks, workers, init=init_checked,
                init_args=tally.init_args(init_worker, (tokenizer,)),
            ):
                c, cap = counts[si], manifest.sources[si].max_conversations
                for res, found_in in zip(results, found, strict=True):
                    if cap is not None and kept[si] >= cap:
                        break
                    c["read"] += 1
                    bar.update()
                    sample = apply_rule(res, c, seq_length, too_long)
                    tally.sft(res, found_in, kept=sample is not None)
                    if sample is not None:
                        ids, mask = sample
                        ft.write(ids.astype(np.int32).tobytes())
                        fa.write(mask.astype(np.uint8).tobytes())
                        lengths.append(len(ids))
                        kept[si] += 1
        bar.close()
        if not lengths:
            raise DataError(f"{manifest.origin}: no conversation is left after filtering "
                            f"(dropped: {why_dropped(counts)})")
        stats = _pack_and_write(
            stage, np.asarray(lengths, dtype=np.int64), seq_length, seed, pad_id, pad_multiple
        )
        stats.update(summarize(manifest, counts, fp, tokenizer, seq_length, seed, too_long, pad_id))
        stats["seconds"] = round(time.time() - start, 2)
        stats["inputs"] = inputs
        stats.update(tally.take())  # {"decontam": counts} when data.decontam is on
        write_json(stage / "stats.json", stats)
        stage.rename(out)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        error = disk_full(exc, out.parent, command)
        if error is not None:
            raise error from None
        raise
    return stats, out, False


def _pack_and_write(
    stage: Path, lengths: np.ndarray, seq_length: int, seed: int, pad_id: int,
    pad_multiple: int = 1,
) -> dict[str, Any]:
    packs = best_fit_decreasing(padded_length(lengths, pad_multiple), seq_length, seed)
    staged_tokens = np.memmap(stage / "staged_tokens.bin", dtype=np.int32, mode="r")
    staged_assistant = np.memmap(stage / "staged_assistant.bin", dtype=np.uint8, mode="r")
    counts = write_packs(stage, packs, lengths, staged_tokens, staged_assistant, seq_length, pad_id,
                         pad_multiple)
    del staged_tokens, staged_assistant
    (stage / "staged_tokens.bin").unlink()
    (stage / "staged_assistant.bin").unlink()
    return {
        "packs": len(packs),
        "conversations": int(lengths.size),
        "efficiency": counts["tokens"] / counts["capacity"],
        "mean_conversations_per_pack": lengths.size / len(packs),
        **counts,
    }
