"""`swallow-train quantize`: AWQ-INT4 (W4A16, group 128, symmetric) of the RL model with
llm-compressor, calibrated on the RL model's own validated answers to the RL train prompts, and
gated against the bf16 model (held-out perplexity, math pass@1). See swallow_train/quant/.

    swallow-train quantize model=tiny_dense                 # CPU: runs/tiny_dense/rl/hf
    swallow-train quantize --dry-run model=qwen3_30b_a3b    # cluster: vLLM generation, 1 GPU
    vllm serve runs/qwen3_8b/quantize/hf --reasoning-parser qwen3

Writes runs/<name>/quantize/{config.yaml, calibration.jsonl, heldout.jsonl,
calibration_stats.json, hf/, quantize.json, gate.json, summary.json, metrics.jsonl, DONE}; DONE
only when the gate passes (the quantized files stay either way).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from swallow_train.cluster import ClusterConfig
from swallow_train.metrics.config import LoggingConfig
from swallow_train.models.config import ModelConfig
from swallow_train.quant.config import (
    AWQConfig,
    CalibrationConfig,
    GateConfig,
    calibration_errors,
    group_size_errors,
)
from swallow_train.rl.prompts import RLDataConfig
from swallow_train.rl.reward import RewardConfig
from swallow_train.run import InitConfig, RunConfig

STAGE = "quantize"


@dataclass(kw_only=True)
class QuantizeRecipe:
    model: ModelConfig
    data: RLDataConfig
    """The RL stage's prompts: calibration samples answer the train split, the gate's pass@1
    the eval split (`swallow-train prepare-rl`; the tiny set is generated when missing)."""
    cluster: ClusterConfig
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    awq: AWQConfig = field(default_factory=AWQConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    """The verifier pool that judges answers (the RL reward's)."""
    run: RunConfig = field(default_factory=RunConfig)
    init: InitConfig = field(default_factory=lambda: InitConfig(from_stage="rl"))
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def recipe_errors(self) -> list[str]:
        return group_size_errors(self.awq, self.model) + calibration_errors(self.calibration)


def main(recipe: QuantizeRecipe) -> int:
    from swallow_train.checkpoint_files import write_atomic
    from swallow_train.metrics.logger import MetricsLogger
    from swallow_train.quant import run
    from swallow_train.quant.gate import gate_error
    from swallow_train.rl import reward as rm
    from swallow_train.rl.prompts import ensure_prepared
    from swallow_train.stage_dir import StageDir
    from swallow_train.tokenizer import load_tokenizer

    sd = StageDir.of(recipe.run, STAGE)
    if sd.finished(recipe, recipe.model):
        run.say(f"{sd.done_path} exists, finished with this recipe; skipping")
        return 0
    source = run.start_dir(recipe)
    with sd.lock():
        sd.write_config(recipe)
        ensure_prepared(recipe.data)
        tok = load_tokenizer(str(source))
        rm.configure(recipe.reward)
        logger = MetricsLogger(sd.path, recipe.logging, stage=STAGE, run_name=recipe.run.name,
                               plot_keys=["perplexity_ratio", "pass_at_1_drop"])
        try:
            calibration, heldout, cal_stats = run.calibrate(recipe, sd, source, tok)
            rejected = cal_stats["rejected"]
            run.say(f"calibration: {cal_stats['calibration']} samples + {cal_stats['heldout']} "
                    f"held out, from {cal_stats['generations']} generations; rejected: "
                    + ", ".join(f"{k} {v}" for k, v in rejected.items() if k != "kept"))
            quant = run.quantize(recipe, sd, source, tok, calibration)
            run.say(f"AWQ W4A16 -> {sd.hf} ({quant['seconds']:.0f} s, weights x"
                    f"{quant['size_ratio']:.3f} of bf16)")
            record, failures = run.gate(recipe, sd, source, tok, heldout)
        finally:
            rm.shutdown()
        logger.log(0, {"calibration_samples": cal_stats["calibration"],
                       "heldout_samples": cal_stats["heldout"],
                       "calibration_kept_fraction": rejected["kept"] / max(
                           1, cal_stats["generations"]),
                       "calibration_seconds": cal_stats.get("seconds", 0.0),
                       "quantize_seconds": quant["seconds"], "size_ratio": quant["size_ratio"],
                       "perplexity_bf16": record["bf16"]["perplexity"],
                       "perplexity_quantized": record["quantized"]["perplexity"],
                       "perplexity_ratio": record["perplexity_ratio"],
                       "pass_at_1_bf16": record["bf16"]["pass_at_1"],
                       "pass_at_1_quantized": record["quantized"]["pass_at_1"],
                       "pass_at_1_drop": record["pass_at_1_drop"]})
        logger.close()
        summary = {"source": str(source), "quantized": str(sd.hf), "calibration": cal_stats,
                   "quantize": quant, "gate": record}
        write_atomic(sd.path / "summary.json", json.dumps(summary, indent=2) + "\n")
        print(run.table(record, quant), flush=True)
        if failures:
            raise gate_error(failures, sd.hf)
        run.say(f"gate passed; serve with: vllm serve {sd.hf} --reasoning-parser qwen3")
        sd.mark_done(step=0)
    return 0
