"""Corpus manifests (`data_manifests/*.yaml`): what a CPT mixture or an SFT set is made of.

A CPT manifest lists corpora, each with a source (hub id / local files / synthetic generator), a
language tag, the field holding its text and its share of the run as a token budget; an SFT
manifest lists conversation sources with how many conversations to take and whether the PII filter
applies. Loading is strict: an unknown field, a wrong type, a bad budget or a missing value is a
DataError naming the file, line and field. Relative local paths resolve against the directory of
the manifest file.

    from swallow_train.data.manifest import load_manifest
    m = load_manifest("data_manifests/tiny_cpt.yaml")
    m.budget_tokens()    # {"ja_text": 18432, ...}, "rest" resolved, sum == total_tokens
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from pathlib import Path

from swallow_train.data.sources import DataError, SourceConfig
from swallow_train.data.strict_yaml import load_typed


class Stage(Enum):
    cpt = "cpt"
    sft = "sft"


class Language(Enum):
    ja = "ja"
    en = "en"
    ja_en = "ja-en"
    """Bilingual / parallel Japanese-English text."""
    code = "code"


class CorpusKind(Enum):
    text = "text"
    """`text_field` holds a string: one pretraining document."""
    chat = "chat"
    """`text_field` holds a `messages` list: rendered with the model's chat template into one
    document (reasoning in <think>...</think>), as for chat/reasoning data used in CPT."""


@dataclass(kw_only=True)
class Corpus:
    name: str
    language: Language
    source: SourceConfig
    budget: int | str
    """Tokens this corpus contributes to the run: an integer, a number with K/M/B/T
    ("12.5B" = 12,500,000,000), or "rest" (total_tokens minus every other budget; at most one)."""
    text_field: str = "text"
    kind: CorpusKind = CorpusKind.text
    skip_empty: bool = False
    """Drop (and count) records whose text is empty instead of failing on them."""
    note: str = ""


@dataclass(kw_only=True)
class CPTManifest:
    name: str
    """Output directory name: `{prepared_dir}/{name}/`."""
    stage: Stage
    corpora: list[Corpus]
    total_tokens: int | None = None
    """When set, the budgets must add up to it exactly ("rest" fills the gap)."""
    description: str = ""
    origin: Path | None = field(default=None, metadata={"yaml": False})
    """The file this manifest was loaded from (not a YAML field)."""

    @property
    def base(self) -> Path | None:
        return self.origin.parent if self.origin else None

    def budget_tokens(self) -> dict[str, int]:
        """Token budget per corpus, "rest" resolved (validated at load time)."""
        fixed = {c.name: parse_budget(c.budget) for c in self.corpora}
        rest = [n for n, b in fixed.items() if b is None]
        if rest:
            assert self.total_tokens is not None
            fixed[rest[0]] = self.total_tokens - sum(b for b in fixed.values() if b is not None)
        return {n: int(b) for n, b in fixed.items() if b is not None}


@dataclass(kw_only=True)
class SFTSource:
    name: str
    language: Language
    source: SourceConfig
    messages_field: str = "messages"
    max_conversations: int | None = None
    """Take the first N conversations that pass every filter, in source order; None: all."""
    pii_filter: bool = True
    note: str = ""


@dataclass(kw_only=True)
class SFTManifest:
    name: str
    stage: Stage
    sources: list[SFTSource]
    target_conversations: int | None = None
    """The size of the mixture; when every source has max_conversations they must add up to it."""
    description: str = ""
    origin: Path | None = field(default=None, metadata={"yaml": False})

    @property
    def base(self) -> Path | None:
        return self.origin.parent if self.origin else None


Manifest = CPTManifest | SFTManifest

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBT]?)\s*$")
_SCALE = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_budget(value: int | str) -> int | None:
    """Tokens of a budget value; None for "rest"; ValueError when it is not a budget."""
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"budget must be > 0, got {value}")
        return value
    if value.strip() == "rest":
        return None
    m = _BUDGET.match(value)
    if not m:
        raise ValueError(f"budget {value!r} is not a token count like 4200000000, 4.2B or rest")
    tokens = Decimal(m.group(1)) * _SCALE[m.group(2)]
    if tokens != tokens.to_integral_value() or tokens <= 0:
        raise ValueError(f"budget {value!r} is not a positive whole number of tokens")
    return int(tokens)


def _check_names(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if not _NAME.match(name):
            raise DataError(f"{where}: name {name!r} must be letters, digits, '_', '.', '-'")
        if name in seen:
            raise DataError(f"{where}: name {name!r} is used twice")
        seen.add(name)


def _check_cpt(m: CPTManifest, where: str) -> None:
    if m.stage is not Stage.cpt:
        raise DataError(f"{where}: stage: this is an {m.stage.value} manifest, a CPT one is needed")
    if not m.corpora:
        raise DataError(f"{where}: corpora: list at least one corpus")
    _check_names([c.name for c in m.corpora], f"{where}: corpora")
    budgets: dict[str, int | None] = {}
    for i, c in enumerate(m.corpora):
        c.source.check(f"{where}: corpora[{i}] ({c.name}).source")
        try:
            budgets[c.name] = parse_budget(c.budget)
        except ValueError as exc:
            raise DataError(f"{where}: corpora[{i}] ({c.name}).budget: {exc}") from None
    rest = [n for n, b in budgets.items() if b is None]
    fixed = sum(b for b in budgets.values() if b is not None)
    if len(rest) > 1:
        raise DataError(f"{where}: budget 'rest' is used by {rest}; at most one corpus may use it")
    if rest and (m.total_tokens is None or fixed >= m.total_tokens):
        raise DataError(
            f"{where}: corpus {rest[0]} has budget 'rest', which needs total_tokens larger than "
            f"the other budgets ({fixed:,})"
        )
    if not rest and m.total_tokens is not None and fixed != m.total_tokens:
        raise DataError(
            f"{where}: the budgets add up to {fixed:,} tokens but total_tokens is "
            f"{m.total_tokens:,} (off by {fixed - m.total_tokens:+,}); fix a budget or give one "
            "corpus `budget: rest`"
        )


def _check_sft(m: SFTManifest, where: str) -> None:
    if m.stage is not Stage.sft:
        raise DataError(f"{where}: stage: this is a {m.stage.value} manifest, an SFT one is needed")
    if not m.sources:
        raise DataError(f"{where}: sources: list at least one source")
    _check_names([s.name for s in m.sources], f"{where}: sources")
    for i, s in enumerate(m.sources):
        s.source.check(f"{where}: sources[{i}] ({s.name}).source")
        if s.max_conversations is not None and s.max_conversations <= 0:
            raise DataError(f"{where}: sources[{i}] ({s.name}).max_conversations must be > 0")
    caps = [s.max_conversations for s in m.sources]
    if m.target_conversations is not None and all(c is not None for c in caps):
        total = sum(c for c in caps if c is not None)
        if total != m.target_conversations:
            raise DataError(
                f"{where}: max_conversations add up to {total:,} but target_conversations is "
                f"{m.target_conversations:,}"
            )


def load_manifest(path: str | Path, stage: Stage | None = None) -> Manifest:
    """The typed manifest at `path` (its `stage` field picks CPT or SFT); DataError naming the
    file, line and field for anything unknown, mistyped or inconsistent."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    cls_by_stage = {"cpt": CPTManifest, "sft": SFTManifest}
    from swallow_train.data.strict_yaml import peek_key

    kind = peek_key(path, "stage")
    if kind not in cls_by_stage:
        raise DataError(f"{path}: stage: must be 'cpt' or 'sft', got {kind!r}")
    manifest = load_typed(path, cls_by_stage[kind])
    manifest.origin = path.resolve()
    if stage is not None and manifest.stage is not stage:
        raise DataError(f"{path}: stage is {kind!r} but a {stage.value} manifest is needed here")
    if isinstance(manifest, CPTManifest):
        _check_cpt(manifest, str(path))
    else:
        _check_sft(manifest, str(path))
    return manifest


def resolve_manifest_path(spec: str, field_name: str = "data.manifest") -> Path:
    """A recipe's manifest path: absolute, relative to the working directory, or relative to the
    repository root (where data_manifests/ lives)."""
    path = Path(spec).expanduser()
    if path.is_absolute() or path.exists():
        if not path.exists():
            raise DataError(f"{field_name}={spec}: no such manifest")
        return path
    repo = Path(__file__).resolve().parents[2] / spec
    if repo.exists():
        return repo
    raise DataError(
        f"{field_name}={spec}: no such manifest (looked in {Path.cwd()} and {repo.parent})"
    )
