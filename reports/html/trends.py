"""Restore durations and backup ages per (member, drill) across runs: what the fleet charts plot.

Where the numbers live in ``results.json`` (written by ``steps/backup.py`` and ``checks/backups.py``):

- **restore duration (RTO)**: the ``restore.rto`` verdict. ``measured`` is the duration in
  seconds (a ``timedelta`` serialised by :func:`checks.verdict.jsonable`); the limit is the
  evidence's ``limit_s`` (written since issue 14) and, in results written before it, the
  ``expected`` text ``"<= 30m 00s"`` (:func:`checks.verdict.format_duration`), parsed back.
  A scenario without an RTO sentence still has ``restore.completed``, whose ``measured`` is the
  same duration (download + restore + first query, no limit). A restore cut off at its
  deadline has no ``restore.rto``: its ``restore.completed`` verdict is failed with
  ``evidence.error == "RestoreTimedOut"`` and ``evidence.elapsed_s``, plotted as a point that
  is at least that long.
- **backup age (RPO)**: the ``backup.freshness`` verdict. ``measured`` is the age in seconds
  (negative for a backup dated in the future); the limit is ``evidence.max_age_s``.

Reports never run checks: this only reads recorded verdicts.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from checks.durations import parse_duration
from checks.verdict import Outcome, Verdict
from reports.results import RunResult, ScenarioResult

RTO_CHECK = "restore.rto"
RESTORE_CHECK = "restore.completed"
AGE_CHECK = "backup.freshness"
MEMBER_TAG = "member:"
TIMED_OUT = "RestoreTimedOut"
_READ = frozenset({RTO_CHECK, RESTORE_CHECK, AGE_CHECK})
# How many runs a chart shows: this run and the ones before it.
RUNS_SHOWN = 12


class Metric(enum.StrEnum):
    """What a fleet chart plots."""

    RESTORE = "restore"
    BACKUP_AGE = "backup_age"


@dataclass(frozen=True)
class Measurement:
    """One recorded value in seconds and the limit it was held to (None when none was recorded).

    ``at_least`` marks a restore cut off at its deadline: the real duration is longer.
    """

    seconds: float
    limit_s: float | None
    at_least: bool = False


def member_of(scenario: ScenarioResult) -> str | None:
    """The fleet member a scenario ran for: ``ScenarioResult.member``, else its ``member:<name>`` tag."""
    if scenario.member:
        return scenario.member
    # Results written before ScenarioResult grew the field still carry the tag.
    for tag in scenario.tags:
        if tag.startswith(MEMBER_TAG) and len(tag) > len(MEMBER_TAG):
            return tag[len(MEMBER_TAG):]
    return None


def limit_from_expected(expected: object) -> float | None:
    """Seconds from an ``expected`` text such as ``"<= 30m 00s"`` or ``"<= 26h"``; None for anything else."""
    if not isinstance(expected, str):
        return None
    text = expected.strip()
    if not text.startswith("<="):
        return None
    try:
        seconds = parse_duration(text[2:]).total_seconds()
    except (ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) else None


def _number(value: object) -> float | None:
    """Seconds from a recorded value: a finite JSON number (never a bool), or a ``timedelta``.

    A run read back from ``results.json`` holds numbers; one handed over in memory by the
    plugin or the merge may still hold the ``timedelta`` the check measured.
    """
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _evidence(verdict: Verdict) -> Mapping[str, Any]:
    return verdict.evidence if isinstance(verdict.evidence, Mapping) else {}


def measure(scenario: ScenarioResult, metric: Metric) -> Measurement | None:
    """What ``scenario`` recorded for ``metric``, or None when it recorded nothing usable."""
    return _measure_all(scenario).get(metric)


def _measure_all(scenario: ScenarioResult) -> dict[Metric, Measurement]:
    """Every metric ``scenario`` recorded, from one look at its verdicts (the first of an id counts)."""
    by_id: dict[str, Verdict] = {}
    for verdict in scenario.verdicts:
        if verdict.id in _READ:
            by_id.setdefault(verdict.id, verdict)
    found: dict[Metric, Measurement] = {}
    if not by_id:
        return found
    age = by_id.get(AGE_CHECK)
    if age is not None and (seconds := _number(age.measured)) is not None:
        found[Metric.BACKUP_AGE] = Measurement(seconds, _number(_evidence(age).get("max_age_s")))
    restore = _restore(by_id)
    if restore is not None:
        found[Metric.RESTORE] = restore
    return found


def _restore(by_id: Mapping[str, Verdict]) -> Measurement | None:
    rto = by_id.get(RTO_CHECK)
    if rto is not None and (seconds := _number(rto.measured)) is not None:
        limit = _number(_evidence(rto).get("limit_s"))
        return Measurement(seconds, limit if limit is not None else limit_from_expected(rto.expected))
    restore = by_id.get(RESTORE_CHECK)
    if restore is None:
        return None
    evidence = _evidence(restore)
    if evidence.get("error") == TIMED_OUT and (elapsed := _number(evidence.get("elapsed_s"))) is not None:
        return Measurement(elapsed, None, at_least=True)
    seconds = _number(restore.measured)
    return Measurement(seconds, None) if seconds is not None and restore.outcome is Outcome.PASSED else None


@dataclass(frozen=True)
class Series:
    """One (member, drill, metric) across runs, oldest first; None where a run recorded nothing."""

    member: str
    drill: str
    metric: Metric
    values: tuple[Measurement | None, ...]

    @property
    def limit_s(self) -> float | None:
        """The limit of the latest run that recorded one: the line the chart draws."""
        return next((m.limit_s for m in reversed(self.values) if m is not None and m.limit_s is not None),
                    None)

    @property
    def last(self) -> Measurement | None:
        """This run's measurement (the last slot), if it recorded one."""
        return self.values[-1] if self.values else None


Key = tuple[str, str]  # (member, drill id)


@dataclass(frozen=True)
class RunTrends:
    """What one run measured, per (member, drill): every pair it drilled, measured or not."""

    run_id: str
    started: datetime
    measured: Mapping[Key, Mapping[Metric, Measurement]]


def trends_of(run: RunResult) -> RunTrends:
    """One pass over ``run``'s scenarios; the first scenario of a (member, drill) pair counts."""
    measured: dict[Key, Mapping[Metric, Measurement]] = {}
    for scenario in run.scenarios:
        member, drill = member_of(scenario), scenario.scenario_id
        if member is None or drill is None or (member, drill) in measured:
            continue
        measured[(member, drill)] = _measure_all(scenario)
    return RunTrends(run_id=run.run_id, started=_started(run), measured=measured)


def _started(run: RunResult) -> datetime:
    try:
        moment = datetime.fromisoformat(run.started_at)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def chronological(run: RunTrends, history: Iterable[RunTrends], *, keep: int = RUNS_SHOWN) -> list[RunTrends]:
    """The latest ``keep - 1`` earlier runs that started before ``run`` (oldest first), then ``run``.

    An earlier run counts only if it drilled one of this run's (member, drill) pairs: a sibling
    directory of another fleet, or of one member's run beside others', is not a run of these
    members, and must not take a slot from one that is.
    """
    mine = run.measured.keys()
    earlier = sorted((h for h in history
                      if h.run_id != run.run_id and h.started < run.started
                      and not mine.isdisjoint(h.measured.keys())),
                     key=lambda h: (h.started, h.run_id))
    return [*earlier[-(keep - 1):], run] if keep > 1 else [run]


def series(runs: Sequence[RunTrends], keys: Iterable[Key], metric: Metric) -> dict[Key, Series]:
    """For each key, the series of ``metric`` over ``runs`` (as ordered); keys never measured are left out."""
    out: dict[Key, Series] = {}
    for key in keys:
        values = tuple(run.measured.get(key, {}).get(metric) for run in runs)
        if any(v is not None for v in values):
            out[key] = Series(member=key[0], drill=key[1], metric=metric, values=values)
    return out
