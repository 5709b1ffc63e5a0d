"""Rendering: what each scheduler's script asks for and runs, and errors before any write."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from swallow_train.config import compose
from swallow_train.launch import cli
from swallow_train.launch.args import parse
from swallow_train.launch.render import build

SHELLCHECK = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "shellcheck"


def render(*args: str, stage: str | None = None):
    argv = list(args)
    launch = parse(argv)
    return build(stage or launch.stages[0], launch, argv)[0]


def launched_overrides(script: str, stage: str) -> list[str]:
    """The overrides the job passes to `python -m swallow_train <stage>`."""
    lines = script.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith(f"swallow_train {stage}"))
    end = lines.index(")", start)
    return [tok for line in lines[start + 1:end] for tok in shlex.split(line)]


@pytest.mark.parametrize("args", [
    ("stage=cpt", "cluster=abci3", "nodes=16", "group=g1", "model=qwen3_8b", "optim.lr=2e-5"),
    ("stage=sft", "cluster=tsubame4", "nodes=16", "group=tga-x", "model=qwen3_32b",
     "parallel.recompute=full"),
    ("stage=cpt", "cluster=slurm", "nodes=16", "model=qwen3_30b_a3b", "queue=gpu",
     "walltime=12:00:00", "train.train_steps=100"),
    ("stage=cpt", "cluster=local", "cluster.gpus_per_node=2", "model=tiny_dense"),
])
def test_the_job_composes_exactly_the_validated_recipe(args):
    job = render(*args)
    overrides = launched_overrides(job.script, job.stage)
    assert overrides == job.overrides
    assert compose(job.stage, overrides) == job.recipe


def test_abci3_pbs_header_and_mpirun():
    job = render("stage=cpt", "cluster=abci3", "nodes=16", "group=gab12345", "model=qwen3_8b",
                 "run.name=s8b")
    s = job.script
    assert job.path == Path("runs/s8b/cpt/job.pbs.sh")
    for line in ("#PBS -q rt_HF", "#PBS -l select=16:ncpus=192:mpiprocs=8",
                 "#PBS -l walltime=24:00:00", "#PBS -P gab12345", "#PBS -r y",
                 "#PBS -o runs/s8b/cpt/logs/", "NNODES=16", "GPUS_PER_NODE=8",
                 "WALLTIME=86400", "SAVE_MARGIN=900", "MAX_REQUEUES=20",
                 "awk '!seen[$1]++ {print $1}' \"$PBS_NODEFILE\" > \"$HOSTS\"",
                 "module load cuda/12.9/12.9.1 cudnn/9.10/9.10.2 nccl/2.27/2.27.5-1 hpcx/2.20"
                 " || exit 1",
                 '  mpirun -np "$((NNODES * GPUS_PER_NODE))" --hostfile "$HOSTFILE"',
                 '  --map-by "ppr:$GPUS_PER_NODE:node" --bind-to none',
                 "  -x CUDA_DEVICE_MAX_CONNECTIONS", "  python -m swallow_train cpt",
                 'stop_launcher() { kill -s USR1 "$LAUNCHER_PID" 2> /dev/null; }',
                 '    if ! NEXT_ID=$(qsub "$SCRIPT"); then'):
        assert line in s.splitlines(), line
    assert "layout: world 128 = TP2 x PP1 x CP1 x DP64" in s
    assert s.startswith("#!/bin/bash\n#PBS -N cpt-s8b\n#PBS -S /bin/bash\n")


def test_tsubame4_grid_engine_header():
    job = render("stage=cpt", "cluster=tsubame4", "nodes=32", "group=tga-x", "model=qwen3_8b",
                 "parallel.cp=2")  # the Swallow TP2 CP1 needs ~121 GiB: more than an H100 94 GB
    lines = job.script.splitlines()
    for line in ("#$ -S /bin/bash", "#$ -cwd", "#$ -l node_f=32", "#$ -l h_rt=24:00:00",
                 "#$ -r y", "#$ -notify",
                 "#$ -o runs/qwen3_8b/cpt/logs/$JOB_NAME.o$JOB_ID", "NNODES=32", "GPUS_PER_NODE=4",
                 "awk '!seen[$1]++ {print $1}' \"$PE_HOSTFILE\" > \"$HOSTS\"", "exit 99",
                 "# submit with: qsub -terse -g tga-x runs/qwen3_8b/cpt/job.sge.sh"):
        assert line.strip() in [x.strip() for x in lines], line
    assert not any(x.startswith("#$ -g") for x in lines)  # TSUBAME: -g on the command line


def test_slurm_header_signal_requeue_and_srun_torchrun():
    job = render("stage=cpt", "cluster=slurm", "nodes=4", "queue=gpu", "group=acct",
                 "model=qwen3_8b", "train.global_batch_size=32")
    lines = job.script.splitlines()
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --gpus-per-node=8", "#SBATCH --time=24:00:00",
                 "#SBATCH --partition=gpu", "#SBATCH --account=acct", "#SBATCH --requeue",
                 "#SBATCH --signal=B:USR1@900", 'scontrol show hostnames "$SLURM_JOB_NODELIST"'
                 ' > "$HOSTS"', '  srun --nodes "$NNODES" --ntasks-per-node 1 '
                 "--kill-on-bad-exit=1", "  torchrun",
                 '  --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" '
                 '--rdzv-id "$JOB_ID"', "  -m swallow_train cpt",
                 '    if ! scontrol requeue "$SLURM_JOB_ID"; then'):
        assert line in lines, line


@pytest.mark.parametrize(("extra", "expect", "absent"), [
    ((), "  python -m swallow_train cpt", "torchrun"),
    (("cluster.gpus_per_node=2",), '  --nnodes "$NNODES" --nproc-per-node "$GPUS_PER_NODE"',
     "mpirun"),
])
def test_local_runs_python_or_torchrun(extra, expect, absent):
    job = render("stage=cpt", "cluster=local", "model=tiny_dense", *extra)
    assert expect in job.script.splitlines()
    assert absent not in job.script
    assert "WALLTIME=" not in job.script  # no walltime, no timer
    assert "exit 75" in job.script


def test_torchrun_on_pbs_goes_one_per_node_through_mpirun_and_container():
    job = render("stage=sft", "cluster=abci3", "nodes=8", "group=g", "model=qwen3_8b",
                 "cluster.launcher=torchrun", "cluster.container=/groups/g/ngc.sif")
    lines = job.script.splitlines()
    assert '  mpirun -np "$NNODES" --hostfile "$HOSTFILE" --map-by ppr:1:node --bind-to none' \
        in lines
    assert "  apptainer exec --nv /groups/g/ngc.sif torchrun" in lines
    assert 'stop_launcher() { kill -s USR1 "$LAUNCHER_PID" 2> /dev/null; }' in lines
    assert "export PET_SIGNALS_TO_HANDLE=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1" in lines


def test_a_stage_from_an_earlier_stage_waits_for_its_done():
    guard = "if [ ! -f runs/r/cpt/DONE ]; then"
    sft = render("stage=sft", "cluster=slurm", "nodes=8", "model=qwen3_8b", "run.name=r")
    assert guard in sft.script.splitlines()
    own_init = render("stage=sft", "cluster=slurm", "nodes=8", "model=qwen3_8b", "run.name=r",
                      "init.hf=Qwen/Qwen3-8B")
    assert guard not in own_init.script.splitlines()


def test_rendered_variants_are_shellcheck_clean(tmp_path):
    variants = [
        ("stage=cpt", "cluster=local", "model=tiny_dense"),
        ("stage=cpt", "cluster=local", "model=tiny_dense", "cluster.gpus_per_node=2",
         "walltime=01:00:00", "cluster.save_margin=60"),
        ("stage=sft", "cluster=abci3", "nodes=8", "group=g", "model=qwen3_8b",
         "cluster.launcher=torchrun", "cluster.container=/x y/ngc.sif"),
        ("stage=cpt", "cluster=tsubame4", "nodes=1", "group=g", "model=qwen3_8b",
         "cluster.launcher=torchrun", "train.global_batch_size=8", "parallel.recompute=full",
         "cluster.directives=[-p -5]", "+cluster.env.NCCL_DEBUG=WARN"),
    ]
    paths = []
    for i, args in enumerate(variants):
        path = tmp_path / f"v{i}.sh"
        path.write_text(render(*args).script)
        paths.append(str(path))
    result = subprocess.run([str(SHELLCHECK), *paths], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


BAD = [
    (("stage=cpt", "cluster=abci3", "nodes=15", "group=g", "model=qwen3_8b"),
     "global_batch_size=256 is not divisible"),
    (("stage=cpt", "cluster=tsubame4", "nodes=3", "group=g", "model=qwen3_32b"),
     "is not divisible by TP x PP x CP"),
    (("stage=cpt", "cluster=abci3", "nodes=16", "group=g", "queue=rt_XX", "model=qwen3_8b"),
     "unknown queue 'rt_XX' for cluster abci3"),
    (("stage=cpt", "cluster=tsubame4", "nodes=32", "model=qwen3_8b"),
     "cluster tsubame4 needs an accounting group: add group=<your group> (qsub -g)"),
    (("stage=cpt", "cluster=abci3", "nodes=16", "group=g", "model=qwen3_8b", "optim.lrr=1"),
     "recipe 'cpt' does not compose"),
    (("stage=cpt", "cluster=nowhere", "nodes=1"), "recipe 'cpt' does not compose"),
    (("stage=cpt", "cluster=slurm", "nodes=16", "walltime=00:10:00", "model=qwen3_8b"),
     "must be longer than cluster.save_margin=900 s"),
    (("stage=cpt,sft", "cluster=tsubame4", "nodes=64", "sft.nodes=3", "group=g",
      "model=qwen3_32b", "parallel.recompute=full"), "stage sft:"),
    (("stage=cpt", "cluster=tsubame4", "nodes=32", "group=g", "model=qwen3_8b"),
     "out of GPU memory: the memory plan needs 121.1 GiB per GPU, the H100 94 GB of cluster "
     "tsubame4 has 93.6"),
    (("stage=cpt", "cluster=local", "nodes=2", "model=tiny_dense"), "nodes=2 must be 1"),
    (("stage=cpt", "cluster=local", "model=tiny_dense", "run.name=my run"),
     "must not contain spaces"),
    (("stage=rl", "cluster=abci3", "nodes=2", "group=g", "model=qwen3_8b",
      "slime.rollout_num_gpus_per_engine=3"),
     "16 rollout GPUs are not divisible by slime.rollout_num_gpus_per_engine=3"),
    (("stage=chain", "cluster=abci3", "nodes=16", "rl.nodes=3", "group=g", "model=qwen3_30b_a3b"),
     "slime would reject this RL recipe"),
]


@pytest.mark.parametrize(("args", "needle"), BAD)
def test_bad_input_fails_before_anything_is_written(tmp_path, capsys, args, needle):
    root = tmp_path / "runs"
    assert cli.main([*args, f"run.root={root}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("swallow-train launch: error: ")
    assert needle in err
    assert not root.exists()


def test_submit_without_the_scheduler_on_path_fails_before_writing(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    root = tmp_path / "runs"
    args = ["stage=cpt", "cluster=abci3", "nodes=16", "group=g", "model=qwen3_8b",
            f"run.root={root}", "submit=true"]
    assert cli.main(args) == 2
    assert "submit=true needs `qsub` (pbs) on PATH" in capsys.readouterr().err
    assert not root.exists()


def test_write_and_dry_run(tmp_path, capsys):
    root = tmp_path / "runs"
    args = ["stage=cpt,sft", "cluster=abci3", "nodes=16", "sft.nodes=8", "group=g",
            "model=qwen3_8b", f"run.root={root}", "run.name=r"]
    assert cli.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"# ===== {root}/r/cpt/job.pbs.sh" in out and "#PBS -l select=8:" in out
    assert not root.exists()
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    cpt, sft = root / "r/cpt/job.pbs.sh", root / "r/sft/job.pbs.sh"
    assert f"  cpt: qsub {cpt}" in out and f"  sft: qsub {sft}" in out
    assert cpt.read_text() == render(*args, stage="cpt").script
    assert "#PBS -l select=8:ncpus=192:mpiprocs=8" in sft.read_text()
    assert cpt.stat().st_mode & 0o111 and (root / "r/cpt/logs").is_dir()


def test_rl_with_the_local_backend_is_one_python_process():
    job = render("stage=rl", "cluster=local", "model=tiny_dense", "run.name=r")
    lines = job.script.splitlines()
    assert "  python -m swallow_train rl" in lines
    assert "PROGRESS_FILE=runs/r/rl/checkpoints/latest_checkpointed_iteration.txt" in lines
    assert "if [ ! -f runs/r/sft/DONE ]; then" in lines
    assert "ray" not in job.script
    assert compose("rl", launched_overrides(job.script, "rl")) == job.recipe


def test_rl_with_slime_wraps_the_rendered_submit():
    job = render("stage=rl", "cluster=slurm", "nodes=4", "model=qwen3_32b", "run.name=r")
    submit = job.recipe.slime_job().submit_command(submission_id="SUBMISSION_ID").strip()
    assert submit.startswith('ray job submit --submission-id "$SUBMISSION_ID" --address=')
    body = "\n".join("  " + line for line in submit.splitlines())
    assert f"submit_rl() {{\n{body}\n}}" in job.script
    assert "PROGRESS_FILE=runs/r/rl/slime/latest_checkpointed_iteration.txt" in job.script
    assert ('ON_WORKERS=(srun --overlap --nodes "$((NNODES - 1))" --ntasks-per-node 1 '
            '--exclude "$HEAD_HOST")') in job.script
    assert "  python -m swallow_train export --checkpoint" in job.script
