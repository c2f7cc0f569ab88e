"""sqitch projects: ``sqitch.plan`` orders changes; ``deploy/`` is up, ``revert/`` down, ``verify/`` checks.

The plan is read as sqitch 1.3 reads it (``App::Sqitch::Plan::_parse``): pragmas up to the
first blank line (``%syntax-version``, ``%project`` — required — and ``%uri``), then one
change or tag a line::

    users [appschema flipr_ext:roles !legacy] 2024-01-02T03:04:05Z Marge <m@example.com> # note
    @v1.0 2024-01-02T03:05:00Z Marge <m@example.com> # a tag names the change above it

A change name seen again after a tag is a *rework*: the older instance's scripts are
``deploy/name@tag.sql`` (the first of its rework tags that exists, as sqitch looks it up),
the newest keeps ``deploy/name.sql``. Dependencies are checked as sqitch checks them when it
loads a plan: a ``requires`` of this project must name a change earlier in the plan
(``change@tag`` one before that tag); a requirement of another project (``proj:change``) is
left to :func:`unmet_requirements`, which the caller asks once the folders given before this
one are known. A ``conflicts`` entry naming a change of this plan deployed before it is an
error, as ``sqitch deploy`` refuses it.

Each change is one :class:`Migration`: version = its 1-based position in the plan,
description = its name (``name@tag`` for an older reworked instance), ``verify`` = its
verify script when there is one. ``history_id`` is the change ID sqitch records in
``sqitch.changes.change_id``: the SHA-1 of the change's plan entry (project, uri, name,
parent change's ID, planner, date, dependencies, note), computed as ``Plan/Change.pm``
does. The name alone cannot tell the two deployed instances of a reworked change apart
(both rows say ``change = 'name'``), nor one project's ``users`` from another's in a shared
registry; the ID does, and it is what sqitch itself matches deployed changes by.

Scripts run as ``psql -f`` runs them for sqitch: statement by statement in autocommit
unless the script holds its own ``BEGIN``/``COMMIT`` (sqitch's templates do).

``sqitch.conf`` is honoured for ``top_dir``, ``plan_file``, ``deploy_dir``, ``revert_dir``,
``verify_dir`` and ``extension`` (``[core]``, overridden by ``[engine "pg"]``); every path
must stay inside the folder. A project whose ``core.engine`` is not ``pg`` is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..model import LayoutError, Migration, MigrationSet, Part
from .common import Listing, read_text
from .sqitch_plan import Change, Dependency, Plan, canonical_uri, change_id, parse_plan, plan_error

__all__ = ["NAME", "Change", "Dependency", "Plan", "canonical_uri", "change_id", "detect", "load",
           "parse_plan", "requirements", "unmet_requirements"]

NAME = "sqitch"

PLAN = "sqitch.plan"
CONF = "sqitch.conf"
# -- the project on disk ---------------------------------------------------------------

@dataclass(frozen=True)
class Project:
    """Where a project's plan and scripts are (``sqitch.conf``, else sqitch's defaults)."""

    plan_file: Path
    deploy_dir: Path
    revert_dir: Path
    verify_dir: Path
    extension: str


def detect(listing: Listing) -> bool:
    """A folder with ``sqitch.plan`` (or ``sqitch.conf``) is a sqitch project."""
    return any(path.name in (PLAN, CONF) for path in listing.files)


def read_conf(text: str, path: Path) -> dict[str, str]:
    """The git-config style ``sqitch.conf`` as ``section.key`` → value (``engine.pg.top_dir``)."""
    values: dict[str, str] = {}
    section = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        header = re.match(r'^\[\s*([A-Za-z0-9.\-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]$', line)
        if header:
            section = header[1].lower() + (f".{header[2]}" if header[2] is not None else "")
            continue
        item = re.match(r"^([A-Za-z][A-Za-z0-9\-_]*)\s*(?:=\s*(.*))?$", line)
        if not item or not section:
            raise LayoutError(f"{path}:{number}: cannot read {raw.strip()!r}", file=str(path),
                              line=number, hint="sqitch.conf is git-config style: [section] and key = value")
        value = re.sub(r"\s+[#;].*$", "", item[2] or "true").strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        values[f"{section}.{item[1].lower()}"] = value
    return values


def locate(directory: Path) -> Project:
    """Resolve the plan and script folders, refusing anything outside ``directory``."""
    conf_path = directory / CONF
    conf: dict[str, str] = {}
    if conf_path.is_file():
        conf = read_conf(read_text(conf_path), conf_path)
    engine = conf.get("core.engine", "pg")
    if engine != "pg":
        raise LayoutError(f"{conf_path}: core.engine is {engine!r}; drillbook replays sqitch "
                          "projects for PostgreSQL (engine pg)", file=str(conf_path),
                          hint="point drillbook at a project whose engine is pg")

    def setting(key: str) -> str | None:
        return conf.get(f"engine.pg.{key}") or conf.get(f"core.{key}")

    def inside(value: str, key: str) -> Path:
        path = (directory / value).resolve()
        if path != directory and directory not in path.parents:
            raise LayoutError(f"{conf_path}: {key} = {value} points outside {directory}",
                              file=str(conf_path), hint="keep the plan and scripts inside the folder given")
        return path

    top = inside(setting("top_dir") or ".", "top_dir")
    plan = inside(setting("plan_file") or str((top / PLAN).relative_to(directory)), "plan_file")
    dirs = [inside(setting(f"{kind}_dir") or str((top / kind).relative_to(directory)), f"{kind}_dir")
            for kind in ("deploy", "revert", "verify")]
    extension = (setting("extension") or "sql").lstrip(".")
    return Project(plan, dirs[0], dirs[1], dirs[2], extension)


def read_plan(directory: Path) -> tuple[Project, Plan]:
    """Locate and parse a project's plan."""
    project = locate(directory)
    if not project.plan_file.is_file():
        raise LayoutError(f"{directory}: no plan file {project.plan_file.name}",
                          directory=str(directory), hint="run drillbook on the folder holding sqitch.plan")
    return project, parse_plan(read_text(project.plan_file), project.plan_file)


def _script_name(change: Change, project: Project) -> list[str]:
    """``Change::path_segments``: ``name.sql``, or ``name@tag.sql`` for an older reworked one."""
    *parents, base = change.name.split("/")
    ext = f".{project.extension}"
    if not change.rework_tags:
        return [*parents, base + ext]
    names = [f"{base}@{tag}{ext}" for tag in change.rework_tags]
    found = next((n for n in names if project.deploy_dir.joinpath(*parents, n).exists()), names[0])
    return [*parents, found]


def load(directory: Path) -> MigrationSet:
    """The changes of the plan, in plan order, with their deploy, revert and verify scripts."""
    project, plan = read_plan(directory)
    deployed_before: dict[str, int] = {}
    migrations: list[Migration] = []
    for position, change in enumerate(plan.changes, 1):
        for dep in change.conflicts:
            if dep.project not in (None, plan.project) or dep.id is not None:
                continue
            if (dep.change or f"@{dep.tag}") in deployed_before:
                raise plan_error(plan.path, change.line, f'change "{change.name}" conflicts with '
                             f'"{dep.key}", which the plan deploys before it (sqitch refuses this)')
            if not _planned(plan, dep):
                raise plan_error(plan.path, change.line, f'change "{change.name}" conflicts with '
                             f'"{dep.key}", which is not in the plan (sqitch cannot find it)')
        segments = _script_name(change, project)
        deploy = project.deploy_dir.joinpath(*segments)
        if not deploy.is_file():
            shown = deploy.relative_to(directory)
            raise plan_error(plan.path, change.line, f'change "{change.name}" has no deploy script {shown}')
        revert = project.revert_dir.joinpath(*segments)
        verify = project.verify_dir.joinpath(*segments)
        label = change.name
        if change.rework_tags:
            label = segments[-1].removesuffix(f".{project.extension}").rsplit("/", 1)[-1]
            label = "/".join([*change.name.split("/")[:-1], label])
        migrations.append(Migration(
            version=str(position), description=label,
            up=Part(deploy, transactional=False),
            down=Part(revert, transactional=False) if revert.is_file() else None,
            verify=Part(verify) if verify.is_file() else None,
            history_id=change.id))
        deployed_before[change.name] = position
        for tag in change.tags:
            deployed_before[f"@{tag}"] = position
    if not migrations:
        raise LayoutError(f"{plan.path}: the plan has no changes", file=str(plan.path),
                          hint="add a change with `sqitch add`")
    return MigrationSet(directory, NAME, tuple(migrations), (directory,), ordinal_versions=True)


def _planned(plan: Plan, dep: Dependency) -> bool:
    if dep.change is not None and all(c.name != dep.change for c in plan.changes):
        return False
    return dep.tag is None or any(dep.tag in c.tags for c in plan.changes)


# -- requirements across projects --------------------------------------------------------

def requirements(directory: Path) -> list[str]:
    """This project's requirements of other projects, as written (``proj:change``)."""
    _, plan = read_plan(directory)
    return [dep.text for _, dep in plan.external_requirements()]


def unmet_requirements(migration_set: MigrationSet, earlier_sets: Sequence[MigrationSet]) -> list[str]:
    """Requirements of other projects that no sqitch folder loaded before this one satisfies.

    ``flipr_ext:roles`` is met when an earlier folder is the project ``flipr_ext`` and plans
    ``roles`` (``roles@tag``: before that tag; ``@tag``: the tag exists; an ID: a change with
    that ID). Each unmet one is described with the plan line that requires it.
    """
    if migration_set.layout != NAME:
        return []
    _, plan = read_plan(migration_set.directory)
    others: dict[str, Plan] = {}
    for earlier in earlier_sets:
        if earlier.layout == NAME:
            _, loaded = read_plan(earlier.directory)
            others[loaded.project] = loaded
    unmet = []
    for change, dep in plan.external_requirements():
        assert dep.project is not None
        provider = others.get(dep.project)
        if provider is None:
            reason = f"project {dep.project} was not given before {plan.project}"
        elif _satisfies(provider, dep):
            continue
        else:
            reason = f"project {dep.project} ({provider.path}) plans no {dep.key}"
        unmet.append(f"{plan.path.name}:{change.line}: {change.name} requires {dep.text}: {reason}")
    return unmet


def _satisfies(plan: Plan, dep: Dependency) -> bool:
    if dep.id is not None:
        return any(c.id == dep.id for c in plan.changes)
    if dep.change is None:
        return any(dep.tag in c.tags for c in plan.changes)
    for index, change in enumerate(plan.changes):
        if change.name != dep.change:
            continue
        if dep.tag is None or any(dep.tag in c.tags for c in plan.changes[index:]):
            return True
    return False
