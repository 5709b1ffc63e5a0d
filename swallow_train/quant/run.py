"""The quantize stage's work in its stage directory, each step reused when a killed or failed
run is rerun with the same settings for it (a key file beside its output):

    calibration.jsonl, heldout.jsonl, calibration_stats.json   validated generations (step 1)
    hf/                                                         the AWQ W4A16 checkpoint (step 2)
    gate.json, summary.json                                     before/after numbers (step 3)

    swallow-train quantize model=tiny_dense       # runs/tiny_dense/rl/hf -> .../quantize/hf
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from swallow_train.checkpoint_files import write_atomic
from swallow_train.config import RecipeError
from swallow_train.lifecycle.loop import say as lifecycle_say
from swallow_train.metrics.config import LoggingConfig
from swallow_train.models.config import ModelConfig
from swallow_train.quant.calibrate import build_calibration, read_jsonl, write_jsonl
from swallow_train.quant.config import AWQConfig, CalibrationConfig, GateConfig
from swallow_train.rl.prompts import RLDataConfig
from swallow_train.rl.reward import RewardConfig
from swallow_train.run import InitConfig, RunConfig
from swallow_train.stage_dir import StageDir


class QuantRecipe(Protocol):
    """The sections of `stages.quantize.QuantizeRecipe` this module reads (it sits below the
    stages layer, so it names them instead of importing the recipe)."""

    model: ModelConfig
    data: RLDataConfig
    calibration: CalibrationConfig
    awq: AWQConfig
    gate: GateConfig
    reward: RewardConfig
    run: RunConfig
    init: InitConfig
    logging: LoggingConfig


def say(msg: str) -> None:
    lifecycle_say(f"quantize: {msg}")


def _key(*parts: Any) -> str:
    return json.dumps([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts],
                      sort_keys=True, default=lambda e: getattr(e, "value", str(e)))


def _reusable(key_file: Path, key: str, *outputs: Path) -> bool:
    return key_file.is_file() and key_file.read_text() == key and all(o.exists() for o in outputs)


def start_dir(recipe: QuantRecipe) -> Path:
    """The bf16 checkpoint to quantize (init.hf, or this run's `init.from_stage` export)."""
    start = recipe.init.resolve(recipe.run)
    if start is None or not (Path(start) / "config.json").is_file():
        raise RecipeError(f"the quantize stage starts from {start}, which is not an HF "
                          "checkpoint directory: run the RL stage first (swallow-train rl ...) "
                          "or set init.hf to an HF directory")
    return Path(start)


def calibrate(recipe: QuantRecipe, sd: StageDir, source: Path, tok: Any) -> tuple[list, list, dict]:
    """Step 1 (reused when its key matches): the calibration and held-out sets."""
    files = [sd.path / n for n in ("calibration.jsonl", "heldout.jsonl", "calibration_stats.json")]
    key = _key(str(source), recipe.calibration, recipe.data)
    key_file = sd.path / "calibration.key"
    if _reusable(key_file, key, *files):
        say(f"reusing {files[0]} (same model, prompts and calibration settings)")
        return read_jsonl(files[0]), read_jsonl(files[1]), json.loads(files[2].read_text())
    t0 = time.monotonic()
    result = build_calibration(source, tok, recipe.calibration, recipe.data.train_path,
                               progress=recipe.logging.progress_bar)
    result.stats["seconds"] = round(time.monotonic() - t0, 2)
    write_jsonl(files[0], result.calibration)
    write_jsonl(files[1], result.heldout)
    write_atomic(files[2], json.dumps(result.stats, indent=2) + "\n")
    write_atomic(key_file, key)
    return result.calibration, result.heldout, result.stats


def quantize(recipe: QuantRecipe, sd: StageDir, source: Path, tok: Any,
             calibration: list[dict[str, Any]]) -> dict[str, Any]:
    """Step 2 (reused when its key matches): AWQ into `hf/`; time and sizes."""
    from swallow_train.quant.awq import dir_bytes, quantize_awq

    key = _key(str(source), recipe.calibration, recipe.data, recipe.awq)
    key_file, info_file = sd.path / "quantize.key", sd.path / "quantize.json"
    if _reusable(key_file, key, sd.hf / "config.json", info_file):
        say(f"reusing {sd.hf} (same calibration and AWQ settings)")
        return json.loads(info_file.read_text())
    t0 = time.monotonic()
    quantize_awq(source, [r["text"] for r in calibration], tok, recipe.awq,
                 max_seq_length=recipe.calibration.max_seq_length, out=sd.hf)
    info = {"seconds": round(time.monotonic() - t0, 2), "bf16_bytes": dir_bytes(source),
            "quantized_bytes": dir_bytes(sd.hf)}
    info["size_ratio"] = round(info["quantized_bytes"] / info["bf16_bytes"], 4)
    write_atomic(info_file, json.dumps(info, indent=2) + "\n")
    write_atomic(key_file, key)
    return info


def gate(recipe: QuantRecipe, sd: StageDir, source: Path, tok: Any,
         heldout: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Step 3: both models measured; the record written to gate.json; the failures."""
    from swallow_train.quant.calibrate import load_prompts
    from swallow_train.quant.gate import judge_gate, measure

    g, cal = recipe.gate, recipe.calibration
    prompts, _ = load_prompts(recipe.data.eval_path, tok, cal.max_prompt_len, cal.enable_thinking)
    prompts = prompts[: g.eval_prompts] if g.eval_prompts is not None else prompts
    t0 = time.monotonic()
    progress = recipe.logging.progress_bar
    before = measure(source, tok, heldout, prompts, g, cal, progress=progress, name="bf16")
    after = measure(sd.hf, tok, heldout, prompts, g, cal, progress=progress, name="quantized")
    failures = judge_gate(before, after, g)
    record = {"passed": not failures, "failures": failures, "bf16": before.as_dict(),
              "quantized": after.as_dict(),
              "pass_at_1_drop": round(before.pass_at_1 - after.pass_at_1, 6),
              "perplexity_ratio": round(after.perplexity / before.perplexity, 6),
              "thresholds": asdict(g), "eval_prompts": len(prompts),
              "seconds": round(time.monotonic() - t0, 2)}
    write_atomic(sd.path / "gate.json", json.dumps(record, indent=2) + "\n")
    return record, failures


def table(gate_record: dict[str, Any], quant: dict[str, Any]) -> str:
    """The before/after numbers as printed at the end of the stage."""
    b, q = gate_record["bf16"], gate_record["quantized"]
    return "\n".join([
        f"{'':<22}{'bf16':>12}{'AWQ W4A16':>12}{'change':>12}",
        f"{'held-out perplexity':<22}{b['perplexity']:>12.4f}{q['perplexity']:>12.4f}"
        f"{'x' + format(gate_record['perplexity_ratio'], '.4f'):>12}",
        f"{'math pass@1':<22}{b['pass_at_1']:>12.4f}{q['pass_at_1']:>12.4f}"
        f"{-gate_record['pass_at_1_drop']:>+12.4f}",
        f"{'weights on disk (MB)':<22}{quant['bf16_bytes'] / 1e6:>12.1f}"
        f"{quant['quantized_bytes'] / 1e6:>12.1f}{'x' + format(quant['size_ratio'], '.3f'):>12}",
    ])
