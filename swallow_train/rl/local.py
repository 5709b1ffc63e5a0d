"""The local RL backend: GRPO in plain PyTorch on the SFT stage's HF export (float32, CPU).

    swallow-train rl model=tiny_dense   # runs/tiny_dense/sft/hf -> runs/tiny_dense/rl/{hf,DONE}

Each rollout samples `n_samples_per_prompt` responses to `rollout_batch_size` prompts with
`generate`, scores them with the slime reward function, and takes `steps_per_rollout` AdamW
steps on the clipped per-token GRPO loss (plus the KL to the initial model when `loss.use_kl`).
Everything random is seeded by the rollout index, and a checkpoint (model, optimizer, rollout,
RNG states) is written atomically every `checkpoint.save_interval` rollouts, so a killed run
re-run with the same command ends in a bit-identical `hf/`. It writes `metrics.jsonl`,
`curves.png` (the reward curve), `checkpoints/`, `hf/` and, last, an empty `DONE`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from swallow_train.checkpoint_files import (
    CheckpointDir,
    CheckpointError,
    verify_checksums,
    write_atomic,
)
from swallow_train.config import RecipeError, to_yaml
from swallow_train.convert.hf_meta import check_rope_and_window, start_config_errors
from swallow_train.rl import reward as rm
from swallow_train.rl.config import check_batch_rule, local_backend_errors
from swallow_train.rl.grpo import aggregate, group_advantages, kl_to_reference, policy_loss
from swallow_train.rl.grpo import response_logprobs as logprobs
from swallow_train.rl.megatron_args import check_hf_config, model_args
from swallow_train.rl.prompts import ensure_prepared
from swallow_train.rl.rollout import (
    PromptSet,
    prepare_for_sampling,
    rollout_seed,
    sample_groups,
    score_groups,
)
from swallow_train.run import finished_stage
from swallow_train.signals import StopRequest

DONE = "DONE"
STATE = "state.pt"
PLOT_KEYS = ["reward", "eval_reward", "response_len", "loss", "clip_frac", "kl"]


def _say(msg: str) -> None:
    print(f"[swallow-train] rl: {msg}", flush=True)


def load_policy(path: str, recipe: Any) -> Any:
    """The HF checkpoint at `path` in float32, after checking it is `recipe.model`."""
    from transformers import AutoModelForCausalLM

    if not (Path(path) / "config.json").is_file():
        raise RecipeError(f"the RL stage starts from {path}, which is not an HF checkpoint "
                          "directory: run the SFT stage first (swallow-train sft ...) or set "
                          "init.hf to an HF directory")
    config = Path(path) / "config.json"
    hf = json.loads(config.read_text())
    check_rope_and_window(hf, config)  # transformers would run them, the export would drop them
    wrong = check_hf_config(model_args(recipe.model), config)
    wrong += start_config_errors(recipe.model, hf, config)
    if wrong:
        raise RecipeError(f"{path} is not model={recipe.model.name}: " + "; ".join(wrong))
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


class LocalGRPO:
    """One local RL run: its model, optimizer, prompts and checkpoints."""

    def __init__(self, recipe: Any, start: str) -> None:
        from swallow_train.tokenizer import load_tokenizer

        self.recipe = recipe
        self.tok = load_tokenizer(recipe.model.tokenizer)
        r = recipe.rollout
        self.prompts = PromptSet.load(recipe.data.train_path, self.tok,
                                      max_prompt_len=r.max_prompt_len)
        self.eval_prompts = PromptSet.load(
            recipe.data.eval_path, self.tok, max_prompt_len=r.max_prompt_len,
            limit=recipe.local.eval_prompts) if recipe.evaluation.interval else None
        self.model = load_policy(start, recipe)
        prepare_for_sampling(self.model, self.tok)
        self.ref = load_policy(start, recipe).eval() if recipe.loss.use_kl else None
        o = recipe.optim
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr,
                                           betas=(o.adam_beta1, o.adam_beta2), eps=o.adam_eps,
                                           weight_decay=o.weight_decay, fused=True)
        self.ckpts = CheckpointDir(recipe.run.stage_dir("rl") / "checkpoints",
                                   recipe.checkpoint.keep_last)

    # ---- checkpoints -------------------------------------------------------------------
    def save(self, step: int) -> None:
        tmp = self.ckpts.begin(step)
        torch.save({"step": step, "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "prompt_position": step * self.recipe.rollout.rollout_batch_size,
                    "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()},
                   tmp / STATE)
        self.ckpts.commit(step, tmp)

    def resume(self) -> int:
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

    # ---- one rollout -------------------------------------------------------------------
    def rollout(self, index: int) -> dict[str, float]:
        """Sample, score and train on rollout `index` (0-based); its metrics."""
        rc, loss_cfg = self.recipe.rollout, self.recipe.loss
        batch = self.prompts.batch(index, rc.rollout_batch_size, seed=rc.seed,
                                   shuffle=rc.shuffle)
        self.model.eval()
        groups = sample_groups(self.model, self.tok, batch, n=rc.n_samples_per_prompt, cfg=rc,
                               seed=rollout_seed(rc.seed, index))
        rewards = score_groups(groups)
        adv = group_advantages(rewards, std_normalization=loss_cfg.std_normalization)
        stats = self._update(groups, adv)
        masks = torch.stack([g.mask for g in groups])
        return {"reward": float(rewards.mean()),
                "truncated": float(sum(sum(g.truncated) for g in groups)) / rewards.numel(),
                "response_len": float(masks.sum(-1).mean()),
                "zero_std_groups": float((rewards.std(dim=1) == 0).float().mean()), **stats}

    def _minibatches(self, groups: int) -> list[dict[int, list[int]]]:
        """Each optimizer step's samples (global_batch_size of them, in group order), as
        {group: rows}: a group's rows share their prompt, so they run as one padding-free batch."""
        loss_cfg, n = self.recipe.loss, self.recipe.rollout.n_samples_per_prompt
        flat = [(g, j) for g in range(groups) for j in range(n)]
        size, out = loss_cfg.global_batch_size, []
        for k in range(loss_cfg.steps_per_rollout):
            rows: dict[int, list[int]] = {}
            for g, j in flat[k * size:(k + 1) * size]:
                rows.setdefault(g, []).append(j)
            out.append(rows)
        return out

    def _update(self, groups: list[Any], adv: torch.Tensor) -> dict[str, float]:
        """`steps_per_rollout` AdamW steps on the clipped GRPO loss. The old policy's
        log-probs are those of the first step's own forward (nothing was updated yet); later
        steps' are computed up front, as are the reference model's."""
        loss_cfg = self.recipe.loss
        batches = self._minibatches(len(groups))
        with torch.no_grad():
            old = {(k, g): logprobs(self.model, groups[g].prompt.ids, groups[g].responses[js])
                   for k, mb in enumerate(batches) if k > 0 for g, js in mb.items()}
            ref = {(k, g): logprobs(self.ref, groups[g].prompt.ids, groups[g].responses[js])
                   for k, mb in enumerate(batches) for g, js in mb.items()} \
                if self.ref is not None else None
        self.model.train()
        totals = {"loss": 0.0, "clip_frac": 0.0, "grad_norm": 0.0, "kl": 0.0}
        for k, mb in enumerate(batches):
            tokens = int(sum(groups[g].mask[js].sum() for g, js in mb.items()))
            samples = sum(len(js) for js in mb.values())
            for g, js in mb.items():
                mask = groups[g].mask[js]
                logp = logprobs(self.model, groups[g].prompt.ids, groups[g].responses[js])
                per_token, st = policy_loss(logp, logp.detach() if k == 0 else old[k, g],
                                            adv[g][js], mask, eps_clip=loss_cfg.eps_clip,
                                            eps_clip_high=loss_cfg.eps_clip_high)
                if ref is not None:
                    kl = kl_to_reference(logp, ref[k, g], loss_cfg.kl_type)
                    totals["kl"] += float((kl.detach() * mask).sum()) / max(tokens, 1)
                    per_token = per_token + loss_cfg.kl_coef * kl
                loss = aggregate(per_token, mask, per_token_loss=loss_cfg.per_token_loss,
                                 batch_tokens=tokens, batch_samples=samples)
                loss.backward()
                totals["loss"] += loss.item()
                totals["clip_frac"] += st["clip_frac"] * float(mask.sum()) / max(tokens, 1)
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                  self.recipe.optim.clip_grad)
            totals["grad_norm"] += float(norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        out = {k: v / len(batches) for k, v in totals.items()}
        if ref is None:
            out.pop("kl")
        return out

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


def run_local(recipe: Any) -> int:
    """Train (or resume) the local GRPO run of `recipe`; export HF and write DONE at the end."""
    from tqdm import tqdm

    from swallow_train.convert.hf_io import write_hf_checkpoint
    from swallow_train.convert.hf_meta import read_start_tokens
    from swallow_train.metrics.logger import MetricsLogger

    stage_dir = recipe.run.stage_dir("rl")
    if finished_stage(stage_dir, recipe):  # else RecipeError
        _say(f"{stage_dir / DONE} exists, finished with this recipe; skipping")
        return 0
    errors = check_batch_rule(recipe.rollout, recipe.loss)
    errors += local_backend_errors(recipe.loss, recipe.evaluation)
    if errors:
        raise RecipeError("RL recipe:\n" + "\n".join(f"  - {e}" for e in errors))
    start = recipe.init.resolve(recipe.run)
    if start is None:
        raise RecipeError("the local RL backend needs a model to start from: set "
                          "init.from_stage (sft) or init.hf")
    if recipe.local.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    ensure_prepared(recipe.data)
    run = LocalGRPO(recipe, start)
    step = run.resume()
    _say(f"{'resumed at rollout ' + str(step) if step else 'starting from ' + start}; "
         f"{len(run.prompts.prompts)} prompts ({run.prompts.dropped} too long)")
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(stage_dir / "config.yaml", to_yaml(recipe))
    rm.configure(recipe.reward).warm_up()
    logger = MetricsLogger(stage_dir, recipe.logging, stage="rl", run_name=recipe.run.name,
                           plot_keys=PLOT_KEYS, resume_step=step)
    stop = StopRequest().install()
    total, ev, ckpt = recipe.rollout.num_rollout, recipe.evaluation, recipe.checkpoint
    bar = tqdm(total=total, initial=step, desc="rl", unit="rollout",
               disable=not recipe.logging.progress_bar, dynamic_ncols=True)
    try:
        while step < total:
            metrics = run.rollout(step)
            step += 1
            if ev.interval and (step % ev.interval == 0 or step == total):
                metrics["eval_reward"] = run.evaluate(step)
            logger.log(step, metrics)
            bar.update(1)
            bar.set_postfix(reward=f"{metrics['reward']:.3f}")
            signum = stop.requested()
            halt = recipe.local.exit_after is not None and step >= recipe.local.exit_after
            if step % ckpt.save_interval == 0 or step == total or signum or halt:
                run.save(step)
            if signum:
                _say(f"signal {signum}: checkpointed rollout {step}; re-run to resume")
                return StopRequest.exit_code(signum)
            if halt and step < total:
                _say(f"local.exit_after={recipe.local.exit_after}: checkpointed rollout {step}; "
                     "re-run the same command to continue")
                return 0
    finally:
        bar.close()
        logger.close()
        stop.restore()
        rm.shutdown()
    out = write_hf_checkpoint(dict(run.model.state_dict()), recipe.model, stage_dir / "hf",
                              tokenizer=recipe.model.tokenizer, dtype=torch.bfloat16,
                              progress=False, start=read_start_tokens(start))
    _say(f"HF export: {out}")
    (stage_dir / DONE).write_bytes(b"")
    return 0
