"""The one stage lifecycle shared by every stage that trains (CPT, SFT, local RL) and the stages
to come, on the `StageDir` contract (swallow_train/stage_dir.py). A stage supplies only its
state and its step, as a `StageLoop` (loop.py); `StageRunner` (runner.py) owns the rest:

    1. skip when `DONE` records a finished run of this recipe (another recipe: RecipeError)
    2. loop.preflight()        cheap checks, process groups (collective; before the lock)
    3. the directory lock; the skip check again (finished while this job waited)
    4. loop.setup() -> the resumed step; `config.yaml` (the resolved recipe)
    5. the steps: loop.step(i) -> metrics -> hooks (hooks.py: metrics.jsonl, W&B with the
       resolved recipe as its config, curves.png; the progress bar); stop signals;
       loop.poll(); checkpoints at the interval, on a signal, at `exit_after`, at the end
    6. loop.close(); the HF export (loop.export); `DONE` {"stage", "step"}, atomically, last

    from swallow_train.lifecycle import LoopOptions, StageRunner
    runner = StageRunner(recipe=recipe, stage="cpt", options=LoopOptions(save_interval=20))
    return runner.run(MegatronLoop(recipe, "cpt", data))   # 0, or 128 + signal

Tests: `.venv/bin/python -m pytest tests/test_lifecycle.py -q` (a fake in-memory loop).
"""

from swallow_train.lifecycle.hooks import Callback, MetricsCallback, ProgressCallback
from swallow_train.lifecycle.loop import (
    LoopOptions,
    Metrics,
    Outcome,
    StageLoop,
    StageRecipe,
    say,
)
from swallow_train.lifecycle.runner import StageRunner

__all__ = ["Callback", "LoopOptions", "Metrics", "MetricsCallback", "Outcome",
           "ProgressCallback", "StageLoop", "StageRecipe", "StageRunner", "say"]
