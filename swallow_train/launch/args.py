r"""The launch command's own keys (`LaunchConfig`), split from the recipe overrides by the one
override parser (`swallow_train/overrides.py`).

    swallow-train launch stage=chain cluster=abci3 nodes=16 sft.nodes=8 rl.nodes=2 \
        group=gxx00000 model=qwen3_8b cpt.optim.lr=1e-5 submit=true

Launch keys: stage, cluster, nodes, submit, queue, group, walltime. `stage` is a stage of the
registry that has a job (cpt, sft, rl, quantize, eval, and the CPU jobs prepare, prepare-sft,
prepare-rl that prepare the data), a comma list in registry order, `chain` (cpt, sft, rl,
quantize and an eval job after each) or `all` (every stage); quantize and eval take 1 node.
`nodes`, `queue`, `group` and `walltime` may be scoped to one stage (`sft.nodes=8`);
`cluster.nodes=16` is the same as `nodes=16`. Every other argument is a recipe override:
`optim.lr=1e-5` for every stage, `cpt.train.train_steps=10` for one. Unknown recipe keys fail
when the recipe is composed, before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from swallow_train.cluster import LaunchError, walltime_seconds
from swallow_train.overrides import Override, OverrideError, check_claimed, for_stage
from swallow_train.overrides import parse as parse_overrides
from swallow_train.registry import STAGES, Kind, launchable

ORDER: tuple[str, ...] = launchable()
"""Every stage in the order a launch submits them (`stage=all` is all of them)."""
CHAIN: tuple[str, ...] = tuple(s for s in ORDER if STAGES[s].kind is not Kind.prepare)
"""The GPU stages in chain order (`stage=chain`): cpt, sft, rl, quantize, and eval, whose jobs
follow each of the others."""
STAGE_KEYS = ("nodes", "queue", "group", "walltime")
"""Launch keys that may be scoped to one stage, and the cluster field each one sets."""
LAUNCH_KEYS = ("stage", "cluster", "submit", *STAGE_KEYS)
_ALIASES = {f"cluster.{key}": key for key in STAGE_KEYS}
"""`cluster.nodes=16` is `nodes=16`: the launch key sets the cluster field."""
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
    items: list[Override] = field(default_factory=list)
    """The recipe overrides, unscoped (every stage whose recipe has the section) or scoped."""

    @property
    def overrides(self) -> list[str]:
        """Recipe overrides for every stage."""
        return [o.hydra for o in self.items if o.stage is None]

    @property
    def stage_overrides(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for o in self.items:
            if o.stage:
                out.setdefault(o.stage, []).append(o.hydra)
        return out

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
        spec = STAGES[stage]
        if spec.nodes is not None:
            settings.nodes = spec.nodes
        for key in STAGE_KEYS:
            value = getattr(settings, key)
            if value is not None:
                out.append(f"cluster.{key}={value}")
        return out + for_stage(self.items, stage, recipe=spec.recipe_name)


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
    found: dict[str, str] = {}
    common = StageSettings()
    per_stage: dict[str, StageSettings] = {}
    recipe_items: list[Override] = []
    try:
        items = parse_overrides(a for a in argv if a != "--dry-run")
    except OverrideError as exc:
        raise LaunchError(str(exc)) from None
    given: dict[tuple[str | None, str], str] = {}
    for o in items:
        name = _ALIASES.get(o.key, o.key)
        if name in LAUNCH_KEYS and o.prefix:
            raise LaunchError(f"{o.arg}: launch key {name} takes no Hydra prefix")
        if name == "nodes" and o.stage and STAGES[o.stage].nodes is not None:
            raise LaunchError(f"{o.arg}: the {o.stage} job runs on {STAGES[o.stage].nodes} node; "
                              "leave out its node count")
        if name in STAGE_KEYS:
            if (o.stage, name) in given:
                raise LaunchError(f"{o.arg}: {name} is given twice (also "
                                  f"{given[o.stage, name]!r})")
            given[o.stage, name] = o.arg
            target = per_stage.setdefault(o.stage, StageSettings()) if o.stage else common
            setattr(target, name, _setting(name, o.value or "", o.arg))
        elif name in LAUNCH_KEYS and o.stage is None:
            found[name] = o.value or ""
        elif name in LAUNCH_KEYS:
            raise LaunchError(f"{o.arg}: {name} applies to the whole launch, not to one stage")
        else:
            recipe_items.append(o)
    dry_run = "--dry-run" in argv
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
    stray = sorted((set(per_stage) | {o.stage for o in recipe_items if o.stage}) - set(stages))
    if stray:
        raise LaunchError(
            f"{', '.join(s + '.' for s in stray)}* arguments name a stage that stage="
            f"{found['stage']} does not launch"
        )
    if not _KEY.match(found["cluster"]):
        raise LaunchError(f"cluster={found['cluster']!r} is not a preset name")
    try:
        check_claimed(recipe_items, [STAGES[s].recipe_name for s in stages])
    except OverrideError as exc:
        raise LaunchError(str(exc)) from None
    return LaunchConfig(
        stages=stages, cluster=found["cluster"], submit=submit == "true", dry_run=dry_run,
        common=common, per_stage=per_stage, items=recipe_items,
    )
