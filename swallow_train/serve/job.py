"""`swallow-train serve <hf dir> cluster=...`: a 1-node job that runs vLLM's server on a
cluster's GPUs, rendered from `launch/templates/serve.sh` with the scheduler pieces that the
training jobs use.

    swallow-train serve runs/x/sft/hf cluster=abci3 group=gxx00000          # writes the script
    swallow-train serve runs/x/sft/hf cluster=slurm tp=4 submit=true --dry-run
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from swallow_train.cluster import ClusterConfig, LaunchError, walltime_seconds
from swallow_train.serve.export_check import ServeError, check_export
from swallow_train.serve.options import ServeArgs, served_name, server_options


def load_cluster(name: str, job: dict[str, str]) -> ClusterConfig:
    """recipes/cluster/<name>.yaml with group/queue/walltime/venv from the command line, one
    node; LaunchError names the key to change."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from swallow_train.config import recipes_dir

    file = recipes_dir() / "cluster" / f"{name}.yaml"
    presets = sorted(p.stem for p in file.parent.glob("*.yaml") if p.stem != "local")
    if name == "local" or not file.is_file():
        raise LaunchError(f"cluster={name!r}: a serve job is for a cluster, one of "
                          f"{', '.join(presets)}; to serve here, leave cluster= out")
    if "walltime" in job:
        walltime_seconds(job["walltime"], "walltime")
    sets = {k: job[k] for k in ("group", "queue", "walltime", "venv") if k in job}
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ClusterConfig), OmegaConf.load(file),
                                 {**sets, "nodes": 1})
        cluster: ClusterConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        raise LaunchError(f"{file}: {exc}") from None
    cluster.check()
    return cluster


def _tp(value: str | None, cluster: ClusterConfig, heads: int) -> int:
    """tp= (default: the most GPUs of the node that divide the attention heads, which vLLM
    shards over them)."""
    if value is None:
        return max(d for d in range(1, cluster.gpus_per_node + 1) if heads % d == 0)
    tp = int(value) if value.isdigit() else 0
    if not 1 <= tp <= cluster.gpus_per_node:
        raise LaunchError(f"tp={value} must be a whole number from 1 to "
                          f"{cluster.gpus_per_node} (the GPUs of one {cluster.name} node)")
    if heads % tp:
        raise LaunchError(f"tp={tp} does not divide the model's {heads} attention heads: "
                          "pick tp= that does (vLLM shards the heads)")
    return tp


def render(args: ServeArgs, argv: list[str]) -> tuple[ClusterConfig, Path, str]:
    """(cluster, script path, script text); nothing is written."""
    from swallow_train.launch.templating import (
        container_prefix,
        environment,
        shell_lines,
        submit_command,
    )

    check_export(args.model)
    cluster = load_cluster(args.job["cluster"], args.job)
    heads = json.loads((args.model / "config.json").read_text())["num_attention_heads"]
    tp = _tp(args.job.get("tp"), cluster, heads)
    stage_dir = args.model.parent
    path = stage_dir / f"serve.{cluster.scheduler.value}.sh"
    name = args.name or served_name(args.model)
    command = ["vllm", "serve", str(args.model),
               *server_options(args, args.host or "0.0.0.0", cpu=False, tp=tp)]
    context: dict[str, Any] = {
        "c": cluster, "scheduler": cluster.scheduler.value, "stage_dir": str(stage_dir),
        "job_name": f"serve-{name}"[:63], "tasks_per_node": 1, "model": str(args.model),
        "name": name, "tp": tp, "port": args.port, "argv": shlex.join(argv),
        "submit_cmd": shlex.join(submit_command(cluster, path)),
        "container": container_prefix(cluster), "command_lines": shell_lines(command),
    }
    return cluster, path, environment().get_template("serve.sh").render(context)


def serve_job(args: ServeArgs, argv: list[str]) -> int:
    """Render (and write, and with submit=true submit) the serve job of `args.job['cluster']`."""
    from swallow_train.launch.cli import job_id, write_atomic
    from swallow_train.launch.render import submit_command

    submit = args.job.get("submit", "false").lower()
    if submit not in ("true", "false"):
        raise ServeError(f"submit={args.job['submit']!r} must be true or false")
    cluster, path, script = render(args, argv)
    if args.dry_run:
        print(f"# ===== {path}")
        print(script, end="")
        return 0
    command = submit_command(cluster, path)
    if submit == "true" and shutil.which(command[0]) is None:
        raise LaunchError(f"submit=true needs `{command[0]}` on PATH; run on a login node of "
                          f"{cluster.name}, or leave out submit=true and submit by hand")
    (path.parent / "logs").mkdir(parents=True, exist_ok=True)
    write_atomic(path, script, mode=0o755)
    print(f"wrote {path}")
    if submit == "false":
        print(f"  submit with: {shlex.join(command)}")
        return 0
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LaunchError(f"`{shlex.join(command)}` failed (status {result.returncode}): "
                          f"{(result.stderr or result.stdout).strip()}")
    print(f"submitted job {job_id(cluster.scheduler, result.stdout)}; the log in "
          f"{path.parent / 'logs'} names the node to connect to")
    return 0
