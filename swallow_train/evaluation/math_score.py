"""Math answers scored with this project's verifier (the RL reward's: `rl/answer.py` extracts the
final answer after </think>, `rl/verify.py` checks it with math-verify), pass@1 of k samples.

Done on lm-eval's logged samples after the run, not as an lm-eval metric: the verifier keeps
its hard per-check deadline (a process pool, `PooledVerifier`) and checks all responses
concurrently, which a per-document lm-eval metric cannot; it works the same for built-in tasks
(gsm8k, minerva_math, aime24) whose YAML we do not own; and the logged responses can be
re-scored without generating again.

    scores = score_math(samples, {"tiny_math": "label"}, verify_pooled(VerifyConfig()))
    scores.metrics    # {"tiny_math/pass@1": 0.41, "tiny_math/pass@4": 0.62, "tiny_math/boxed": 0.9}
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from swallow_train.errors import SwallowError
from swallow_train.evaluation.config import VerifyConfig
from swallow_train.rl.answer import answer_region, last_boxed

Checker = Callable[[Sequence[tuple[str, str]]], list[float]]
"""Scores (1.0 correct, 0.0 not) of (response, reference answer) pairs, in order."""


class EvalDataError(SwallowError, ValueError):
    """A logged sample that cannot be scored as the suite says (no reference answer field)."""


def math_key(task: str, math: dict[str, str]) -> str | None:
    """The `eval_suite.math` entry that covers `task`: itself, or the group whose name is a
    prefix (`minerva_math` covers `minerva_math_algebra`); the longest wins."""
    keys = [k for k in math if task == k or task.startswith(k + "_")]
    return max(keys, key=len) if keys else None


def reference(doc: dict[str, Any], key: str, task: str) -> str:
    """The reference answer of a logged doc: its `key` field, the text after `####` if any."""
    if key not in doc or doc[key] is None:
        raise EvalDataError(
            f"task {task}: a logged doc has no {key!r} answer (fields: {', '.join(sorted(doc))})"
            f": set eval_suite.math to map {task} to the field that holds the final answer")
    text = str(doc[key])
    return text.rsplit("####", 1)[1].strip() if "####" in text else text.strip()


def responses(sample: dict[str, Any]) -> list[str]:
    """The k responses of one logged generation sample (`resps`: one list per request)."""
    return [r if isinstance(r, str) else "" for req in sample["resps"] for r in req]


def boxed(response: str) -> bool:
    """Well formed: any thinking closed, then a `\\boxed{}` answer."""
    region = answer_region(response)
    return region is not None and last_boxed(region) is not None


@dataclass
class MathScores:
    metrics: dict[str, float] = field(default_factory=dict)
    """`<task>/pass@1` (mean over prompts of correct/k), `<task>/pass@<k>` (any correct,
    k > 1), `<task>/boxed` (share of well-formed responses); groups micro-averaged too."""
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """task -> per prompt: doc_id, label, scores (one per sample), pass@1."""


def _aggregate(rows: list[dict[str, Any]], name: str, out: dict[str, float]) -> None:
    if not rows:
        return
    k = max(len(r["scores"]) for r in rows)
    out[f"{name}/pass@1"] = sum(r["pass@1"] for r in rows) / len(rows)
    if k > 1:
        out[f"{name}/pass@{k}"] = sum(max(r["scores"], default=0.0) for r in rows) / len(rows)
    total = sum(len(r["scores"]) for r in rows)
    out[f"{name}/boxed"] = sum(r["boxed"] for r in rows) / total if total else 0.0


def score_math(samples: dict[str, list[dict[str, Any]]], math: dict[str, str],
               check: Checker) -> MathScores:
    """Score every logged sample of the math tasks in `samples` (task -> lm-eval samples)."""
    plan: list[tuple[str, dict[str, Any], str, list[str]]] = []
    for task in sorted(samples):
        key = math_key(task, math)
        if key is None:
            continue
        for sample in samples[task]:
            plan.append((task, sample, reference(sample["doc"], math[key], task),
                         responses(sample)))
    flat = [(resp, label) for _, _, label, resps in plan for resp in resps]
    scores = iter(check(flat) if flat else [])
    result = MathScores()
    for task, sample, label, resps in plan:
        got = [float(next(scores)) for _ in resps]
        result.rows.setdefault(task, []).append({
            "doc_id": sample.get("doc_id"), "label": label, "scores": got,
            "pass@1": sum(got) / len(got) if got else 0.0,
            "boxed": sum(boxed(r) for r in resps)})
    groups: dict[str, list[dict[str, Any]]] = {}
    for task, rows in result.rows.items():
        _aggregate(rows, task, result.metrics)
        groups.setdefault(math_key(task, math) or task, []).extend(rows)
    for key, rows in groups.items():
        if key not in result.rows:  # a group of several tasks: micro-average over its prompts
            _aggregate(rows, key, result.metrics)
    return result


def verify_pooled(cfg: VerifyConfig) -> Checker:
    """A checker that runs `rl.verify.score_response` in `cfg.workers` processes, each check
    under the hard deadline `cfg.timeout_s` (0.0 when it misses it), as the RL reward does."""
    from swallow_train.rl.verify import PooledVerifier

    def check(items: Sequence[tuple[str, str]]) -> list[float]:
        with PooledVerifier(workers=cfg.workers, timeout_s=cfg.timeout_s) as verifier:
            verifier.warm_up()
            return asyncio.run(verifier.score_many(list(items)))

    return check
