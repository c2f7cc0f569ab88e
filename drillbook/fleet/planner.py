"""The plan's inputs read from the world: inventory, features, earlier merged runs, backup sizes.

:mod:`drillbook.fleet.plan` is a pure function of :class:`PlanInputs`; this module gathers them
(and the shards use :func:`selected_features` to check the features digest the same way).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checks.errors import ConfigError
from reports.results import RunResult

from .. import __version__
from .inventory import Fleet, Member, load_fleet, select_members
from .plan import History, Plan, PlanError, PlanInputs, make_plan, read_features
from .runs import _GROUP, PLAN, DirRuns, Runs, S3Runs
from .scenarios import ScenarioRef, list_scenarios

MAX_HISTORY_RUNS = 20  # the latest merged runs the estimates read: enough for a p75, bounded reads


@dataclass(frozen=True)
class Selection:
    """What a plan covers: --cadence, --tags, --members."""

    cadence: str | None = None
    tags: str | None = None
    members: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"cadence": self.cadence, "tags": self.tags, "members": self.members}


def default_features() -> list[Path]:
    """The fleet's features without ``--features``: ``features/fleet`` of the suite (``./features``
    or the repository's) when it exists, else what a plain ``drillbook run`` uses (packs left out).

    Planner and shards both call this, so the features digest they compare is over the same files.
    """
    from ..packs import without_packs
    from ..runner import _default_features

    suite = _default_features()
    if (suite / "fleet").is_dir():
        return [(suite / "fleet").resolve()]
    return [p.resolve() for p in without_packs(suite)]


def selected_features(features: Sequence[Path],
                      selection: Selection) -> tuple[list[ScenarioRef], dict[str, bytes]]:
    """The selected scenarios and the bytes of the feature files that hold them."""
    for path in features:
        if not path.exists():
            raise ConfigError(f"features path {path} does not exist", key="--features",
                              hint="pass --features DIR with .feature files in it")
    refs = list_scenarios(list(features), selection.cadence, selection.tags)
    return refs, read_features({r.feature for r in refs})


def build_plan(*, config: Path, features: Sequence[Path], selection: Selection, group: str, bins: int,
               parallel: int | None = None, host_cap: int | None = None,
               history: History | None = None, config_label: str | None = None) -> tuple[Plan, Fleet]:
    """Everything a plan needs, read, then :func:`make_plan` (deterministic from here on)."""
    fleet = load_fleet(config)
    members = select_members(fleet, selection.members)
    refs, feature_bytes = selected_features(features, selection)
    plan = make_plan(PlanInputs(
        group=group, drillbook_version=__version__, inventory_digest=fleet.digest, members=members,
        scenarios=refs, feature_bytes=feature_bytes, selection=selection.as_dict(), bins=bins,
        parallel=parallel, host_cap=host_cap if host_cap is not None else fleet.host_cap,
        config=config_label if config_label is not None else str(config),
        history=history or History(), sizes=backup_sizes(members),
    ))
    return plan, fleet


def backup_sizes(members: Sequence[Member]) -> dict[str, int]:
    """Each member's newest backup size in bytes, from its directory stores (the cold-start prior).

    S3 stores are not listed here: a listing per member per plan is slow at fleet size, and
    their durations come from history after the first run.
    """
    sizes: dict[str, int] = {}
    for member in members:
        for target in member.targets.values():
            if target.get("kind") != "directory" or not isinstance(target.get("path"), str):
                continue
            path = Path(target["path"])
            if "${" in str(path) or not path.is_dir():
                continue
            with contextlib.suppress(OSError):
                files = [p for p in path.iterdir()
                         if p.is_file() and not p.name.endswith((".sha256", ".md5"))]
                if files:
                    newest = max(files, key=lambda p: (p.stat().st_mtime, p.name))
                    sizes[member.name] = sizes.get(member.name, 0) + newest.stat().st_size
    return sizes


def earlier_history(runs: Runs, *, limit: int = MAX_HISTORY_RUNS) -> History:
    """Durations from the merged results.json of the other groups beside this one."""
    found: list[RunResult] = []
    for data in _sibling_results(runs, limit):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            run = RunResult.from_dict(json.loads(data))
            if any(s.member for s in run.scenarios):
                found.append(run)
    return History.of(found)


def runs_named(runs: Runs, run_ids: Sequence[str]) -> list[RunResult]:
    """The merged results of the named sibling groups (those that are still there and readable)."""
    found = []
    for run_id in run_ids:
        # Ids come from plan.json (outside input): a group name only, never "..", never a path.
        data = _sibling(runs).get(f"{run_id}/results.json") if _GROUP.fullmatch(run_id) else None
        if data is None:
            continue
        with contextlib.suppress(ValueError, KeyError, TypeError):
            found.append(RunResult.from_dict(json.loads(data)))
    return found


def _sibling(runs: Runs) -> Runs:
    """The runs location one level up: the groups beside this one."""
    if isinstance(runs, DirRuns):
        return DirRuns("parent", runs.root.parent)
    assert isinstance(runs, S3Runs)
    parent = runs.prefix.rstrip("/").rpartition("/")[0]
    return S3Runs("parent", runs.bucket, parent + "/" if parent else "", runs.client, endpoint=runs.endpoint)


def _sibling_results(runs: Runs, limit: int) -> list[bytes]:
    if isinstance(runs, DirRuns):
        folder = runs.root.parent
        # Not `latest` (a symbolic link to one of them): each run counts once.
        paths = sorted((p for p in folder.glob("*/results.json")
                        if p.parent.name != runs.group and not p.parent.is_symlink()),
                       key=lambda p: p.parent.name)[-limit:]
        out = []
        for path in paths:
            with contextlib.suppress(OSError):
                out.append(path.read_bytes())
        return out
    if isinstance(runs, S3Runs):
        parent = runs.prefix.rstrip("/").rpartition("/")[0]
        parent = parent + "/" if parent else ""
        sibling = S3Runs("parent", runs.bucket, parent, runs.client, endpoint=runs.endpoint)
        keys = [k for k in sibling.list("") if k.count("/") == 1 and k.endswith("/results.json")
                and not k.startswith(runs.group + "/")]
        return [d for k in sorted(keys)[-limit:] if (d := sibling.get(k)) is not None]
    return []


def store_plan(runs: Runs, plan: Plan, progress: Callable[[str], None] | None = None) -> Plan:
    """Write plan.json create-only; when another planner won, its plan is the plan."""
    if runs.put_create_only(PLAN, plan.to_bytes()):
        return plan
    existing = runs.get(PLAN)
    if existing is None:
        raise PlanError(f"{runs.url(PLAN)} exists but cannot be read", url=runs.url(PLAN))
    stored = Plan.from_bytes(existing, where=runs.url(PLAN))
    if progress is not None and existing != plan.to_bytes():
        progress(f"{runs.url(PLAN)} was written first by another planner: using it")
    return stored


def config_s3_options(config: Path | None) -> dict[str, str]:
    """The ``[ledger]`` S3 options of a config (endpoint, region, keys): how the runs location is reached."""
    if config is None:
        return {}
    from drills.config import load_config

    return dict(load_config(config).ledger_s3)


def ledger_for(runs: Runs, config: Path | None) -> Any:
    """The ledger the merge appends to: ``[ledger] url`` of the config, else beside the run groups
    (``<runs>/ledger.jsonl`` for a directory, ``s3://bucket/<runs>/ledger/`` for S3)."""
    from ..audit import ledger_at, s3_ledger

    options: Mapping[str, str] = {}
    if config is not None:
        from drills.config import load_config

        loaded = load_config(config)
        options = loaded.ledger_s3
        if loaded.ledger_url is not None:
            return ledger_at(loaded.ledger_url, runs_parent_dir(runs), config, dict(options))
    if isinstance(runs, S3Runs):
        parent = runs.prefix.rstrip("/").rpartition("/")[0]
        return s3_ledger(f"s3://{runs.bucket}/{parent + '/' if parent else ''}ledger/", dict(options))
    return ledger_at(None, runs_parent_dir(runs))


def runs_parent_dir(runs: Runs) -> Path:
    return runs.root.parent if isinstance(runs, DirRuns) else Path("out")
