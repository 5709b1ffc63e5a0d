"""The stage runner (swallow_train/lifecycle) on a fake in-memory loop: skip-if-done, resume,
checkpoints at the interval / at the end / on a signal / at exit_after, DONE last and atomic,
config.yaml and W&B's config equal to the resolved recipe, no DONE after an error.

    .venv/bin/python -m pytest tests/test_lifecycle.py -q
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from swallow_train.config import compose, to_yaml
from swallow_train.lifecycle import Callback, LoopOptions, Outcome, StageLoop, StageRunner
from swallow_train.metrics.config import WandbMode
from swallow_train.metrics.plot import read_jsonl
from swallow_train.run import RunConfig

TOTAL = 5


@dataclass
class Disk:
    """What survives a process: the checkpoints (step -> state) and what each run did."""

    checkpoints: dict[int, float] = field(default_factory=dict)
    saves: list[tuple[int, bool, bool]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


class FakeLoop:
    """A loop whose state is one float; each step mixes the step number into it."""

    unit = "step"
    plot_keys = ("loss",)

    def __init__(self, disk: Disk, done_path: Path, *, signal_at: int | None = None,
                 fail_at: int | None = None) -> None:
        self.disk, self.done_path = disk, done_path
        self.signal_at, self.fail_at = signal_at, fail_at
        self.value, self.done = 1.0, 0

    def preflight(self) -> None:
        self.disk.events.append("preflight")

    def setup(self) -> int:
        self.done = max(self.disk.checkpoints, default=0)
        self.value = self.disk.checkpoints.get(self.done, 1.0)
        self.disk.events.append(f"setup {self.done}")
        return self.done

    def total_steps(self) -> int:
        return TOTAL

    def step(self, index: int) -> dict[str, float]:
        assert index == self.done
        if index + 1 == self.fail_at:
            raise RuntimeError("boom")
        self.value = self.value * 0.5 + index
        self.done += 1
        self.disk.events.append(f"step {self.done}")
        if self.done == self.signal_at:
            os.kill(os.getpid(), signal.SIGUSR1)  # as the scheduler would, mid-step
        return {"loss": self.value}

    def save(self, step: int, *, final: bool, blocking: bool) -> None:
        assert step == self.done
        self.disk.checkpoints[step] = self.value
        self.disk.saves.append((step, final, blocking))

    def poll(self) -> None:
        pass

    def export(self, hf_dir: Path) -> Path:
        assert not self.done_path.exists(), "DONE before the export"
        hf_dir.mkdir(parents=True)
        (hf_dir / "weights.txt").write_text(repr(self.value))
        self.disk.events.append("export")
        return hf_dir

    def postfix(self, metrics: Any) -> dict[str, str]:
        return {"loss": f"{metrics['loss']:.3f}"}

    def close(self) -> None:
        self.disk.events.append("close")


@pytest.fixture(scope="module")
def base_recipe() -> Any:
    return compose("cpt", ["model=tiny_dense", "logging.wandb_mode=disabled",
                           "logging.progress_bar=false"])


@pytest.fixture
def recipe(base_recipe: Any, tmp_path: Path) -> Any:
    return replace(base_recipe, run=RunConfig(name="r", root=str(tmp_path)))


def _run(recipe: Any, disk: Disk, *, save_interval: int = 2, exit_after: int | None = None,
         callbacks: tuple[Callback, ...] = (), **loop: Any) -> tuple[int, Path]:
    runner = StageRunner(recipe=recipe, stage="cpt", callbacks=callbacks, options=LoopOptions(
        save_interval=save_interval, exit_after=exit_after))
    fake: StageLoop = FakeLoop(disk, runner.stage_dir.done_path, **loop)
    return runner.run(fake), runner.stage_dir.path


def _losses(stage: Path) -> list[tuple[int, float]]:
    return [(row["step"], row["loss"]) for row in read_jsonl(stage / "metrics.jsonl")]


def test_a_run_checkpoints_at_the_interval_and_the_end_then_exports_then_done(recipe) -> None:
    disk = Disk()
    assert _run(recipe, disk)[0] == 0
    stage = Path(recipe.run.root) / "r/cpt"
    assert disk.saves == [(2, False, False), (4, False, False), (5, True, False)]
    assert disk.events == ["preflight", "setup 0", *[f"step {i}" for i in range(1, 6)],
                           "close", "export"]
    assert json.loads((stage / "DONE").read_text()) == {"stage": "cpt", "step": TOTAL}
    assert (stage / "hf/weights.txt").read_text() == repr(disk.checkpoints[5])
    assert [s for s, _ in _losses(stage)] == [1, 2, 3, 4, 5]
    assert (stage / "config.yaml").read_text() == to_yaml(recipe)
    leftovers = [p.name for p in stage.iterdir() if p.name not in (
        "DONE", "config.yaml", "hf", "metrics.jsonl", "curves.png", ".lock")]
    assert leftovers == []  # written atomically: no temporary file left behind


def test_a_finished_stage_is_skipped_untouched(recipe, capsys) -> None:
    assert _run(recipe, Disk())[0] == 0
    stage = Path(recipe.run.root) / "r/cpt"
    before = {p: p.read_bytes() for p in stage.rglob("*") if p.is_file()}
    again = Disk()
    assert _run(recipe, again)[0] == 0
    assert again.events == [] and again.saves == []  # not even the preflight
    assert "finished with this recipe; skipping" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in stage.rglob("*") if p.is_file()} == before


def test_exit_after_checkpoints_and_stops_without_done_then_resume_matches(recipe,
                                                                          tmp_path) -> None:
    straight = Disk()
    _run(replace(recipe, run=RunConfig(name="straight", root=str(tmp_path))), straight)
    disk = Disk()
    code, stage = _run(recipe, disk, save_interval=0, exit_after=3)
    assert code == 0
    assert disk.saves == [(3, False, True)]  # only the planned stop, waited for
    assert not (stage / "DONE").exists() and not (stage / "hf").exists()
    assert [s for s, _ in _losses(stage)] == [1, 2, 3]
    disk.events.clear()
    assert _run(recipe, disk, save_interval=0)[0] == 0
    assert disk.events == ["preflight", "setup 3", "step 4", "step 5", "close", "export"]
    assert disk.saves[1:] == [(5, True, False)]
    assert _losses(stage) == _losses(tmp_path / "straight/cpt")  # one uninterrupted log
    assert json.loads((stage / "DONE").read_text())["step"] == TOTAL


def test_a_signal_checkpoints_and_exits_with_its_code(recipe, capsys) -> None:
    disk = Disk()
    code, stage = _run(recipe, disk, signal_at=3)
    assert code == 128 + signal.SIGUSR1
    assert disk.saves == [(2, False, False), (3, False, True)]
    assert disk.events[-2:] == ["step 3", "close"]  # no step after the signal, no export
    assert not (stage / "DONE").exists() and not (stage / "hf").exists()
    assert "signal 10: checkpointed step 3; run the same command again" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the handler is restored
    assert _run(recipe, disk)[0] == 0  # resumes at 3 and finishes
    assert disk.events[-4:] == ["step 4", "step 5", "close", "export"]


def test_an_error_in_a_step_leaves_no_done_and_closes(recipe) -> None:
    disk = Disk()
    with pytest.raises(RuntimeError, match="boom"):
        _run(recipe, disk, fail_at=4)
    stage = Path(recipe.run.root) / "r/cpt"
    assert disk.events[-1] == "close" and "export" not in disk.events
    assert not (stage / "DONE").exists()
    assert [s for s, _ in _losses(stage)] == [1, 2, 3]
    assert disk.saves == [(2, False, False)]


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, Any]] = []

    def on_start(self, step: int, total: int) -> None:
        self.calls.append(("start", step, total))

    def on_checkpoint(self, step: int, *, final: bool) -> None:
        self.calls.append(("checkpoint", step, final))

    def on_end(self, step: int, outcome: Outcome | None) -> None:
        self.calls.append(("end", step, outcome))


def test_hooks_see_start_checkpoints_and_end(recipe) -> None:
    hook = Recorder()
    _run(recipe, Disk(), callbacks=(hook,), save_interval=3)
    assert hook.calls == [("start", 0, TOTAL), ("checkpoint", 3, False), ("checkpoint", 5, True),
                          ("end", 5, Outcome.finished)]


def _without_empty(node: Any) -> Any:
    """`node` without empty mappings (W&B's config drops them: cluster.env = {})."""
    if isinstance(node, dict):
        return {k: _without_empty(v) for k, v in node.items() if v != {}}
    return node


def test_wandb_and_config_yaml_get_the_resolved_recipe(recipe, monkeypatch) -> None:
    from swallow_train.metrics.logger import MetricsLogger

    given: list[Any] = []
    held: list[dict[str, Any]] = []
    init = MetricsLogger._init_wandb

    def spy(self: MetricsLogger, run_name: str, config: Any) -> Any:
        run = init(self, run_name, config)
        given.append(config)
        held.append(run.config.as_dict())  # what W&B itself holds
        return run

    monkeypatch.setattr(MetricsLogger, "_init_wandb", spy)
    monkeypatch.setenv("WANDB_MODE", "offline")
    recipe = replace(recipe, logging=replace(recipe.logging, wandb_mode=WandbMode.offline))
    code, stage = _run(recipe, Disk())
    assert code == 0
    resolved = yaml.safe_load(to_yaml(recipe))
    assert yaml.safe_load((stage / "config.yaml").read_text()) == resolved
    assert given == [resolved]
    assert held == [_without_empty(resolved)]
    assert held[0]["model"]["name"] == "tiny_dense"
    assert held[0]["run"] == {"name": "r", "root": str(stage.parent.parent)}
    assert list((stage / "wandb").glob("offline-run-*"))  # offline, into the stage directory


def test_done_step_reads_the_runner_record_and_the_empty_shell_marker(tmp_path) -> None:
    from swallow_train.stage_dir import StageDir

    sd = StageDir.of(RunConfig(name="r", root=str(tmp_path)), "rl")
    assert sd.done_step() is None and not sd.is_done()
    sd.mark_done(step=7)
    assert sd.done_step() == 7 and json.loads(sd.done_path.read_text())["stage"] == "rl"
    sd.done_path.write_text("")  # what the slime job script writes (`: > DONE`)
    assert sd.is_done() and sd.done_step() is None
