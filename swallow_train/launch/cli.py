r"""`swallow-train launch`: render, write and (with submit=true) submit the job scripts.

    swallow-train launch stage=cpt cluster=abci3 nodes=16 group=gxx00000 model=qwen3_8b
    swallow-train launch stage=chain cluster=tsubame4 nodes=32 sft.nodes=16 rl.nodes=4 \
        group=tga-xxxxx model=qwen3_8b run.name=swallow-8b submit=true
    swallow-train launch --dry-run stage=sft cluster=slurm nodes=8 model=qwen3_32b

Every stage is composed and validated (recipe keys, cluster settings, the parallel layout
against nodes x GPUs per node) before anything is written; on an error nothing is. The scripts
go to `<run.root>/<run.name>/<stage>/job.<scheduler>.sh` (eval: `<stage>/eval/<suite>/`). With
submit=true each stage after the first waits for the previous one to succeed (PBS `-W
depend=afterok:`, Grid Engine `-hold_jid`, Slurm `--dependency=afterok:`), and each eval job for
the stage it scores; the ids of a stage's dependents go to `<stage dir>/dependents`, so that a
PBS job that continues in a new job (a PBS user cannot `qrerun`) can move them onto its
continuation. A stage whose `DONE` exists is not submitted again.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from swallow_train.cluster import ClusterConfig, LaunchError, Scheduler
from swallow_train.launch.args import parse
from swallow_train.launch.render import StageJob, build_all, submit_command

_JOB_ID = re.compile(r"^[\w.\-\[\]:@]+$")
Runner = Callable[..., subprocess.CompletedProcess]


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to a temporary name next to `path`, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def write(job: StageJob) -> Path:
    """Create the stage directory (only now, after validation) and write the script."""
    (job.stage_dir / "logs").mkdir(parents=True, exist_ok=True)
    write_atomic(job.path, job.script, mode=0o755)
    return job.path


def dependent_command(cluster: ClusterConfig, script: Path, after: str | None) -> list[str]:
    """The submit command of `script`, waiting for job `after` to succeed when given."""
    cmd = submit_command(cluster, script)
    if after is None:
        return cmd
    match cluster.scheduler:
        case Scheduler.pbs:
            dep = ["-W", f"depend=afterok:{after}"]
        case Scheduler.sge:
            dep = ["-hold_jid", after]
        case Scheduler.slurm:
            dep = [f"--dependency=afterok:{after}", "--kill-on-invalid-dep=yes"]
        case _:
            return cmd
    return [cmd[0], *dep, *cmd[1:]]


def job_id(scheduler: Scheduler, stdout: str) -> str:
    """The job id in qsub's (-terse) or sbatch's (--parsable) output."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    value = lines[-1] if lines else ""
    if scheduler is Scheduler.slurm:
        value = value.split(";")[0]
    if scheduler is Scheduler.sge:  # an array job: "<id>.<first>-<last>:<step>"
        value = value.split(".")[0]
    if not _JOB_ID.match(value):
        raise LaunchError(f"could not read a job id from the {scheduler.value} submit output: "
                          f"{stdout.strip()!r}")
    return value


def check_tools(jobs: list[StageJob]) -> None:
    """Before anything is written: the submit command of every stage must be on PATH."""
    for job in jobs:
        tool = submit_command(job.cluster, job.path)[0]
        if shutil.which(tool) is None:
            raise LaunchError(
                f"submit=true needs `{tool}` ({job.cluster.scheduler.value}) on PATH; run on a "
                f"login node of {job.cluster.name}, or leave out submit=true and submit by hand"
            )


def _done(job: StageJob) -> bool:
    return (job.stage_dir / "DONE").exists()


def run_local(jobs: list[StageJob], say: Callable[[str], None] = print) -> int:
    """The local cluster: run the scripts one after the other, stop at the first failure."""
    for job in jobs:
        say(f"{job.stage}: running {job.path}")
        code = subprocess.run(["bash", str(job.path)], check=False).returncode
        say(f"{job.stage}: exit status {code}")
        if code != 0:
            return code
    return 0


def submit_chain(jobs: list[StageJob], run: Runner = subprocess.run,
                 say: Callable[[str], None] = print) -> list[tuple[str, str]]:
    """Submit the stages in order, each after the previous one (a job with `after`, such as an
    eval, after that stage's job when this launch submits it); returns (stage, job id)."""
    submitted: list[tuple[str, str]] = []
    by_stage: dict[str, tuple[StageJob, str]] = {}
    waiting: dict[Path, list[str]] = {}
    previous: tuple[StageJob, str] | None = None
    for job in jobs:
        if _done(job):
            say(f"{job.stage}: {job.stage_dir / 'DONE'} exists; not submitted")
            continue
        parent = by_stage.get(job.after) if job.after else previous
        cmd = dependent_command(job.cluster, job.path, parent[1] if parent else None)
        result = run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            done = ", ".join(f"{s} {i}" for s, i in submitted) or "none"
            raise LaunchError(
                f"`{' '.join(cmd)}` failed (status {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}\nalready submitted: {done}"
            )
        new_id = job_id(job.cluster.scheduler, result.stdout)
        (job.stage_dir / "dependents").unlink(missing_ok=True)
        if parent is not None:  # a PBS continuation moves these onto itself
            ids = waiting.setdefault(parent[0].stage_dir, [])
            ids.append(new_id)
            write_atomic(parent[0].stage_dir / "dependents", "".join(f"{i}\n" for i in ids))
        after = f" after {parent[1]}" if parent else ""
        say(f"{job.stage}: submitted job {new_id}{after} ({job.path})")
        submitted.append((job.stage, new_id))
        by_stage[job.stage] = (job, new_id)
        if job.after is None:
            previous = (job, new_id)
    return submitted


def _error(message: str) -> int:
    print(f"swallow-train launch: error: {message}", file=sys.stderr)
    return 2


def _print_scripts(jobs: list[StageJob]) -> None:
    for job in jobs:
        print(f"# ===== {job.path} ({job.summary})")
        print(job.script, end="")


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        import swallow_train.launch.args as spec

        print(__doc__.strip() + "\n\n" + (spec.__doc__ or "").strip())
        return 0
    args = [a for a in argv if a != "--dry-run"]
    try:
        launch = parse(argv)
        jobs = build_all(launch, args)
        if launch.submit and not launch.dry_run:
            check_tools(jobs)
    except ValueError as exc:  # RecipeError, LayoutError, LaunchError, DataError, model errors
        return _error(str(exc))
    if launch.dry_run:
        _print_scripts(jobs)
        return 0
    for job in jobs:
        write(job)
        print(f"{job.summary}\n  wrote {job.path}")
    if not launch.submit:
        for job in jobs:
            print(f"  {job.stage}: {shlex.join(submit_command(job.cluster, job.path))}")
        if len(jobs) > 1:
            print("  (submit=true submits them as one chain, each after the previous one)")
        return 0
    if jobs[0].cluster.scheduler is Scheduler.local:
        return run_local(jobs)
    try:
        submitted = submit_chain(jobs)
    except ValueError as exc:
        return _error(str(exc))
    if submitted:
        print("job ids: " + " ".join(job_id for _, job_id in submitted))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
