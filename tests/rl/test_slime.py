"""slime rendering: golden commands for the three Swallow sizes, a bash round trip of the
command to the exact argument list, the start checkpoint's config.json against the model
(`ModelConfig.check_compatible`, as slime checks at start), and slime's rules.

    SWALLOW_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/rl/test_slime.py   # re-render
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
from pathlib import Path

import pytest

from swallow_train.config import compose
from swallow_train.rl.slime import SlimeError

GOLDEN = Path(__file__).parent / "golden"
SIZES = {  # the launch presets' RL jobs: 16, 32 and 32 H200s on ABCI 3.0
    "qwen3_8b": ["cluster.nodes=2"],
    "qwen3_30b_a3b": ["cluster.nodes=4"],
    "qwen3_32b": ["cluster.nodes=4"],
}


def recipe(model: str = "qwen3_8b", *extra: str):
    nodes = SIZES.get(model, ["cluster.nodes=2"])
    return compose("rl", [f"model={model}", "cluster=abci3", *nodes, f"run.name={model}",
                          *extra])


def render_ray_job(r) -> str:
    return r.slime_job().submit_command()


def slime_train_args(r) -> list[str]:
    return r.slime_job().argv()


@pytest.mark.parametrize("model", sorted(SIZES))
def test_golden_ray_job(model: str) -> None:
    text = render_ray_job(recipe(model))
    path = GOLDEN / f"rl_{model}.sh"
    if os.environ.get("SWALLOW_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs: SWALLOW_UPDATE_GOLDEN=1 re-renders it"


def _bash_argv(command: str, cwd: Path) -> list[str]:
    """The argv `ray` receives when bash runs `command` in `cwd` (ray is a shell function)."""
    script = 'ray() { printf "%s\\0" "$@"; }\n' + command
    out = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, check=True,
                         env={"PATH": os.environ["PATH"]}).stdout
    return out.decode().split("\0")[:-1]


def test_command_round_trips_through_bash(tmp_path: Path) -> None:
    r = recipe("qwen3_30b_a3b")
    argv = _bash_argv(render_ray_job(r), tmp_path)
    cwd = str(tmp_path)
    assert argv[:2] == ["job", "submit"]
    sep = argv.index("--")
    assert argv[sep + 1:sep + 3] == ["python3", f"{cwd}/third_party/slime/train.py"]  # preset
    expected = [a.replace("${PWD}", cwd) for a in slime_train_args(r)]
    assert argv[sep + 3:] == expected
    env = json.loads(next(a for a in argv[:sep] if a.startswith("--runtime-env-json="))
                     .split("=", 1)[1])["env_vars"]
    assert env["PYTHONPATH"] == f"{cwd}/third_party/Megatron-LM:{cwd}"  # our reward too
    assert env["MASTER_ADDR"] == "127.0.0.1"
    assert env["SWALLOW_REWARD_WORKERS"] == "4" and env["SWALLOW_REWARD_TIMEOUT_S"] == "10"
    flags = dict(zip(expected, [*expected[1:], ""], strict=True))
    assert flags["--hf-checkpoint"] == f"{cwd}/runs/qwen3_30b_a3b/sft/hf"
    assert flags["--prompt-data"] == f"{cwd}/prepared/rl/dolci_think_rl_7b_math/train.jsonl"
    assert flags["--load"] == flags["--save"] == f"{cwd}/runs/qwen3_30b_a3b/rl/slime"


def test_values_of_the_swallow_recipe() -> None:
    for model, rollouts in (("qwen3_8b", "800"), ("qwen3_30b_a3b", "800"), ("qwen3_32b", "600")):
        args = slime_train_args(recipe(model))
        flags = dict(zip(args, [*args[1:], ""], strict=True))
        assert flags["--num-rollout"] == rollouts
        assert flags["--rollout-max-response-len"] == "24576"
        assert flags["--rollout-temperature"] == "1"
        assert int(flags["--rollout-batch-size"]) * int(flags["--n-samples-per-prompt"]) == (
            int(flags["--global-batch-size"]) * int(flags["--num-steps-per-rollout"]))
        assert flags["--custom-rm-path"] == "swallow_train.rl.reward.reward"
        assert "--use-kl-loss" not in args and "--calculate-per-token-loss" in args
        assert flags["--eps-clip-high"] == "0.28" and "--colocate" in args
        assert json.loads(flags["--apply-chat-template-kwargs"]) == {"enable_thinking": True}
    moe = slime_train_args(recipe("qwen3_30b_a3b"))
    assert moe[moe.index("--num-experts") + 1] == "128"
    assert moe[moe.index("--expert-model-parallel-size") + 1] == "8"


def test_chat_template_kwargs_come_from_rollout_enable_thinking() -> None:
    """Thinking off (the tiny recipes' prefilled empty think block) reaches slime's template."""
    args = slime_train_args(recipe("qwen3_8b", "rollout.enable_thinking=false"))
    at = args.index("--apply-chat-template-kwargs")
    assert json.loads(args[at + 1]) == {"enable_thinking": False}
    assert "--apply-chat-template" in args


def test_reward_path_is_dotted_and_awaitable() -> None:
    for extra, path in (((), "swallow_train.rl.reward.reward"),
                        (("reward.group_rm=true", "evaluation.interval=0"),
                         "swallow_train.rl.reward.group_reward")):
        args = slime_train_args(recipe("qwen3_8b", *extra))
        value = args[args.index("--custom-rm-path") + 1]
        assert value == path and ("--group-rm" in args) == bool(extra)
        module, _, name = value.rpartition(".")  # how slime's load_function resolves it
        assert inspect.iscoroutinefunction(getattr(importlib.import_module(module), name))


def test_kl_non_colocated_and_four_gpu_nodes() -> None:
    args = slime_train_args(recipe("qwen3_8b", "loss.use_kl=true", "loss.kl_coef=0.001",
                                   "slime.ref_load=/ckpt/sft_torch_dist"))
    assert args[args.index("--ref-load") + 1] == "/ckpt/sft_torch_dist"
    i = args.index("--use-kl-loss")
    assert args[i:i + 5] == ["--use-kl-loss", "--kl-loss-coef", "0.001", "--kl-loss-type",
                             "low_var_kl"]
    args = slime_train_args(recipe("qwen3_8b", "cluster.nodes=3", "slime.colocate=false",
                                   "slime.rollout_num_gpus=8"))
    assert args[args.index("--actor-num-nodes") + 1] == "2"
    assert args[args.index("--rollout-num-gpus") + 1] == "8" and "--colocate" not in args
    args = slime_train_args(compose("rl", ["model=qwen3_8b", "cluster=tsubame4",
                                           "cluster.nodes=4"]))
    assert args[args.index("--num-gpus-per-node") + 1] == "4"
    assert args[args.index("--actor-num-gpus-per-node") + 1] == "4"


RULES = [
    (["rollout.rollout_batch_size=63"], "must equal loss.global_batch_size x loss.steps_per"),
    (["loss.steps_per_rollout=1"], "512 must equal"),
    (["rollout.temperature=0"], "rollout.temperature=0.0 must be > 0"),
    (["rollout.n_samples_per_prompt=1", "rollout.rollout_batch_size=512"],
     "n_samples_per_prompt must be >= 2"),
    (["init.from_stage=null", "loss.use_kl=true"], "needs --ref-load"),
    (["init.from_stage=null"], "no --hf-checkpoint"),
    (["data.eval_size=0"], "no eval prompts"),
    (["reward.group_rm=true"], "--group-rm"),
    (["slime.max_tokens_per_gpu=null"], "needs slime.max_tokens_per_gpu"),
    (["slime.max_tokens_per_gpu=16384"], "cannot hold one sample of 26624 tokens"),
    (["rollout.max_response_len=40000"], "exceeds model.max_position_embeddings"),
    (["slime.rollout_num_gpus_per_engine=3"], "not divisible by slime.rollout_num_gpus_per"),
    (["parallel.tp=3"], "parallel.tp=3"),
    (["slime.colocate=false"], "needs slime.rollout_num_gpus"),
    (["slime.rollout_num_gpus=8"], "with slime.colocate=true"),
    (["slime.over_sampling_batch_size=32"], "must be >= rollout.rollout_batch_size"),
    (["loss.eps_clip_high=0.1"], "loss.eps_clip_high=0.1 must be >="),
    (["loss.kl_coef=0.01"], "needs loss.use_kl=true"),
    (["loss.advantage_estimator=reinforce_plus_plus"], "normalize_advantages=true"),
]


@pytest.mark.parametrize(("overrides", "message"), RULES)
def test_slime_rules_are_checked_before_rendering(overrides: list[str], message: str) -> None:
    with pytest.raises(SlimeError, match="slime would reject") as err:
        render_ray_job(recipe("qwen3_8b", *overrides))
    assert message in str(err.value)


def test_sft_export_of_another_model_is_caught(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    hf = tmp_path / "runs/qwen3_8b/sft/hf"
    hf.mkdir(parents=True)
    other = compose("rl", ["model=qwen3_32b"]).model.to_hf_config()
    (hf / "config.json").write_text(json.dumps(other))
    with pytest.raises(SlimeError) as err:
        render_ray_job(recipe("qwen3_8b"))
    assert ("model.hidden_size=4096 but runs/qwen3_8b/sft/hf/config.json has hidden_size 5120: "
            "set model.hidden_size=5120 or pick the model preset of that checkpoint (slime's "
            "start-up check would fail)") in str(err.value)
    own = compose("rl", ["model=qwen3_8b"]).model.to_hf_config()
    (hf / "config.json").write_text(json.dumps(own))
    assert render_ray_job(recipe("qwen3_8b")).startswith("ray job submit")


def test_stage_main_writes_the_job_and_its_export(tmp_path: Path, capsys) -> None:
    from swallow_train.stages.rl import main

    r = recipe("qwen3_8b", f"run.root={tmp_path}/runs")
    assert main(r) == 0
    stage = tmp_path / "runs/qwen3_8b/rl"
    script = (stage / "slime_job.sh").read_text()
    assert render_ray_job(r) in script and script in capsys.readouterr().out
    subprocess.run(["bash", "-n", str(stage / "slime_job.sh")], check=True)
    export = script[script.index("python -m swallow_train export"):]
    assert f"--checkpoint {stage}/slime" in export and f"--out {stage}/hf" in export
    assert f"--config {stage}/config.yaml" in export and f": > {stage}/DONE" in export
    assert compose("rl", ["model=qwen3_8b"]).model.name in (stage / "config.yaml").read_text()
    assert not (stage / "DONE").exists()  # the job writes it, after the export
