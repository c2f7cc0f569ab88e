"""The fleet overview: a member x drill matrix of outcomes and, per member, RTO and backup-age charts.

Shown first whenever any scenario of the run ran for a fleet member. One row per member,
worst first: the outcome of each drill (scenario id) as a cell with symbol and word (never
colour alone) linking to its card, then the restore duration and the backup age of the
last runs (:mod:`reports.html.trends`) as sparklines against their limits
(:mod:`reports.html.sparkline`), with the last value and its share of the limit in words.
Members whose last value is near the limit sort before those with room to spare, so a
restore creeping towards its RTO is read before it fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from checks.backups import short_duration
from checks.verdict import Outcome, worst
from reports.results import RunResult, ScenarioResult

from .outcomes import DISPLAY_ORDER, MEANINGS, Badge, badge, r
from .scenarios import anchor_of
from .sparkline import Sparkline, scale
from .trends import Key, Measurement, Metric, Series, chronological, member_of, series, trends_of

# A last value at or above this share of its limit is flagged "near the limit".
NEAR_LIMIT = 0.8
# Short words in the matrix cells: the symbol and these fit a narrow column.
_SHORT = {
    Outcome.PASSED: "pass",
    Outcome.WARNING: "warn",
    Outcome.FAILED: "fail",
    Outcome.ERROR: "error",
    Outcome.NOT_APPLICABLE: "n/a",
    Outcome.WAIVED: "waived",
}
_SEVERITY = (Outcome.ERROR, Outcome.FAILED, Outcome.WARNING, Outcome.WAIVED, Outcome.NOT_APPLICABLE,
             Outcome.PASSED)
_METRIC_NAMES = {Metric.RESTORE: "restore duration", Metric.BACKUP_AGE: "backup age"}


@dataclass(frozen=True)
class Cell:
    """One member x drill outcome; ``badge`` None when the member did not run that drill."""

    badge: Badge | None
    short: str
    anchor: str
    label: str


@dataclass(frozen=True)
class Trend:
    """One chart: a drill's restore duration or backup age for a member, and the same in words."""

    drill: str
    chart: Sparkline
    label: str
    last: str
    ratio: float | None
    near: bool
    over: bool


@dataclass(frozen=True)
class MemberRow:
    """A member: its worst outcome, one cell per drill, and its charts."""

    name: str
    outcome: Outcome
    worst: Badge
    failing: int
    cells: tuple[Cell, ...]
    restore: tuple[Trend, ...]
    backup_age: tuple[Trend, ...]


@dataclass(frozen=True)
class FleetCount:
    """How many member x drill cells, and how many members (by their worst), ended with one outcome."""

    badge: Badge
    meaning: str
    cells: int
    members: int


@dataclass(frozen=True)
class DrillColumn:
    """A matrix column: the scenario id and the scenario's name."""

    ident: str
    name: str


@dataclass(frozen=True)
class FleetView:
    """Everything the fleet overview shows."""

    sentence: str
    drills: tuple[DrillColumn, ...]
    rows: tuple[MemberRow, ...]
    counts: tuple[FleetCount, ...]
    runs_shown: int
    near_limit: int
    outside: int
    # A column of charts is left out when no member has one (a fleet with no restore drill).
    restore_column: bool = True
    backup_age_column: bool = True


def fleet_view(run: RunResult, history: Sequence[RunResult] = ()) -> FleetView | None:
    """The overview of a fleet run, or None when no scenario ran for a member (the report is unchanged)."""
    placed: dict[Key, list[tuple[int, ScenarioResult]]] = {}
    names: dict[str, str] = {}
    outside = 0
    for index, scenario in enumerate(run.scenarios, start=1):
        member, drill = member_of(scenario), scenario.scenario_id
        if member is None:
            outside += 1
            continue
        drill = drill or "no id"
        placed.setdefault((member, drill), []).append((index, scenario))
        names.setdefault(drill, scenario.scenario)
    if not placed:
        return None
    drills = sorted(names)
    members = sorted({m for m, _ in placed})
    runs = chronological(trends_of(run), (trends_of(h) for h in history))
    charts = {metric: series(runs, placed, metric) for metric in Metric}
    rows = [_row(member, drills, placed, charts, strict=run.strict) for member in members]
    rows.sort(key=_worst_first)
    counts = _counts(placed, rows, strict=run.strict)
    near = sum(1 for row in rows if any(t.near or t.over for t in (*row.restore, *row.backup_age)))
    failing = sum(1 for row in rows if row.worst.counts_as_fail)
    sentence = (f"{len(members)} member{'s' if len(members) != 1 else ''} \u00d7 {len(drills)} "
                f"drill{'s' if len(drills) != 1 else ''}: {failing} member{'s' if failing != 1 else ''} "
                f"with a drill that did not pass, {near} near or over a limit.")
    return FleetView(
        sentence=r(sentence),
        drills=tuple(DrillColumn(r(d), r(names[d])) for d in drills),
        rows=tuple(rows), counts=counts, runs_shown=len(runs), near_limit=near, outside=outside,
        restore_column=any(row.restore for row in rows),
        backup_age_column=any(row.backup_age for row in rows),
    )


def _row(member: str, drills: Sequence[str], placed: Mapping[Key, list[tuple[int, ScenarioResult]]],
         charts: Mapping[Metric, Mapping[Key, Series]], *, strict: bool) -> MemberRow:
    cells: list[Cell] = []
    outcomes: list[Outcome] = []
    for drill in drills:
        found = placed.get((member, drill), [])
        if not found:
            cells.append(Cell(None, "not run", "", r(f"{drill} on {member}: not run")))
            continue
        outcome = worst([s.outcome for _, s in found])
        assert outcome is not None  # found is not empty
        outcomes.append(outcome)
        shown = badge(outcome, strict=strict)
        # Several scenarios of one id (examples of an outline): the cell links to the worst one.
        index = next(i for i, s in found if s.outcome is outcome)
        cells.append(Cell(shown, _SHORT[outcome], anchor_of(index),
                          r(f"{drill} on {member}: {shown.label}")))
    overall = worst(outcomes)
    assert overall is not None  # every member has at least one placed scenario
    return MemberRow(
        name=r(member),
        outcome=overall,
        worst=badge(overall, strict=strict),
        failing=sum(1 for o in outcomes if o.counts_as_fail(strict=strict)),
        cells=tuple(cells),
        restore=_trends(member, drills, charts[Metric.RESTORE]),
        backup_age=_trends(member, drills, charts[Metric.BACKUP_AGE]),
    )


def _trends(member: str, drills: Sequence[str], found: Mapping[Key, Series]) -> tuple[Trend, ...]:
    return tuple(_trend(found[(member, d)]) for d in drills if (member, d) in found)


def _seconds(value: float) -> str:
    """``7m 48s``, ``26h``: the short form the feature sentences use, for a narrow column."""
    try:
        return short_duration(timedelta(seconds=value))
    except OverflowError:
        return f"{value:g}s"


def _percent(ratio: float, *, over: bool) -> str:
    """The share of the limit; never "100%" for a value over it, nor for one under it."""
    shown = math.ceil(ratio * 100) if over else math.floor(ratio * 100)
    return f"{shown}%"


def _trend(line: Series) -> Trend:
    limit = line.limit_s
    chart = scale([m.seconds if m is not None else None for m in line.values], limit)
    last: Measurement | None = line.last
    ratio = last.seconds / limit if last is not None and limit is not None and limit > 0 else None
    over = last is not None and limit is not None and last.seconds > limit
    if last is None:
        text = "not measured in this run"
    else:
        text = ("at least " if last.at_least else "") + _seconds(last.seconds)
        if limit is not None:
            text += f" of {_seconds(limit)}"
            if ratio is not None:
                text += f" ({_percent(ratio, over=over)})"
    measured = sum(1 for m in line.values if m is not None)
    what = _METRIC_NAMES[line.metric]
    label = (f"{what} of {line.drill} on {line.member} over the last {len(line.values)} runs "
             f"({measured} measured): {text}"
             + ("" if limit is not None else ", no limit recorded"))
    return Trend(drill=r(line.drill), chart=chart, label=r(label), last=r(text), ratio=ratio,
                 near=ratio is not None and not over and ratio >= NEAR_LIMIT, over=over)


def _worst_first(row: MemberRow) -> tuple[int, int, float, str]:
    """Worst outcome, then most failing drills, then closest to a limit, then by name."""
    closest = max((t.ratio for t in (*row.restore, *row.backup_age) if t.ratio is not None), default=0.0)
    return _SEVERITY.index(row.outcome), -row.failing, -closest, row.name


def _counts(placed: Mapping[Key, list[tuple[int, ScenarioResult]]], rows: Sequence[MemberRow], *,
            strict: bool) -> tuple[FleetCount, ...]:
    cells = dict.fromkeys(Outcome, 0)
    for found in placed.values():
        outcome = worst([s.outcome for _, s in found])
        if outcome is not None:
            cells[outcome] += 1
    members = {o: sum(1 for row in rows if row.outcome is o) for o in Outcome}
    return tuple(FleetCount(badge(o, strict=strict), MEANINGS[o], cells[o], members[o])
                 for o in DISPLAY_ORDER)
