"""What earlier runs measured: the database sizes a growth check compares with.

Earlier runs are the sibling run directories of this run's (``out/<run-id>/``
beside ``out/<this-run>/``), each with the ``results.json`` its run wrote.
:func:`load_earlier_runs` reads them (an unreadable one is named, never fatal);
:func:`previous_size` picks, from those, the most recent size the same
scenario recorded for the same target. The ``drillbook_history`` fixture (a
plugin of its own, listed in the runner plugin's ``pytest_plugins``) hands both
to the growth step, bound to the scenario being run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from checks import redact
from checks.pg_health import EarlierSize, SizeMeasurement
from checks.verdict import Verdict
from reports.results import RunResult, ScenarioResult

RESULTS = "results.json"
# The verdicts that record a database size in evidence ("target", "bytes").
SIZE_CHECKS = frozenset({"postgres.size", "postgres.growth"})


@dataclass(frozen=True)
class EarlierRuns:
    """The readable earlier runs beside a run directory, and the results files that could not be read."""

    searched: Path | None
    runs: tuple[RunResult, ...] = ()
    unreadable: tuple[str, ...] = ()


def load_earlier_runs(run_dir: Path | None) -> EarlierRuns:
    """Every sibling of ``run_dir`` holding a ``results.json``, read; ``run_dir`` itself and links left out.

    A results file that is not JSON, or not a run's results, is listed in
    ``unreadable`` (path and reason) and skipped.
    """
    if run_dir is None:
        return EarlierRuns(searched=None)
    here = run_dir.resolve()
    parent = here.parent
    runs: list[RunResult] = []
    unreadable: list[str] = []
    if not parent.is_dir():
        return EarlierRuns(searched=parent)
    for candidate in sorted(parent.iterdir()):
        # `out/latest` is a link to one of the runs: read each run once.
        if candidate.is_symlink() or not candidate.is_dir() or candidate.resolve() == here:
            continue
        results = candidate / RESULTS
        if not results.is_file():
            continue  # a run that never finished writing (or not a run directory)
        try:
            runs.append(RunResult.read(results))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            unreadable.append(f"{results}: {type(exc).__name__}: {exc}")
    return EarlierRuns(searched=parent, runs=tuple(runs), unreadable=tuple(unreadable))


def recent_runs(run_dir: Path | None, *, limit: int) -> EarlierRuns:
    """Like :func:`load_earlier_runs`, but only the ``limit`` most recently written siblings are read.

    For the fleet report's charts: a merged fleet run's ``results.json`` is megabytes, and a
    runs location that has kept a year of runs must not be read whole to draw the last dozen.
    Recency is the results file's modification time (run ids need not sort by time: a
    Kubernetes Job UID does not); the report orders what it reads by ``started_at``.
    """
    if run_dir is None or limit <= 0:
        return EarlierRuns(searched=None if run_dir is None else run_dir.resolve().parent)
    here = run_dir.resolve()
    parent = here.parent
    if not parent.is_dir():
        return EarlierRuns(searched=parent)
    found: list[tuple[float, str, Path]] = []
    for candidate in parent.iterdir():
        if candidate.is_symlink() or not candidate.is_dir() or candidate.resolve() == here:
            continue
        results = candidate / RESULTS
        try:
            found.append((results.stat().st_mtime, candidate.name, results))
        except OSError:
            continue  # not a run directory, or one that never finished writing
    runs: list[RunResult] = []
    unreadable: list[str] = []
    for _, _, results in sorted(found, reverse=True)[:limit]:
        try:
            runs.append(RunResult.read(results))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            unreadable.append(f"{results}: {type(exc).__name__}: {exc}")
    return EarlierRuns(searched=parent, runs=tuple(runs), unreadable=tuple(unreadable))


def scenario_key(scenario: ScenarioResult) -> str:
    """A scenario's identity across runs: its ``@id``, else its feature file and name."""
    return scenario.scenario_id or f"{scenario.feature_path} :: {scenario.scenario}"


def previous_size(runs: Iterable[RunResult], *, scenario: str, target: str,
                  before: datetime) -> SizeMeasurement | None:
    """The most recent size that ``scenario`` recorded for ``target`` strictly before ``before``."""
    found = [m for t, m in _recorded_sizes(runs, scenario=scenario) if t == target and m.measured_at < before]
    return max(found, key=lambda m: m.measured_at, default=None)


def measured_targets(runs: Iterable[RunResult], *, scenario: str) -> list[str]:
    """Every target ``scenario`` recorded a size of in ``runs``, the most recently measured first."""
    latest: dict[str, datetime] = {}
    for target, measurement in _recorded_sizes(runs, scenario=scenario):
        latest[target] = max(latest.get(target, measurement.measured_at), measurement.measured_at)
    return sorted(latest, key=lambda t: latest[t], reverse=True)


def _recorded_sizes(runs: Iterable[RunResult], *, scenario: str) -> Iterator[tuple[str, SizeMeasurement]]:
    """(target, size) of every size verdict ``scenario`` recorded in ``runs``."""
    for run in runs:
        for result in run.scenarios:
            if scenario_key(result) != scenario:
                continue
            for verdict in result.verdicts:
                found = _size_of(verdict, run_id=run.run_id)
                if found is not None:
                    yield found


def _size_of(verdict: Verdict, *, run_id: str) -> tuple[str, SizeMeasurement] | None:
    """The target and size a verdict recorded, or None when it recorded none."""
    evidence = verdict.evidence
    if verdict.id not in SIZE_CHECKS or not isinstance(evidence, Mapping):
        return None
    target, size = evidence.get("target"), evidence.get("bytes")
    if not isinstance(target, str) or not isinstance(size, int) or isinstance(size, bool):
        return None
    measured_at = _moment(evidence.get("measured_at"), verdict.started_at)
    return target, SizeMeasurement(bytes=size, measured_at=measured_at, run_id=run_id)


def _moment(recorded: object, fallback: datetime) -> datetime:
    """When a size was measured: the evidence's ``measured_at``, else the verdict's start."""
    moment = fallback
    if isinstance(recorded, str):
        try:
            moment = datetime.fromisoformat(recorded)
        except ValueError:
            moment = fallback
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ScenarioHistory:
    """Earlier runs, seen from one scenario of this run."""

    scenario: str
    earlier: EarlierRuns

    def previous_size(self, target: str, *, before: datetime) -> EarlierSize:
        """The most recent earlier size of ``target`` (its label as evidence records it) in this scenario."""
        # Evidence is written redacted: compare with the label as it was written.
        written = redact.redact(target)
        previous = previous_size(self.earlier.runs, scenario=self.scenario, target=written, before=before)
        others = [t for t in measured_targets(self.earlier.runs, scenario=self.scenario) if t != written]
        if self.earlier.searched is None:
            searched = "this run has no run directory (--drillbook-out), so no earlier runs"
        else:
            searched = (f"{len(self.earlier.runs)} earlier run(s) in {self.earlier.searched}, "
                        f"scenario {self.scenario}")
        return EarlierSize(previous=previous, searched=searched, unreadable=self.earlier.unreadable,
                           other_targets=tuple(others))


@pytest.fixture(scope="session")
def drillbook_earlier_runs(request: pytest.FixtureRequest) -> EarlierRuns:
    """The earlier runs beside this run's directory, read once per run when a step first asks."""
    from .plugin import session_of

    return load_earlier_runs(session_of(request.config).out)


@pytest.fixture
def drillbook_history(request: pytest.FixtureRequest, drillbook_earlier_runs: EarlierRuns) -> ScenarioHistory:
    """Earlier runs' measurements for the scenario being run (matched by its ``@id``)."""
    from .plugin import session_of

    nodeid = request.node.nodeid
    scenario = next((s for s in reversed(session_of(request.config).scenarios) if s.nodeid == nodeid), None)
    if scenario is None:
        raise LookupError(f"{nodeid} is not a drillbook scenario: no earlier runs to compare with")
    return ScenarioHistory(scenario=scenario_key(scenario), earlier=drillbook_earlier_runs)
