"""The slime backend's end of `swallow-train rl`: validate the recipe, then print and write the
commands of the stage (the launch scripts run the same ones after starting Ray on every node).

    swallow-train rl model=qwen3_8b cluster=abci3 cluster.nodes=2
        # -> runs/qwen3_8b/rl/{config.yaml, slime_job.sh}

`slime_job.sh`, run from the repository root on the Ray head node: the `ray job submit`
command; the conversion of slime's last torch_dist checkpoint to `runs/<name>/rl/hf` with this
project's converter (`swallow-train export`); then an empty `DONE`.
"""

from __future__ import annotations

import os
from typing import Any

from swallow_train.checkpoint_files import write_atomic
from swallow_train.config import to_yaml
from swallow_train.rl.slime import hf_checkpoint, render_ray_job, save_dir, shell_word

DONE = "DONE"


def _path(recipe: Any, name: str) -> str:
    return f"${{PWD}}/{recipe.run.stage_dir('rl') / name}" if not os.path.isabs(
        recipe.run.root) else str(recipe.run.stage_dir("rl") / name)


def render_export(recipe: Any) -> str:
    """slime's latest torch_dist checkpoint -> `runs/<name>/rl/hf` (this project's converter;
    the model comes from the stage's resolved config.yaml, the tokenizer from the start
    checkpoint), then the empty `DONE` marker."""
    words = ["python", "-m", "swallow_train", "export", "--checkpoint", save_dir(recipe),
             "--config", _path(recipe, "config.yaml"), "--out", _path(recipe, "hf"),
             "--tokenizer", hf_checkpoint(recipe) or recipe.model.tokenizer, "--dtype", "bf16"]
    export = " ".join(shell_word(w) for w in words)
    return f"{export} \\\n  && : > {shell_word(_path(recipe, DONE))}\n"


def job_script(recipe: Any) -> str:
    name = recipe.run.name
    return (
        "#!/bin/bash\n"
        f"# RL stage of run {name} with slime, from the repository root on the Ray head node\n"
        "# (after `ray start` on every node; `swallow-train launch stage=rl ...` writes the\n"
        "# whole scheduler job). Rendered by `swallow-train rl`: re-render rather than edit.\n"
        "set -euo pipefail\n"
        f"{render_ray_job(recipe)}"
        f"{render_export(recipe)}"
    )


def write_slime_job(recipe: Any) -> int:
    """Validate (SlimeError lists every broken rule), print and write the stage's commands."""
    script = job_script(recipe)
    stage_dir = recipe.run.stage_dir("rl")
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(stage_dir / "config.yaml", to_yaml(recipe))
    path = stage_dir / "slime_job.sh"
    write_atomic(path, script)
    os.chmod(path, 0o755)
    print(script, end="")
    print(f"# written to {path} (run it from the repository root on the Ray head node)")
    return 0
