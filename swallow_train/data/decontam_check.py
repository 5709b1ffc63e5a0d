"""The training side of decontamination: each `prepare` / `prepare-sft` worker checks its own
documents against the memory-mapped eval index (`data/decontam.py`) before tokenizing them, drops
the contaminated ones when `data.decontam.drop` is on, and returns what it found; the main
process merges the counts (`Tally`) into the command's report and stats.

    from swallow_train.data.decontam_check import Tally, report
    print("\\n".join(report(json.load(open("prepared/tiny_cpt/decontam.json")))))

Counts: `checked` texts, `contaminated` (any eval set), `dropped`, and per eval set the texts
it contaminates with the first few as "training location ~ eval file:line".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from swallow_train.data.cpt_tokenize import tokenize_task
from swallow_train.data.decontam import (
    DecontamConfig,
    EvalIndex,
    Lookup,
    identity,
    open_index,
    text_hashes,
)
from swallow_train.data.sft_render import render_task
from swallow_train.data.shards import write_json

EXAMPLES = 5
CONTAMINATED = "contaminated"
"""The drop reason of `prepare-sft` (stats.json `dropped`)."""
_W: dict[str, Any] = {}


def init_checked(path: str | None, cfg: DecontamConfig, init: Any, *args: Any) -> None:
    """Worker start: the command's own initialiser, then the eval index mapped from `path`."""
    if init is not None:
        init(*args)
    _W.clear()
    if path:
        _W.update(lookup=Lookup.load(path), cfg=cfg)


def _check(value: Any) -> dict[int, int]:
    cfg: DecontamConfig = _W["cfg"]
    return _W["lookup"].match(text_hashes(value, cfg), cfg.min_overlap)


def cpt_task(task: tuple[Any, ...]) -> tuple[Any, ...]:
    """`cpt_tokenize.tokenize_task` after the check: (corpus, shard, end, skipped, docs, kind,
    locations) -> (corpus, shard, end, skipped, tokens, lengths, (checked, [(location, found)]))."""
    corpus, shard, end, skipped, docs, kind, locs = task
    hits: list[tuple[str, dict[int, int]]] = []
    if _W:
        keep = []
        for doc, loc in zip(docs, locs, strict=True):
            found = _check(doc)
            if found:
                hits.append((loc, found))
            if not (found and _W["cfg"].drop):
                keep.append(doc)
        docs = keep
    return (*tokenize_task((corpus, shard, end, skipped, docs, kind)), (len(locs), hits))


def sft_task(task: tuple[int, bool, list[Any]]) -> tuple[int, list[Any], list[dict[int, int]]]:
    """`sft_render.render_task` after the check: a conversation still to keep that overlaps an
    eval set gets the drop reason `contaminated` when `drop` is on; -> (source, results, what
    each conversation matched)."""
    source, pii_filter, items = task
    found_all: list[dict[int, int]] = []
    if _W:
        checked = []
        for where, messages, reason, trimmed in items:
            found = _check(messages) if reason is None else {}
            found_all.append(found)
            if found and _W["cfg"].drop:
                reason = CONTAMINATED
            checked.append((where, messages, reason, trimmed))
        items = checked
    else:
        found_all = [{} for _ in items]
    source, results = render_task((source, pii_filter, items))
    return source, results, found_all


def new_counts(index: EvalIndex | None) -> dict[str, Any]:
    return {"index": index.digest if index else None, "checked": 0, CONTAMINATED: 0,
            "dropped": 0, "sets": {}, "examples": {}}


def merge(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    for key in ("checked", CONTAMINATED, "dropped"):
        into[key] += other[key]
    for name, n in other["sets"].items():
        into["sets"][name] = into["sets"].get(name, 0) + n
        room = EXAMPLES - len(into["examples"].setdefault(name, []))
        into["examples"][name] += other["examples"].get(name, [])[: max(room, 0)]
    return into


class Tally:
    """Counts of one command run (or one CPT shard), as a JSON-ready dict (`counts`)."""

    def __init__(self, index: EvalIndex | None, cfg: DecontamConfig) -> None:
        self.index, self.cfg, self.drop = index, cfg, cfg.drop
        self.counts = new_counts(index)

    @classmethod
    def open(cls, cfg: DecontamConfig, root: Path, field: str = "data.decontam") -> Tally:
        """The tally of `cfg`'s eval sets (their index built or loaded under `root`)."""
        return cls(open_index(cfg, root, field), cfg)

    def init_args(self, init: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """`init_checked`'s arguments around the command's own worker initialiser."""
        return (self.index.path if self.index else None, self.cfg, init, *args)

    def record(self, where: str, found: dict[int, int], dropped: bool) -> None:
        c, index = self.counts, self.index
        c[CONTAMINATED] += 1
        c["dropped"] += int(dropped)
        assert index is not None
        for set_id, row in sorted(found.items()):
            name = index.sets[set_id]
            c["sets"][name] = c["sets"].get(name, 0) + 1
            examples = c["examples"].setdefault(name, [])
            if len(examples) < EXAMPLES:
                examples.append(f"{where} ~ {index.row_where[row]}")

    def batch(self, result: tuple[int, list[tuple[str, dict[int, int]]]]) -> None:
        """Add what a `cpt_task` found."""
        checked, hits = result
        if self.index is None:
            return
        self.counts["checked"] += checked
        for where, found in hits:
            self.record(where, found, self.drop)

    def sft(self, res: tuple[Any, ...], found: dict[int, int], kept: bool) -> None:
        """Add one `prepare-sft` result: contaminated and kept, or dropped for it."""
        dropped = res[0] == "drop" and res[2] == CONTAMINATED
        if self.index is not None and (kept or dropped):
            self.counts["checked"] += 1
            if found:
                self.record(res[1], found, dropped)

    def take(self) -> dict[str, Any]:
        """{"decontam": counts} (for a shard's .json), then start again; {} when inactive."""
        if self.index is None:
            return {}
        out, self.counts = self.counts, new_counts(self.index)
        return {"decontam": out}


class CPTCheck:
    """What `prepare` needs: the index, the input identity, worker arguments, shard counts."""

    def __init__(self, cfg: DecontamConfig | None, root: Path, field: str = "data.decontam"):
        self.cfg = cfg or DecontamConfig()
        self.index = open_index(self.cfg, root, field)
        self.identity = identity(self.cfg, field)
        self.shard = Tally(self.index, self.cfg)
        self.total: dict[str, Any] | None = None
        """The counts of every shard, after `collect`."""

    def collect(self, out: Path, corpora: Iterable[str]) -> dict[str, Any] | None:
        """The counts of every shard checked against this index, written to
        `{out}/decontam.json` (and kept as `total`)."""
        if self.index is None:
            return None
        total, unchecked = new_counts(self.index), 0
        for name in corpora:
            for path in sorted((out / name).glob("shard-*.json")):
                entry = json.loads(path.read_text(encoding="utf-8")).get("decontam")
                if entry and entry["index"] == self.index.digest:
                    merge(total, entry)
                else:
                    unchecked += 1
        total.update(unchecked_shards=unchecked, sets_info=self.index.info)
        write_json(out / "decontam.json", total)
        self.total = total
        return total


def report(counts: dict[str, Any] | None) -> list[str]:
    """Human-readable lines of a `Tally`'s counts ([] when there was no check)."""
    if not counts:
        return []
    checked = max(counts["checked"], 1)
    lines = [f"decontamination (index {counts['index']}): checked {counts['checked']:,}, "
             f"contaminated {counts[CONTAMINATED]:,} ({counts[CONTAMINATED] / checked:.3%}), "
             f"dropped {counts['dropped']:,}"]
    for name, n in sorted(counts["sets"].items()):
        first = "; ".join(counts["examples"].get(name, [])[:3])
        lines.append(f"  {name}: {n:,} contaminated, e.g. {first}")
    if counts.get("unchecked_shards"):
        lines.append(f"  {counts['unchecked_shards']} shard(s) were prepared before these eval "
                     "sets were given and are not counted: remove the corpus directory and "
                     "prepare again to check them")
    return lines


def check_rows(cfg: DecontamConfig, root: Path, rows: list[dict[str, Any]], field: str
               ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(rows to keep, counts) of in-process rows (RL prompts, `where` = metadata id)."""
    tally, kept = Tally.open(cfg, root, field), []
    index = tally.index
    if index is None:
        return rows, None
    for i, row in enumerate(rows):
        found = index.match(text_hashes([row["prompt"], row["label"]], cfg))
        tally.counts["checked"] += 1
        if found:
            tally.record(str(row.get("metadata", {}).get("id", f"row {i}")), found, cfg.drop)
        if not (found and cfg.drop):
            kept.append(row)
    return kept, {**tally.counts, "sets_info": index.info}

