"""Doctor results: one `Check` per line (PASS / FAIL / SKIP, the measured number, what it means),
printed as a table and written as JSON.

    swallow-train doctor cpt model=tiny_dense --json /tmp/doctor.json
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from swallow_train.checkpoint_files import write_atomic
from swallow_train.errors import SwallowError


class Status(Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(kw_only=True)
class Check:
    name: str
    status: Status
    value: float | int | str | None = None
    """The measured number (a version string for the version rows)."""
    unit: str = ""
    detail: str = ""
    """What was measured, the reason for a SKIP, or for a FAIL what is wrong and what to do."""
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    """Further numbers for the JSON (per-GPU values, per-host tokens, ...)."""

    def value_text(self) -> str:
        if self.value is None:
            return "-"
        if isinstance(self.value, float):
            text = f"{self.value:.3g}" if abs(self.value) < 1e4 else f"{self.value:,.0f}"
        elif isinstance(self.value, int) and not isinstance(self.value, bool):
            text = f"{self.value:,}"
        else:
            text = str(self.value)
        return f"{text} {self.unit}".strip()


def passed(name: str, value: float | int | str | None, unit: str = "", detail: str = "",
           **data: Any) -> Check:
    return Check(name=name, status=Status.PASS, value=value, unit=unit, detail=detail, data=data)


def failed(name: str, detail: str, value: float | int | str | None = None, unit: str = "",
           **data: Any) -> Check:
    return Check(name=name, status=Status.FAIL, value=value, unit=unit, detail=detail, data=data)


def skipped(name: str, reason: str, value: float | int | str | None = None,
            unit: str = "") -> Check:
    return Check(name=name, status=Status.SKIP, value=value, unit=unit, detail=reason)


def guarded(name: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    """Run one check; an exception becomes a FAIL line naming it (never a traceback on the
    terminal: the last frames go to the JSON). The check's wall time is recorded."""
    start = time.perf_counter()
    try:
        result = fn()
        checks = result if isinstance(result, list) else [result]
    except SwallowError as exc:
        checks = [failed(name, str(exc).strip().replace("\n", " "))]
    except Exception as exc:  # a failing check must not stop the others
        first = (str(exc).strip().splitlines() or [""])[0]
        tail = traceback.format_exc().strip().splitlines()[-12:]
        checks = [failed(name, f"{exc.__class__.__name__}: {first}", traceback=tail)]
    seconds = time.perf_counter() - start
    for check in checks:  # rows timed by an inner `guarded` keep their own time
        check.seconds = check.seconds or round(seconds / len(checks), 3)
    return checks


@dataclass(kw_only=True)
class Report:
    stage: str
    overrides: list[str]
    host: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.status is Status.FAIL for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {s.value: sum(c.status is s for c in self.checks) for s in Status}

    @staticmethod
    def line(check: Check) -> str:
        """One table row (fixed widths, so rows print as their checks finish)."""
        return (f"{check.status.value:<4}  {check.name:<24} {check.value_text():>14}  "
                f"{check.detail}").rstrip()

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items())
        return f"doctor {self.stage} on {self.host}: {counts}"

    def table(self) -> str:
        return "\n".join([*(self.line(c) for c in self.checks), self.summary()])

    def to_json(self) -> dict[str, Any]:
        rows = []
        for check in self.checks:
            row = asdict(check)
            row["status"] = check.status.value
            rows.append(row)
        return {"stage": self.stage, "overrides": self.overrides, "host": self.host,
                "ok": self.ok, "counts": self.counts(), "checks": rows,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(self.to_json(), indent=1, default=str) + "\n")
