"""Fake scheduler and launcher executables for the launch tests (no qsub/sbatch/mpirun here).

Each fake appends its arguments to `<record>/<name>.calls` (one line per call, shell-quoted)
and prints what the real command would (a job id for qsub/sbatch).
"""

from __future__ import annotations

import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

RECORD = 'printf "%s\\n" "$(printf "%q " "$@")" >> "$FAKE_RECORD/$(basename "$0").calls"\n'

SUBMITTERS = {
    # qsub: PBS prints "<seq>.<server>"; Grid Engine with -terse prints "<seq>".
    "qsub": 'n=$(wc -l < "$FAKE_RECORD/qsub.calls"); echo "$((100 + n))${FAKE_QSUB_SUFFIX-.pbs1}"',
    "sbatch": 'n=$(wc -l < "$FAKE_RECORD/sbatch.calls"); echo "$((200 + n));cluster"',
    "qalter": "exit 0",
    "scontrol": 'if [ "$1" = show ]; then printf "%s\\n" ${FAKE_NODES:-node1}; fi',
    "module": "exit 0",
    "squeue": 'printf "%s\\n" "$SLURM_JOB_ID.batch" "$SLURM_JOB_ID.extern" "$SLURM_JOB_ID.0"',
    "scancel": 'kill -s "${1#--signal=}" "$(cat "$FAKE_RECORD/launcher.pid")"',
    # python: the job's checks before the launch (prepared data, doctor) pass unless FAKE_READY
    # / FAKE_DOCTOR give another status; anything else runs the real interpreter
    "python": ('case "$2" in swallow_train.data.ready) exit "${FAKE_READY:-0}" ;; esac\n'
               'if [ "$3" = doctor ]; then exit "${FAKE_DOCTOR:-0}"; fi\n'
               f'exec {shlex.quote(sys.executable)} "$@"'),
}

# A launcher that behaves like the trainer behind it (FAKE_MODE):
#   done - write DONE and exit 0;  fail - exit 3;
#   wait - train until SIGUSR1/SIGTERM, then "checkpoint" iteration $FAKE_ITER and exit 128+n.
TRAINER = r'''
echo $$ > "$FAKE_RECORD/launcher.pid"
for arg in "$@"; do
  if [ "$prev" = --hostfile ]; then cp "$arg" "$FAKE_RECORD/hostfile"; fi
  prev=$arg
done
keep='^(MASTER_ADDR|MASTER_PORT|PET_SIGNALS_TO_HANDLE|TORCH_ELASTIC_SHUTDOWN_TIMEOUT'
env | grep -E "$keep|CUDA_DEVICE_MAX_CONNECTIONS)=" | sort > "$FAKE_RECORD/env"
checkpoint() {
  echo "$1" >> "$FAKE_RECORD/signals"
  mkdir -p "$FAKE_STAGE_DIR/checkpoints"
  echo "${FAKE_ITER:-2}" > "$FAKE_STAGE_DIR/checkpoints/latest_checkpointed_iteration.txt"
  exit "$2"
}
case "${FAKE_MODE:-done}" in
  done) mkdir -p "$FAKE_STAGE_DIR"; echo 4 > "$FAKE_STAGE_DIR/DONE"; exit 0 ;;
  fail) exit 3 ;;
  wait)
    trap 'checkpoint USR1 138' USR1
    trap 'checkpoint TERM 143' TERM
    touch "$FAKE_RECORD/started"
    for _ in $(seq 2400); do sleep 0.05; done; exit 1 ;;  # at most 2 min
esac
'''


def _write(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + RECORD + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def fake_bin(tmp: Path, launchers: tuple[str, ...] = ("mpirun", "torchrun", "srun")) -> Path:
    """A directory of fakes (put it first on PATH) and its record directory (FAKE_RECORD)."""
    bin_dir, record = tmp / "fakebin", tmp / "record"
    bin_dir.mkdir(exist_ok=True)
    record.mkdir(exist_ok=True)
    for name, body in SUBMITTERS.items():
        _write(bin_dir / name, body)
    for name in launchers:
        _write(bin_dir / name, TRAINER)
    return bin_dir


def env_with(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PBS_", "SLURM_", "PE_"))}
    env.pop("JOB_ID", None)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["FAKE_RECORD"] = str(bin_dir.parent / "record")
    env.update(extra)
    return env


def calls(tmp: Path, name: str) -> list[list[str]]:
    """The recorded calls of fake `name`, each as its argument list."""
    path = tmp / "record" / f"{name}.calls"
    if not path.exists():
        return []
    return [shlex.split(line) for line in path.read_text().splitlines()]


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


def start_bash(script: Path, env: dict[str, str], cwd: Path | str | None = None
               ) -> subprocess.Popen:
    """Run a job script in its own session, so that a failed test can stop all it started."""
    return subprocess.Popen(["bash", str(script)], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str]:
    """(exit status, output) of a started script; on a timeout its whole session is killed."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"the script did not finish within {timeout} s:\n{out[-3000:]}") \
            from None
    return proc.returncode, out


def run_bash(script: Path, env: dict[str, str], cwd: Path | str | None = None,
             timeout: float = 60.0) -> tuple[int, str]:
    return finish(start_bash(script, env, cwd), timeout)
