"""The slime job as data: train.py's argv, the Ray runtime environment and the paths the job
reads and writes (`SlimeJob`, built by `SlimeConfig.render`). Only the formatters here turn it
into shell text: the stage's own `slime_job.sh` and the launch template (`rl.sh`) call them, and
nothing edits their output.

    swallow-train rl model=qwen3_8b cluster=abci3 cluster.nodes=2
        # -> runs/qwen3_8b/rl/{config.yaml, slime_job.sh}

`slime_job.sh`, run from the repository root on the Ray head node: the `ray job submit`
command; the conversion of slime's last torch_dist checkpoint to `runs/<name>/rl/hf` with this
project's converter (`swallow-train export`); then an empty `DONE`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from swallow_train.checkpoint_files import write_atomic
from swallow_train.run import DONE

PWD = "${PWD}"
MASTER_ADDR = "${MASTER_ADDR:-127.0.0.1}"
"""The two expansions a job may hold (in `JobPath.shell` and the runtime environment)."""
_EXPANSIONS = re.compile(r"(\$\{PWD\}|\$\{MASTER_ADDR:-127\.0\.0\.1\})")


@dataclass(frozen=True)
class JobPath:
    """A path of the job: absolute (or starting with a shell variable) as it is, else relative
    to the repository root, the directory the job scripts run from."""

    path: str

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> JobPath:
        return cls(str(path))

    @property
    def relative(self) -> bool:
        return not self.path.startswith(("/", "$"))

    @property
    def shell(self) -> str:
        """As Ray's workers need it (their working directory is not the repository):
        `${PWD}/<path>` for a relative path."""
        return f"{PWD}/{self.path}" if self.relative else self.path

    def __truediv__(self, name: str) -> JobPath:
        return JobPath(f"{self.path}/{name}")


Word = str | JobPath
"""One word of a command: literal text, or a path of the job."""


def text(word: Word) -> str:
    """The word as the Ray job receives it (before the shell expands `${PWD}`)."""
    return word.shell if isinstance(word, JobPath) else word


def shell_word(word: str) -> str:
    """`word` quoted for bash; only `${PWD}` and `${MASTER_ADDR:-127.0.0.1}` expand."""
    if "$" not in word:
        return shlex.quote(word)
    parts = _EXPANSIONS.split(word)
    out = []
    for i, part in enumerate(parts):
        out.append(part if i % 2 else re.sub(r'(["\\$`])', r"\\\1", part))
    return '"' + "".join(out) + '"'


def _lines(args: list[str]) -> list[str]:
    """One line per flag and its values."""
    lines: list[list[str]] = []
    for arg in args:
        if arg.startswith("--") or not lines:
            lines.append([arg])
        else:
            lines[-1].append(arg)
    return [" ".join(shell_word(w) for w in line) for line in lines]


@dataclass(frozen=True)
class SlimeJob:
    """A validated slime job of one run's RL stage: nothing of it is rendered yet."""

    run_name: str
    ray_address: str
    train_script: JobPath
    """slime's train.py (the launch template checks it exists before starting Ray)."""
    megatron_path: JobPath
    """The Megatron-LM checkout slime imports (on the runtime PYTHONPATH)."""
    args: tuple[Word, ...]
    """train.py's flags, in order (`swallow_train.rl.slime_flags.SLIME_FLAGS`)."""
    env: dict[str, str]
    """The Ray job's environment variables; values may hold `${PWD}` and `${MASTER_ADDR...}`."""
    stage_dir: JobPath
    save_dir: JobPath
    """slime's `--save` / `--load`: its torch_dist checkpoints."""
    tokenizer: Word
    """The tokenizer of the HF export: the start checkpoint's, else the model preset's."""

    def argv(self) -> list[str]:
        """train.py's flags as the Ray job receives them."""
        return [text(w) for w in self.args]

    def submit_command(self, submission_id: str | None = None) -> str:
        """`ray job submit ... -- python3 train.py ...` (multi-line, `\\`-joined), for a node
        where `ray start --head` has run; `submission_id`: the shell variable that names it."""
        ident = f' --submission-id "${submission_id}"' if submission_id else ""
        env = json.dumps({"env_vars": self.env})
        head = [f"ray job submit{ident} --address={shell_word(self.ray_address)}",
                f"--runtime-env-json={shell_word(env)}",
                f"-- python3 {shell_word(self.train_script.shell)}"]
        return " \\\n  ".join(head + _lines(self.argv())) + "\n"

    def export_command(self) -> str:
        """slime's latest torch_dist checkpoint -> `<stage>/hf` (this project's converter; the
        model comes from the stage's resolved config.yaml), then the empty `DONE` marker."""
        words: list[Word] = [
            "python", "-m", "swallow_train", "export", "--checkpoint", self.save_dir,
            "--config", self.stage_dir / "config.yaml", "--out", self.stage_dir / "hf",
            "--tokenizer", self.tokenizer, "--dtype", "bf16"]
        export = " ".join(shell_word(text(w)) for w in words)
        return f"{export} \\\n  && : > {shell_word((self.stage_dir / DONE).shell)}\n"

    def script(self) -> str:
        """`slime_job.sh`: the submit, then the export (no Ray start: the launch does that)."""
        return (
            "#!/bin/bash\n"
            f"# RL stage of run {self.run_name} with slime, from the repository root on the Ray "
            "head node\n"
            "# (after `ray start` on every node; `swallow-train launch stage=rl ...` writes the\n"
            "# whole scheduler job). Rendered by `swallow-train rl`: re-render rather than edit.\n"
            "set -euo pipefail\n"
            f"{self.submit_command()}"
            f"{self.export_command()}"
        )


def write_slime_job(job: SlimeJob, stage_dir: Path, config_yaml: str) -> int:
    """Write the stage's resolved config.yaml and `slime_job.sh` into `stage_dir`; print it."""
    script = job.script()
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(stage_dir / "config.yaml", config_yaml)
    path = stage_dir / "slime_job.sh"
    write_atomic(path, script)
    os.chmod(path, 0o755)
    print(script, end="")
    print(f"# written to {path} (run it from the repository root on the Ray head node)")
    return 0
