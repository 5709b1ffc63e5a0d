"""Counting for `swallow-train prepare-sft`: what happened to every conversation read (kept,
truncated, dropped per reason with the first few locations, PII per category), the too-long rule,
and the human-readable report.

    from swallow_train.data.sft_stats import report
    print(report(json.load(open("prepared/tiny_sft/seq256/stats.json"))))
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from swallow_train.data.chat import DROP_REASONS, DROP_RULES
from swallow_train.data.config import TooLongRule
from swallow_train.data.decontam_check import report as decontam_report
from swallow_train.data.manifest import SFTManifest

REASONS = (*DROP_REASONS, "pii", "too_long", "contaminated")
"""Every reason a read conversation is dropped for (stats.json lists each, zeros included)."""
HINTS = {
    **DROP_RULES,
    "pii": "personal data found (see PII per category); set pii_filter: false only for "
    "data cleared for it",
    "too_long": "longer than train.seq_length; raise it, or set data.too_long=truncate",
    "contaminated": "shares n-grams with an eval set of data.decontam.eval_sets (stats.json "
    "decontam names the eval rows); set data.decontam.drop=false to keep and only report",
}
EXAMPLES = 5


def new_counts() -> dict[str, Any]:
    return {
        "read": 0,
        "kept": 0,
        "dropped": dict.fromkeys(REASONS, 0),
        "truncated": 0,
        "trimmed_trailing_turns": 0,
        "pii_categories": Counter(),
        "tokens": 0,
        "loss_tokens": 0,
        "examples": {},
    }


def apply_rule(
    res: tuple[Any, ...], c: dict[str, Any], seq_length: int, rule: TooLongRule
) -> tuple[np.ndarray, np.ndarray] | None:
    """Count one worker result; the (ids, mask) to keep, or None when it is dropped."""
    kind, where = res[0], res[1]
    if kind == "drop" or kind == "pii":
        reason = res[2] if kind == "drop" else "pii"
        if kind == "pii":
            c["pii_categories"].update(res[2])
        c["dropped"][reason] += 1
        c["examples"].setdefault(reason, [])
        if len(c["examples"][reason]) < EXAMPLES:
            c["examples"][reason].append(where)
        return None
    _, where, ids, mask, trimmed = res
    c["trimmed_trailing_turns"] += int(trimmed)
    if len(ids) > seq_length:
        if rule is TooLongRule.truncate and mask[1:seq_length].any():
            ids, mask = ids[:seq_length], mask[:seq_length]
            c["truncated"] += 1
        else:
            return apply_rule(("drop", where, "too_long"), c, seq_length, rule)
    c["kept"] += 1
    c["tokens"] += len(ids)
    c["loss_tokens"] += int(mask[1:].sum())
    return ids, mask


def why_dropped(counts: list[dict[str, Any]]) -> str:
    """Each reason that dropped conversations: how many, where first, and the fix."""
    parts = []
    for reason in REASONS:
        n = sum(c["dropped"][reason] for c in counts)
        if n:
            first = next(c["examples"][reason][0] for c in counts if c["examples"].get(reason))
            parts.append(f"{reason} {n:,}, first at {first}: {HINTS[reason]}")
    return "; ".join(parts) or "nothing was read"


def summarize(
    manifest: SFTManifest,
    counts: list[dict[str, Any]],
    fp: str,
    tokenizer: str,
    seq_length: int,
    seed: int,
    rule: TooLongRule,
    pad_id: int,
) -> dict[str, Any]:
    sources = {}
    for src, c in zip(manifest.sources, counts, strict=True):
        c["pii_categories"] = dict(sorted(c["pii_categories"].items()))
        c["max_conversations"] = src.max_conversations
        c["short_of_max"] = (src.max_conversations or 0) > c["kept"]
        sources[src.name] = c
    total = {
        k: sum(c[k] for c in counts)
        for k in ("read", "kept", "truncated", "tokens", "loss_tokens", "trimmed_trailing_turns")
    }
    total["dropped"] = {r: sum(c["dropped"][r] for c in counts) for r in REASONS}
    pii: Counter[str] = Counter()
    for c in counts:
        pii.update(c["pii_categories"])
    total["pii_categories"] = dict(sorted(pii.items()))
    return {
        "manifest": manifest.name,
        "manifest_file": str(manifest.origin),
        "fingerprint": fp,
        "tokenizer": tokenizer,
        "seq_length": seq_length,
        "seed": seed,
        "too_long": rule.value,
        "pad_id": pad_id,
        "target_conversations": manifest.target_conversations,
        "total": total,
        "sources": sources,
    }


def report(stats: dict[str, Any]) -> str:
    t = stats["total"]
    dropped = ", ".join(f"{k} {v:,}" for k, v in t["dropped"].items() if v) or "none"
    pii = ", ".join(f"{k} {v:,}" for k, v in t["pii_categories"].items()) or "none"
    lines = [
        f"conversations: read {t['read']:,}, kept {t['kept']:,} (truncated "
        f"{t['truncated']:,}), dropped: {dropped}",
        f"PII found (conversations per category): {pii}",
        f"packs: {stats['packs']:,} x {stats['seq_length']:,} tokens, efficiency "
        f"{stats['efficiency']:.2%}, {stats['mean_conversations_per_pack']:.2f} "
        f"conversations per pack, {stats['tokens']:,} tokens, {stats['loss_tokens']:,} "
        "with loss",
    ]
    for name, c in stats["sources"].items():
        short = "  (fewer than max_conversations)" if c["short_of_max"] else ""
        lines.append(f"  {name}: read {c['read']:,}, kept {c['kept']:,}{short}")
        for reason, n in c["dropped"].items():
            if n:
                first = (c["examples"].get(reason) or ["?"])[0]
                lines.append(f"    dropped {reason}: {n:,} (first at {first}): "
                             f"{HINTS.get(reason, '')}")
    return "\n".join(lines + decontam_report(stats.get("decontam")))
