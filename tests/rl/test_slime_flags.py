"""The declarative slime flag table and the typed slime job: each format of the table, flags
following their fields, the paths of the job as data, the submission id as a parameter of the
formatter (no editing of rendered text)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cache

from swallow_train.config import compose
from swallow_train.rl.slime_flags import SLIME_FLAGS, Flag, Fmt, Splice, render_flags, value_of
from swallow_train.rl.slime_job import JobPath


class Color(Enum):
    red = "red"


@dataclass
class Section:
    on: bool = True
    off: bool = False
    rate: float = 1e-6
    count: int = 0
    name: str | None = None
    color: Color = Color.red


def test_each_format_writes_the_words_it_names() -> None:
    table = (
        Flag("--on", "s.on", Fmt.switch), Flag("--off", "s.off", Fmt.switch),
        Flag("--rate", "s.rate", Fmt.num), Flag("--k", "s.count", Fmt.positive),
        Flag("--n", "s.count"), Flag("--name", "s.name"),
        Flag("--fallback", "s.name", fallback="job.default"),
        Flag("--color", "s.color", Fmt.enum), Flag("--bare"), Flag("--const", const="x"),
        Flag("--gated", "s.count", when="s.off"), Flag("--open", when="s.on"),
        Flag("--path", "job.path", Fmt.path), Flag("--abs", "job.abs", Fmt.path),
        Flag("--two", "job.pair", Fmt.words), Splice("job.more"),
    )
    sources = {"s": Section(), "job": {"default": "d", "path": "runs/r", "abs": "/x",
                                       "pair": ("a", "b"), "more": ["--m", "1"]}}
    words = render_flags(table, sources)
    assert words == ["--on", "--rate", "1e-06", "--n", "0", "--fallback", "d", "--color", "red",
                     "--bare", "--const", "x", "--open", "--path", "runs/r", "--abs", "/x",
                     "--two", "a", "b", "--m", "1"]
    sources["job"]["path"] = JobPath("runs/r")
    words = render_flags((Flag("--path", "job.path", Fmt.path),), sources)
    assert words == ["--path", JobPath("runs/r")] and words[1].shell == "${PWD}/runs/r"


@cache
def _recipe(*extra: str):
    return compose("rl", ["model=qwen3_30b_a3b", "cluster=abci3", "cluster.nodes=4",
                          "run.name=r", *extra])


def test_every_source_of_the_table_is_a_field() -> None:
    r = _recipe()
    job = r.slime_job()
    flags = [row.flag for row in SLIME_FLAGS if isinstance(row, Flag)]
    assert len(flags) == len(set(flags)), "a flag is written twice"
    sections = {name: getattr(r, name) for name in ("data", "rollout", "loss", "optim",
                                                    "evaluation", "checkpoint", "reward",
                                                    "slime", "cluster", "logging")}
    for row in SLIME_FLAGS:
        for path in (getattr(row, "source", None), getattr(row, "fallback", None),
                     getattr(row, "when", None)):
            if path and not path.startswith("job."):
                value_of(sections, path)  # AttributeError names a field that does not exist
    assert job.argv()[-8:] == ["--attention-dropout", "0.0", "--hidden-dropout", "0.0",
                               "--accumulate-allreduce-grads-in-fp32",
                               "--attention-softmax-in-fp32", "--attention-backend", "flash"]


def _flags(r) -> list[str]:
    return r.slime_job().argv()


def test_flags_follow_their_fields() -> None:
    base = _flags(_recipe())
    top_k = _flags(_recipe("rollout.top_k=20"))
    i = base.index("--rollout-top-p")
    assert top_k == [*base[:i + 2], "--rollout-top-k", "20", *base[i + 2:]]
    assert not any(a.startswith("--wandb") or a == "--use-wandb"
                   for a in _flags(_recipe("logging.wandb_mode=disabled")))
    team = _flags(_recipe("logging.wandb_entity=lab", "logging.wandb_group=g"))
    j = team.index("--wandb-group")
    assert team[j:j + 4] == ["--wandb-group", "g", "--wandb-team", "lab"]
    no_eval = _flags(_recipe("evaluation.interval=0"))
    assert not [a for a in no_eval if "eval" in a]
    assert _flags(_recipe("slime.extra_args=[--foo,bar]"))[-2:] == ["--foo", "bar"]
    std = _flags(_recipe("loss.std_normalization=true"))
    assert "--disable-grpo-std-normalization" in base and (
        "--disable-grpo-std-normalization" not in std)


def test_the_job_carries_its_paths_and_formats_the_submission_id() -> None:
    job = _recipe().slime_job()
    assert job.save_dir == JobPath("runs/r/rl/slime")
    assert job.train_script.path == "third_party/slime/train.py"  # the abci3 preset
    assert job.megatron_path.path == "third_party/Megatron-LM"
    plain = job.submit_command().splitlines()
    named = job.submit_command(submission_id="SUBMISSION_ID").splitlines()
    assert named[0] == ('ray job submit --submission-id "$SUBMISSION_ID" '
                        '--address=http://127.0.0.1:8265 \\')
    assert plain[0] == "ray job submit --address=http://127.0.0.1:8265 \\"
    assert plain[1:] == named[1:]
    assert '--load "${PWD}/runs/r/rl/slime"' in job.submit_command()


def test_absolute_and_hub_paths_are_written_as_given(tmp_path) -> None:
    r = _recipe(f"run.root={tmp_path}", "init.hf=Qwen/Qwen3-30B-A3B")
    job = r.slime_job()
    args = job.argv()
    assert args[args.index("--hf-checkpoint") + 1] == "Qwen/Qwen3-30B-A3B"
    assert args[args.index("--save") + 1] == f"{tmp_path}/r/rl/slime"
    assert job.save_dir.path == f"{tmp_path}/r/rl/slime" and not job.save_dir.relative
    assert f"--out {tmp_path}/r/rl/hf" in job.export_command()
    assert "--tokenizer Qwen/Qwen3-30B-A3B" in job.export_command()


def test_every_format_is_used() -> None:
    used = {row.fmt for row in SLIME_FLAGS if isinstance(row, Flag)}
    assert used == set(Fmt), f"unused formats {set(Fmt) - used}: remove them"
