"""What `swallow-train serve` was asked (`ServeArgs`) and the vLLM server options it implies;
shared by the local server (`serve/cli.py`) and the cluster job (`serve/job.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swallow_train.serve.export_check import ServeError

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
