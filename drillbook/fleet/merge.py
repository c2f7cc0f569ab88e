"""``drillbook report merge``: the shards' committed results become one run (FLEET.md §4.1–4.3).

The merge reads the plan and every commit, checks each committed file against
its SHA-256, and checks completeness against the plan: every work item exactly
once. A bin nobody committed becomes ``error`` scenarios ("shard 3/8 never
committed (member db-042: FLT-01)"), never a pass; a work item reported by two
shards, or by a shard it was not planned for, is a :class:`MergeError`.

The merged ``results.json`` is created first and create-only: a second merge
builds the same bytes (everything is sorted, nothing depends on who merges or
when) and finds it there; then junit.xml and report.html are re-rendered from
the same data, and the ledger gets one batch per run group (appended only when
the ledger holds nothing of that run id yet). So a merge that died half-way is
simply run again, and two merges append once.

Shard indexes in messages are the bins' 0-based indexes, as in the keys
(``shards/3.commit.json``), over the bin count: "shard 3/8".
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from checks.errors import DrillbookError
from checks.strict_json import loads_strict
from reports.results import RunResult, ScenarioResult

from . import junit_merge
from .plan import Plan
from .runs import MERGED, PLAN, Commit, MergeInputError, Runs, attempt_key, read_commits

if TYPE_CHECKING:
    from reports.ledger import Ledger

__all__ = ["MergeError", "MergeOutcome", "merge_group", "read_plan", "stand_in"]

_POLL_S = 1.0


class MergeError(DrillbookError):
    """The shards' results contradict the plan (an item twice, or one nobody planned)."""

    default_hint = ("the runs location holds results of another plan or was edited; merge a group "
                    "whose shards ran from its own plan.json")


@dataclass
class MergeOutcome:
    """What a merge produced: the run, where, and what the ledger got."""

    run: RunResult
    committed: int
    bins: int
    appended: int
    urls: dict[str, str] = field(default_factory=dict)
    earlier: bool = False  # results.json of an earlier merge with other content stands


def read_plan(runs: Runs) -> Plan:
    """The group's stored plan (a :class:`PlanError`, exit 2, when missing or malformed)."""
    from .plan import PlanError

    data = runs.get(PLAN)
    if data is None:
        raise PlanError(f"no plan at {runs.url(PLAN)}", url=runs.url(PLAN),
                        hint="make it with `drillbook plan --out <runs>/<group>/` first")
    plan = Plan.from_bytes(data, where=runs.url(PLAN))
    if plan.group != runs.group:
        # The merged run id (and the ledger's run_id) is the group: it must be this location's.
        raise PlanError(f"{runs.url(PLAN)} is the plan of group {plan.group!r}, not of {runs.group!r}",
                        url=runs.url(PLAN), hint="plan into this group's location (drillbook plan --out)")
    return plan


def stand_in(plan: Plan, member: str, ident: str, reason: str) -> ScenarioResult:
    """A work item that did not run, as an ``error`` scenario carrying ``reason``."""
    info = plan.scenarios.get(ident)
    name = info.name if info else ident
    feature = info.feature if info else "(unknown feature)"
    tags = [*(info.tags if info else (f"id:{ident}",)), f"member:{member}"]
    return ScenarioResult(
        nodeid=f"{feature}::{ident}[{member}]", feature=feature, feature_path=f"features/{feature}",
        scenario=name, tags=sorted(set(tags)), failure=reason, member=member,
    )


def shard_label(index: int, bins: int) -> str:
    return f"shard {index}/{bins}"


def _sort_key(scenario: ScenarioResult) -> tuple[str, str, str]:
    return (scenario.member or "", scenario.scenario_id or "", scenario.nodeid)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class _Shard:
    """One committed bin's verified files, or why they cannot be used."""

    commit: Commit
    run: RunResult | None = None
    junit: list[junit_merge.Element] = field(default_factory=list)
    problem: str | None = None


def _load_shard(runs: Runs, commit: Commit, label: str) -> _Shard:
    shard = _Shard(commit)
    files: dict[str, bytes] = {}
    for name in ("results.json", "junit.xml"):
        key = attempt_key(commit.index, commit.attempt, name)
        expected = commit.files.get(name)
        data = runs.get(key)
        if expected is None or data is None:
            shard.problem = f"{label} committed attempt {commit.attempt} without its {name}"
            return shard
        if _sha256(data) != expected:
            shard.problem = (f"{label}'s {name} of attempt {commit.attempt} does not match the SHA-256 "
                             "its commit names: changed after the commit")
            return shard
        files[name] = data
    try:
        # A repeated key is refused, never resolved to whichever came last (as RunResult.read does).
        shard.run = RunResult.from_dict(loads_strict(files["results.json"].decode("utf-8")))
        shard.junit = junit_merge.testcases(files["junit.xml"], where=runs.url(f"shards/{commit.index}"))
    except (ValueError, KeyError, TypeError, OverflowError, DrillbookError) as exc:
        shard.run = None
        shard.problem = f"{label}'s committed results cannot be read ({type(exc).__name__}: {exc})"
    return shard


def wait_for_commits(runs: Runs, plan: Plan, wait_s: float,
                     clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> dict[int, Commit]:
    """The commits of the plan's bins, waiting up to ``wait_s`` for all of them."""
    deadline = clock() + wait_s
    while True:
        commits = read_commits(runs, len(plan.bins))
        if len(commits) == len(plan.bins) or clock() >= deadline:
            return commits
        sleep(min(_POLL_S, max(0.0, deadline - clock())))


def build_merged(runs: Runs, plan: Plan, commits: dict[int, Commit]) -> tuple[RunResult, bytes]:
    """The merged run and its JUnit, from the plan and the commits: deterministic."""
    bins = len(plan.bins)
    owner = {(item.member, item.scenario): index for index, item in plan.items()}
    scenarios: list[ScenarioResult] = []
    suites: list[junit_merge.Suite] = []
    shard_runs: list[RunResult] = []
    details: dict[str, str] = {"bins": str(bins), "committed": f"{len(commits)}/{bins}"}
    for plan_bin in plan.bins:
        index = plan_bin.index
        label = shard_label(index, bins)
        suite = junit_merge.Suite(junit_merge.suite_name(index, bins), [])
        suites.append(suite)
        reported: set[tuple[str, str]] = set()
        commit = commits.get(index)
        shard = _load_shard(runs, commit, label) if commit is not None else None
        if shard is not None and shard.run is not None:
            shard_runs.append(shard.run)
            suite.cases.extend(shard.junit)
            for scenario in shard.run.scenarios:
                key = (scenario.member or "", scenario.scenario_id or "")
                planned = owner.get(key)
                if planned is None:
                    raise MergeError(f"{label} reported {scenario.display_id}, which the plan does not hold",
                                     url=runs.url())
                if planned != index:
                    raise MergeError(f"{label} reported {scenario.display_id}, planned for "
                                     f"{shard_label(planned, bins)}: a duplicate", url=runs.url())
                reported.add(key)
                scenario.tags = sorted({*scenario.tags, f"shard:{index}"})
                scenarios.append(scenario)
        if shard is not None:
            c = shard.commit
            details[f"shard {index:02d}"] = ", ".join(
                [f"attempt={c.attempt}", *(f"{k}={v}" for k, v in sorted(c.details.items()))])
        for item in plan_bin.items:
            if (item.member, item.scenario) in reported:
                continue
            if shard is None:
                reason = f"{label} never committed (member {item.member}: {item.scenario})"
            elif shard.problem is not None:
                reason = f"{shard.problem} (member {item.member}: {item.scenario})"
            else:
                reason = f"{label} committed no result for member {item.member}: {item.scenario}"
            missing = stand_in(plan, item.member, item.scenario, reason)
            missing.tags = sorted({*missing.tags, f"shard:{index}"})
            scenarios.append(missing)
            suite.cases.append(junit_merge.error_case(
                missing.feature, f"{missing.display_id} {missing.scenario}", reason))
    scenarios.sort(key=_sort_key)
    starts = [r.started_at for r in shard_runs if r.started_at]
    ends = [r.finished_at for r in shard_runs if r.finished_at]
    first = shard_runs[0] if shard_runs else None
    run = RunResult(
        run_id=plan.group, started_at=min(starts) if starts else "", finished_at=max(ends) if ends else "",
        drillbook_version=plan.drillbook_version,
        user=", ".join(sorted({r.user for r in shard_runs if r.user})),
        host=", ".join(sorted({r.host for r in shard_runs if r.host})),
        environment=first.environment if first else "", environment_details=details,
        config_path=plan.config, command=f"drillbook run --plan {runs.url(PLAN)}",
        strict=any(r.strict for r in shard_runs), scenarios=scenarios,
    )
    return run, junit_merge.merge(suites)


def results_bytes(run: RunResult) -> bytes:
    """results.json as ``RunResult.write`` writes it."""
    return (json.dumps(run.to_dict(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def merge_group(runs: Runs, *, ledger: Ledger | None, wait_s: float = 0.0,
                progress: Callable[[str], None] | None = None) -> MergeOutcome:
    """Merge the group at ``runs``: results.json (create-only), junit.xml, report.html, one ledger batch."""
    from reports.html import render_html_report

    plan = read_plan(runs)
    commits = wait_for_commits(runs, plan, wait_s)
    run, junit = build_merged(runs, plan, commits)
    data = results_bytes(run)
    earlier = False
    if not runs.put_create_only("results.json", data):
        existing = runs.get("results.json") or b""
        if existing != data:
            # An earlier merge (say, before a retried shard committed) stands: results are create-only.
            earlier = True
            try:
                run = RunResult.from_dict(json.loads(existing))
            except (ValueError, KeyError, TypeError) as exc:
                raise MergeInputError(f"{runs.url('results.json')} cannot be read: {exc}",
                                      url=runs.url("results.json")) from exc
            if progress is not None:
                progress(f"an earlier merge's {runs.url('results.json')} stands (results are create-only)")
    if not earlier or runs.get("junit.xml") is None:
        runs.put("junit.xml", junit)
    runs.put("report.html", render_html_report(run, history=_report_history(runs, plan)).encode("utf-8"))
    appended = append_run_once(ledger, run) if ledger is not None else 0
    return MergeOutcome(run=run, committed=len(commits), bins=len(plan.bins), appended=appended,
                        urls={name: runs.url(name) for name in MERGED}, earlier=earlier)


def _report_history(runs: Runs, plan: Plan) -> list[RunResult]:
    """Earlier merged runs for the report's charts: those the plan's estimates read (recorded in
    plan.json), so a second merge renders the same bytes even after later groups were merged."""
    from reports.html.trends import RUNS_SHOWN

    from .planner import runs_named

    recorded = plan.history.get("runs", [])
    ids = [str(r) for r in recorded][-(RUNS_SHOWN - 1):] if isinstance(recorded, list) else []
    return runs_named(runs, ids)


def append_run_once(ledger: Ledger, run: RunResult) -> int:
    """The merge's one ledger call: one batch per run id (reports/ledger_runs.py checks the ledger
    for the run id and appends in one step), so a second merge appends nothing. Returns the count."""
    from reports.ledger_runs import append_run_once as append_once

    return len(append_once(ledger, run))
