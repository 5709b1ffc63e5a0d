"""The local GRPO backend end to end: reward rises on a task the tiny model can learn, the stage
ends in a loadable HF export and DONE, and a resumed run (after exit or SIGKILL) is
bit-identical to an uninterrupted one.

The tiny model cannot learn arithmetic in a minute of CPU; what these tests need is a policy
that already writes the answer format (as the SFT stage teaches it) and a reward it can raise.
The policy is a seeded random-init tiny_dense taught `<think></think> \\boxed{d}` with random
digits d by 50 supervised steps; the learnable task is the tiny problems whose answer is 7,
so the starting reward is about the chance of writing 7 (~10%) and GRPO must raise it.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from swallow_train.config import compose
from swallow_train.data.tiny_math import tiny_problems
from swallow_train.metrics.plot import read_jsonl
from swallow_train.stages.rl import main
from tests.rl.policies import make_policy

COMMON = ["model=tiny_dense", "logging.wandb_mode=disabled", "logging.progress_bar=false",
          "optim.lr=3e-4", "rollout.max_response_len=12", "rollout.enable_thinking=true"]
"""The policies of tests/rl/policies.py write their think block: sampled with thinking on."""


@pytest.fixture(scope="module")
def format_policy(tmp_path_factory) -> Path:
    return make_policy(tmp_path_factory.mktemp("policy") / "hf", sft_steps=50, seed=0,
                       random_answers=True)


def _start(root: Path, name: str, policy: Path) -> None:
    shutil.copytree(policy, root / name / "sft" / "hf")


def _sevens(prepared: Path) -> None:
    """A prepared prompt set of the tiny problems whose answer is 7 (26 EN/JA prompts)."""
    out = prepared / "rl" / "tiny_math"
    out.mkdir(parents=True)
    rows = [r for r in tiny_problems(seed=0) if r["label"] == "7"]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    (out / "train.jsonl").write_text(text)
    (out / "eval.jsonl").write_text(text)
    (out / "stats.json").write_text(json.dumps({"train": len(rows)}))


def test_reward_rises_and_the_export_loads(tmp_path: Path, format_policy: Path) -> None:
    from transformers import AutoModelForCausalLM

    from swallow_train.convert.hf_io import read_hf_state_dict

    _sevens(tmp_path / "prepared")
    _start(tmp_path / "runs", "learn", format_policy)
    recipe = compose("rl", [*COMMON, f"run.root={tmp_path}/runs", "run.name=learn",
                            f"data.prepared_dir={tmp_path}/prepared", "rollout.num_rollout=20",
                            "rollout.rollout_batch_size=4", "loss.global_batch_size=16",
                            "evaluation.interval=0", "checkpoint.save_interval=10"])
    assert main(recipe) == 0
    stage = tmp_path / "runs/learn/rl"
    rewards = [row["reward"] for row in read_jsonl(stage / "metrics.jsonl")]
    assert len(rewards) == 20
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last >= first + 0.1, rewards
    assert (stage / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((stage / "DONE").read_text()) == {"stage": "rl", "step": 20}
    model = AutoModelForCausalLM.from_pretrained(stage / "hf")
    assert model.config.architectures == ["Qwen3ForCausalLM"]
    trained = torch.load(stage / "checkpoints/iter_0000020/state.pt", weights_only=False)["model"]
    exported = read_hf_state_dict(stage / "hf")
    assert set(exported) == set(trained)
    assert all(torch.equal(exported[k], trained[k].to(torch.bfloat16)) for k in exported)
    # a finished stage is not run again
    assert main(recipe) == 0 and len(read_jsonl(stage / "metrics.jsonl")) == 20


def _rl(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "swallow_train", "rl", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> int:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode in (0, -signal.SIGKILL), out
    return proc.returncode


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def test_resume_is_bit_identical(tmp_path: Path, format_policy: Path) -> None:
    import psutil

    root = tmp_path / "runs"
    args = [*COMMON, f"run.root={root}", f"data.prepared_dir={tmp_path}/prepared",
            "rollout.num_rollout=4", "rollout.rollout_batch_size=2",
            "rollout.n_samples_per_prompt=4", "loss.global_batch_size=4",
            "loss.steps_per_rollout=2", "loss.use_kl=true", "loss.kl_coef=0.05",
            "checkpoint.save_interval=1", "evaluation.interval=2", "local.eval_prompts=4"]
    for name in ("straight", "exited", "killed"):
        _start(root, name, format_policy)
    assert _finish(_rl([*args, "run.name=straight"])) == 0
    # stopped after 2 rollouts (checkpointed), then the same command without the stop
    assert _finish(_rl([*args, "run.name=exited", "local.exit_after=2"])) == 0
    exited = root / "exited/rl"
    assert not (exited / "hf").exists() and not (exited / "DONE").exists()
    assert (exited / "checkpoints/latest_checkpointed_iteration.txt").read_text() == "2\n"
    assert _finish(_rl([*args, "run.name=exited"])) == 0
    # SIGKILLed once its second rollout is checkpointed (mid-run), then run again
    proc = _rl([*args, "run.name=killed"])
    marker = root / "killed/rl/checkpoints/latest_checkpointed_iteration.txt"
    deadline = time.monotonic() + 300
    while not (marker.exists() and int(marker.read_text()) >= 2) and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never reached rollout 2"
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    assert _finish(proc) == -signal.SIGKILL  # killed mid-run, not finished
    assert not (root / "killed/rl/DONE").exists()
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"verifier workers outlived their killed parent: {alive}"
    assert _finish(_rl([*args, "run.name=killed"])) == 0
    straight = _files(root / "straight/rl/hf")
    assert "model-00001-of-00001.safetensors" in straight
    assert _files(exited / "hf") == straight
    assert _files(root / "killed/rl/hf") == straight
    rows = read_jsonl(root / "straight/rl/metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and "eval_reward" in rows[1]
    assert read_jsonl(exited / "metrics.jsonl") == rows
    assert read_jsonl(root / "killed/rl/metrics.jsonl") == rows
