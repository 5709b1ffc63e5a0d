r"""The launch command's own keys (`LaunchConfig`), parsed strictly from `key=value` arguments.

    swallow-train launch stage=chain cluster=abci3 nodes=16 sft.nodes=8 rl.nodes=2 \
        group=gxx00000 model=qwen3_8b submit=true

Launch keys: stage, cluster, nodes, submit, queue, group, walltime. `stage` is cpt, sft, rl,
prepare, prepare-sft, prepare-rl (CPU jobs that prepare the data), a comma list in the order
prepare,cpt,prepare-sft,sft,prepare-rl,rl, `chain` (cpt,sft,rl) or `all` (every stage).
`nodes`, `queue`, `group` and `walltime` may be scoped to one stage (`sft.nodes=8`). Every
other argument is a Hydra override of the stage recipes (`model=qwen3_8b`, `optim.lr=1e-5`);
one prefixed with a stage name (`cpt.train.train_steps=10`) applies to that stage only.
Unknown recipe keys fail when the recipe is composed, before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from swallow_train.cluster import LaunchError, walltime_seconds

CHAIN: tuple[str, ...] = ("cpt", "sft", "rl")
"""The GPU stages in chain order (each starts from the previous one's HF export)."""
PREPARE: dict[str, str] = {"prepare": "cpt", "prepare-sft": "sft", "prepare-rl": "rl"}
"""The CPU data-preparation stages and the recipe each one composes."""
ORDER: tuple[str, ...] = ("prepare", "cpt", "prepare-sft", "sft", "prepare-rl", "rl")
"""Every stage in the order a launch submits them (`stage=all` is all of them)."""
STAGE_KEYS = ("nodes", "queue", "group", "walltime")
"""Launch keys that may be scoped to one stage, and the cluster field each one sets."""
LAUNCH_KEYS = ("stage", "cluster", "submit", *STAGE_KEYS)
_RESERVED = {f"cluster.{key}": key for key in STAGE_KEYS}
_KEY = re.compile(r"^[A-Za-z_][\w.\-]*$")


@dataclass(kw_only=True)
class StageSettings:
    """What one stage's job asks the scheduler for (None: the cluster preset's value)."""

    nodes: int | None = None
    queue: str | None = None
    group: str | None = None
    walltime: str | None = None


@dataclass(kw_only=True)
class LaunchConfig:
    stages: list[str]
    """Stages to render, in chain order: `stage=cpt`, `stage=cpt,sft,rl` or `stage=chain`."""
    cluster: str
    """Cluster preset (recipes/cluster/<name>.yaml)."""
    submit: bool = False
    """Submit with qsub/sbatch (the local cluster: run with bash) and print the job ids."""
    dry_run: bool = False
    """Print the scripts; write and submit nothing."""
    common: StageSettings = field(default_factory=StageSettings)
    per_stage: dict[str, StageSettings] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    """Recipe overrides for every stage."""
    stage_overrides: dict[str, list[str]] = field(default_factory=dict)

    def settings(self, stage: str) -> StageSettings:
        scoped = self.per_stage.get(stage, StageSettings())
        return StageSettings(**{
            key: getattr(scoped, key) if getattr(scoped, key) is not None
            else getattr(self.common, key) for key in STAGE_KEYS
        })

    def recipe_overrides(self, stage: str) -> list[str]:
        """What `compose(stage, ...)` gets and the job passes to `python -m swallow_train`."""
        out = [f"cluster={self.cluster}"]
        settings = self.settings(stage)
        for key in STAGE_KEYS:
            value = getattr(settings, key)
            if value is not None:
                out.append(f"cluster.{key}={value}")
        scoped = self.stage_overrides.get(stage, [])
        keys = {_override_key(o) for o in scoped}
        return out + [o for o in self.overrides if _override_key(o) not in keys] + scoped


def _override_key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def _stages(value: str) -> list[str]:
    named = {"chain": list(CHAIN), "all": list(ORDER)}
    names = named.get(value) or [s.strip() for s in value.split(",")]
    unknown = [s for s in names if s not in ORDER]
    if unknown or not names:
        raise LaunchError(
            f"stage={value!r}: unknown stage {', '.join(map(repr, unknown)) or '(empty)'}; "
            f"use one of {', '.join(ORDER)}, a comma list such as cpt,sft, chain (cpt,sft,rl) "
            "or all (every stage)"
        )
    if len(set(names)) != len(names) or names != sorted(names, key=ORDER.index):
        raise LaunchError(f"stage={value!r}: list each stage once, in the order "
                          f"{','.join(ORDER)}")
    return names


def _setting(key: str, value: str, arg: str) -> int | str:
    if not value:
        raise LaunchError(f"{arg}: {key} needs a value")
    if key == "nodes":
        if not value.isdigit() or int(value) < 1:
            raise LaunchError(f"{arg}: nodes must be a whole number >= 1")
        return int(value)
    if key == "walltime":
        walltime_seconds(value, key)
    if any(c.isspace() for c in value) or "'" in value or '"' in value:
        raise LaunchError(f"{arg}: {key} must not contain spaces or quotes")
    return value


def parse(argv: list[str]) -> LaunchConfig:
    """Parse the launch arguments; LaunchError names the offending argument."""
    seen: dict[str, str] = {}
    found: dict[str, str] = {}
    common = StageSettings()
    per_stage: dict[str, StageSettings] = {}
    overrides: list[str] = []
    stage_overrides: dict[str, list[str]] = {}
    dry_run = False
    for arg in argv:
        if arg == "--dry-run":
            dry_run = True
            continue
        if arg.startswith("-"):
            raise LaunchError(f"unknown option {arg!r}; launch takes key=value and --dry-run")
        key, eq, value = arg.partition("=")
        bare = key.lstrip("+~")
        if not (eq or key.startswith("~")) or not _KEY.match(bare):
            raise LaunchError(f"expected key=value, got {arg!r}")
        scope, _, rest = bare.partition(".")
        stage = scope if scope in ORDER and rest else None
        name = rest if stage else bare
        if name in _RESERVED:
            raise LaunchError(
                f"{arg}: set {name} with the launch key {_RESERVED[name]}= (one place for the "
                f"node count, queue, group and walltime), e.g. {_RESERVED[name]}=..."
            )
        if bare in seen:
            raise LaunchError(f"{arg}: {bare} is given twice (also {seen[bare]!r})")
        seen[bare] = arg
        if key != bare and name in LAUNCH_KEYS:
            raise LaunchError(f"{arg}: launch key {name} takes no Hydra prefix")
        if name in STAGE_KEYS:
            target = per_stage.setdefault(stage, StageSettings()) if stage else common
            setattr(target, name, _setting(name, value, arg))
        elif name in LAUNCH_KEYS and stage is None:
            found[name] = value
        elif name in LAUNCH_KEYS:
            raise LaunchError(f"{arg}: {name} applies to the whole launch, not to one stage")
        elif stage:
            stage_overrides.setdefault(stage, []).append(arg[: len(key) - len(bare)] +
                                                         name + eq + value)
        else:
            overrides.append(arg)
    missing = [k for k in ("stage", "cluster") if not found.get(k)]
    if missing:
        raise LaunchError(
            f"missing {' and '.join(k + '=' for k in missing)}: e.g. swallow-train launch "
            "stage=cpt cluster=abci3 nodes=16 group=<group> model=qwen3_8b"
        )
    submit = found.get("submit", "false").lower()
    if submit not in ("true", "false"):
        raise LaunchError(f"submit={found['submit']!r} must be true or false")
    stages = _stages(found["stage"])
    stray = sorted((set(per_stage) | set(stage_overrides)) - set(stages))
    if stray:
        raise LaunchError(
            f"{', '.join(s + '.' for s in stray)}* arguments name a stage that stage="
            f"{found['stage']} does not launch"
        )
    if not _KEY.match(found["cluster"]):
        raise LaunchError(f"cluster={found['cluster']!r} is not a preset name")
    return LaunchConfig(
        stages=stages, cluster=found["cluster"], submit=submit == "true", dry_run=dry_run,
        common=common, per_stage=per_stage, overrides=overrides,
        stage_overrides=stage_overrides,
    )
