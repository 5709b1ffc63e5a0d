"""The local RL backend: GRPO in plain PyTorch on the SFT stage's HF export (float32, CPU), as the
`StageLoop` the stage runner drives (swallow_train/lifecycle).

    swallow-train rl model=tiny_dense   # runs/tiny_dense/sft/hf -> runs/tiny_dense/rl/{hf,DONE}

Each rollout samples `n_samples_per_prompt` responses to `rollout_batch_size` prompts with
`generate`, scores them with the slime reward function, and takes `steps_per_rollout` AdamW
steps on the clipped per-token GRPO loss (rl/local_update.py). Everything random is seeded by
the rollout index, and a checkpoint (model, optimizer, rollout, RNG states) is written
atomically every `checkpoint.save_interval` rollouts, so a killed run re-run with the same
command ends in a bit-identical `hf/`. The runner writes `metrics.jsonl`, `curves.png` (the
reward curve), stops at `local.exit_after` or a signal, and writes `hf/` and, last, `DONE`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Protocol

import torch

from swallow_train.checkpoint_files import CheckpointDir, CheckpointError, verify_checksums
from swallow_train.config import RecipeError
from swallow_train.convert.hf_meta import check_rope_and_window
from swallow_train.lifecycle import LoopOptions, Metrics, StageRecipe, StageRunner, say
from swallow_train.models.config import ModelConfig
from swallow_train.rl import reward as rm
from swallow_train.rl.config import (
    PolicyLossConfig,
    RLCheckpointConfig,
    RLEvalConfig,
    RLOptimConfig,
    RolloutConfig,
    check_batch_rule,
    local_backend_errors,
)
from swallow_train.rl.grpo import LocalConfig, group_advantages
from swallow_train.rl.local_update import grpo_update
from swallow_train.rl.megatron_args import check_hf_config
from swallow_train.rl.prompts import RLDataConfig, ensure_prepared
from swallow_train.rl.reward import RewardConfig
from swallow_train.rl.rollout import (
    PromptSet,
    prepare_for_sampling,
    rollout_seed,
    sample_groups,
    score_groups,
)
from swallow_train.run import InitConfig

STATE = "state.pt"
PLOT_KEYS = ("reward", "eval_reward", "response_len", "loss", "clip_frac", "kl")


class LocalRLRecipe(StageRecipe, Protocol):
    """The sections of the RL recipe the local backend reads (stages.rl.RLRecipe has them)."""

    init: InitConfig
    data: RLDataConfig
    rollout: RolloutConfig
    loss: PolicyLossConfig
    optim: RLOptimConfig
    checkpoint: RLCheckpointConfig
    evaluation: RLEvalConfig
    reward: RewardConfig
    local: LocalConfig


def load_policy(path: str, model: ModelConfig) -> Any:
    """The HF checkpoint at `path` in float32, after checking it is `model`."""
    from transformers import AutoModelForCausalLM

    if not (Path(path) / "config.json").is_file():
        raise RecipeError(f"the RL stage starts from {path}, which is not an HF checkpoint "
                          "directory: run the SFT stage first (swallow-train sft ...) or set "
                          "init.hf to an HF directory")
    config = Path(path) / "config.json"
    hf = json.loads(config.read_text())
    check_rope_and_window(hf, config)  # transformers would run them, the export would drop them
    wrong = check_hf_config(model, config)  # ModelConfig.check_compatible
    if wrong:
        raise RecipeError(f"{path} is not model={model.name}: " + "; ".join(wrong))
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def run_local(recipe: LocalRLRecipe) -> int:
    """Train (or resume, or skip) the local GRPO run of `recipe`; export HF and write DONE at
    the end. 0 when finished or stopped by `local.exit_after`, 128 + signal on a signal."""
    options = LoopOptions(save_interval=recipe.checkpoint.save_interval,
                          exit_after=recipe.local.exit_after)
    return StageRunner(recipe=recipe, stage="rl", options=options).run(LocalGRPO(recipe))


class LocalGRPO:
    """One local RL run's state (model, reference, optimizer, prompts, checkpoints) and its
    step, one rollout (a `lifecycle.StageLoop`)."""

    unit = "rollout"
    plot_keys = PLOT_KEYS

    def __init__(self, recipe: LocalRLRecipe) -> None:
        self.recipe = recipe
        self.ckpts = CheckpointDir(recipe.run.stage_dir("rl") / "checkpoints",
                                   recipe.checkpoint.keep_last)
        self.start = ""

    def preflight(self) -> None:
        recipe = self.recipe
        errors = check_batch_rule(recipe.rollout, recipe.loss)
        errors += local_backend_errors(recipe.loss, recipe.evaluation)
        if errors:
            raise RecipeError("RL recipe:\n" + "\n".join(f"  - {e}" for e in errors))
        start = recipe.init.resolve(recipe.run)
        if start is None:
            raise RecipeError("the local RL backend needs a model to start from: set "
                              "init.from_stage (sft) or init.hf")
        self.start = start
        if recipe.local.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        ensure_prepared(recipe.data)

    def setup(self) -> int:
        """Prompts (refused rows named before any model loads), policy, reference, AdamW;
        resumed from the latest checkpoint; the verifier pool warmed up."""
        from swallow_train.tokenizer import load_tokenizer

        recipe, r = self.recipe, self.recipe.rollout
        self.tok = load_tokenizer(recipe.model.tokenizer)
        self.prompts = PromptSet.load(recipe.data.train_path, self.tok,
                                      max_prompt_len=r.max_prompt_len,
                                      enable_thinking=r.enable_thinking)
        self.eval_prompts = PromptSet.load(
            recipe.data.eval_path, self.tok, max_prompt_len=r.max_prompt_len,
            enable_thinking=r.enable_thinking,
            limit=recipe.local.eval_prompts) if recipe.evaluation.interval else None
        self.model = load_policy(self.start, recipe.model)
        prepare_for_sampling(self.model, self.tok)
        self.ref = load_policy(self.start, recipe.model).eval() if recipe.loss.use_kl else None
        o = recipe.optim
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr,
                                           betas=(o.adam_beta1, o.adam_beta2), eps=o.adam_eps,
                                           weight_decay=o.weight_decay, fused=True)
        step = self._resume()
        say(f"rl: {'resumed at rollout ' + str(step) if step else 'starting from ' + self.start}"
            f"; {len(self.prompts.prompts)} prompts ({self.prompts.dropped} too long)")
        rm.configure(recipe.reward).warm_up()
        return step

    def _resume(self) -> int:
        step = self.ckpts.latest_step()
        if step is None:
            return 0
        path = self.ckpts.path(step)
        try:
            verify_checksums(path)
        except CheckpointError as exc:
            raise CheckpointError(f"{exc}; {self.ckpts.repair_advice(step)}") from None
        state = torch.load(path / STATE, weights_only=False)
        position = step * self.recipe.rollout.rollout_batch_size
        if state["prompt_position"] != position:
            raise RecipeError(f"{path} was written with another rollout.rollout_batch_size "
                              f"(prompt {state['prompt_position']}, expected {position}); "
                              "resume with the recipe it was written with")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        return step

    def total_steps(self) -> int:
        return self.recipe.rollout.num_rollout

    def step(self, index: int) -> dict[str, float]:
        """Sample, score and train on rollout `index` (0-based); evaluate when due."""
        rc, loss_cfg = self.recipe.rollout, self.recipe.loss
        batch = self.prompts.batch(index, rc.rollout_batch_size, seed=rc.seed,
                                   shuffle=rc.shuffle)
        self.model.eval()
        groups = sample_groups(self.model, self.tok, batch, n=rc.n_samples_per_prompt, cfg=rc,
                               seed=rollout_seed(rc.seed, index))
        rewards = score_groups(groups)
        adv = group_advantages(rewards, std_normalization=loss_cfg.std_normalization)
        stats = grpo_update(self.model, self.ref, self.optimizer, groups, adv, loss_cfg,
                            clip_grad=self.recipe.optim.clip_grad)
        masks = torch.stack([g.mask for g in groups])
        metrics = {"reward": float(rewards.mean()),
                   "truncated": float(sum(sum(g.truncated) for g in groups)) / rewards.numel(),
                   "response_len": float(masks.sum(-1).mean()),
                   "zero_std_groups": float((rewards.std(dim=1) == 0).float().mean()), **stats}
        done, interval = index + 1, self.recipe.evaluation.interval
        if interval and (done % interval == 0 or done == self.total_steps()):
            metrics["eval_reward"] = self.evaluate(done)
        return metrics

    def evaluate(self, step: int) -> float:
        """Mean reward of one sample per held-out prompt (seeded apart from training)."""
        assert self.eval_prompts is not None
        ev, rc = self.recipe.evaluation, self.recipe.rollout
        self.model.eval()
        groups = sample_groups(self.model, self.tok, self.eval_prompts.prompts,
                               n=ev.n_samples_per_prompt, cfg=rc,
                               seed=rollout_seed(rc.seed + 1, step),
                               max_new_tokens=ev.max_response_len, temperature=ev.temperature)
        return float(score_groups(groups).mean())

    def save(self, step: int, *, final: bool, blocking: bool) -> None:
        """Model, optimizer, prompt position and RNG states; complete on return (atomic)."""
        tmp = self.ckpts.begin(step)
        torch.save({"step": step, "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "prompt_position": step * self.recipe.rollout.rollout_batch_size,
                    "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()},
                   tmp / STATE)
        self.ckpts.commit(step, tmp)

    def poll(self) -> None:
        pass  # saves are synchronous

    def export(self, hf_dir: Path) -> Path | None:
        from swallow_train.convert.hf_io import write_hf_checkpoint
        from swallow_train.convert.hf_meta import read_start_tokens

        return write_hf_checkpoint(dict(self.model.state_dict()), self.recipe.model, hf_dir,
                                   tokenizer=self.recipe.model.tokenizer, dtype=torch.bfloat16,
                                   progress=False, start=read_start_tokens(self.start))

    def postfix(self, metrics: Metrics) -> dict[str, str]:
        return {"reward": f"{metrics['reward']:.3f}"}

    def close(self) -> None:
        rm.shutdown()
