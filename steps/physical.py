"""Physical backup steps: a physical store (drills/physical/) restored, recovered, proven to a point in time.

The restore sentence is shared with dump stores (steps/backup.py hands a physical store here); the
recovered cluster then answers the same row-count, query and content steps. Point in time:
``When the database is recovered to "<time>"`` and its proof ``Then the recovered point is within
<rpo> of the target``; ``Then the database can be recovered to N random moments of the last <window>``
(one verdict per moment); ``Then the WAL archive of "<store>" has no gap since the oldest backup``.
Restores go through PhysicalRestore only; the WAL archive is listed by the store's source
(``archive_listing``, any physical kind) and read by drills/pitr_sample.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytest_bdd import parsers, then, when

from checks import pitr
from checks.errors import DrillbookError, RestoreFailed
from checks.verdict import Verdict, format_duration, record, timed, verdict_from_error
from drills.deadlines import Limit
from drills.physical import PhysicalRestore, is_physical, source_for
from drills.pitr_sample import WalListing, find_gap, gap_at, measure_point, recoverable_window
from drills.targets import StoreSpec

from .context import PARSE_TYPES, ScenarioState
from .guard import guarded

MOMENT = "pitr.recovered_point"
_TARGET = "recovery_target"  # drill_state.notes key: the moment the scenario's recovery aimed at


def recover(drill_state: ScenarioState, limit: Limit, *, target: datetime | None = None) -> None:
    """Restore the newest base backup (taken by ``target``), recover it, keep it for later steps."""
    store = drill_state.store
    if store is None or not is_physical(store.kind):
        raise LookupError('name a physical backup store (e.g. `kind = "basebackup"`) first: '
                          '`Given the backups in "NAME"`')

    def run() -> Verdict:
        drill = PhysicalRestore(store, target=target, limit=limit, database=drill_state.database)
        drill_state.drill = drill
        try:
            result = drill.run()
        except RestoreFailed as exc:
            raise with_gap_range(exc, store) from exc
        drill_state.restored = result
        drill_state.backup_time = result.backup_time
        to = f"to {target.isoformat()}" if target else "to the end of its WAL archive"
        return Verdict.passed(
            "restore.completed",
            f"{_noun(result.source_format)} {result.backup.key} restored and recovered {to} "
            f"({result.recovery.get('state')}) in {format_duration(timedelta(seconds=result.rto_s))}",
            measured=round(result.rto_s, 3), expected="recovers without error",
            evidence=result.evidence(),
        )

    guarded("restore.completed", run)


def _noun(source_format: str) -> str:
    return "base backup" if source_format == "pg_basebackup" else f"{source_format} backup"


def archive_listing(store: StoreSpec) -> WalListing:
    """The store's WAL archive as its source lists it (a directory, S3 prefix, pgBackRest repo, barman)."""
    return source_for(store).archive_listing()


def with_gap_range(exc: RestoreFailed, store: StoreSpec) -> RestoreFailed:
    """A restore that stopped at a missing segment, its message extended by the range it makes
    unrecoverable (last commit before the segment → end of the next backup after it)."""
    segment = exc.context.get("segment")
    if not isinstance(segment, str) or not pitr.SEGMENT.fullmatch(segment) or not is_physical(store.kind):
        return exc
    try:
        gap = gap_at(archive_listing(store), segment)
    except (DrillbookError, OSError, ValueError) as err:
        return RestoreFailed(f"{exc.message} (the time range it makes unrecoverable could not be told: "
                             f"{err})",
                             hint=exc.hint, **exc.context)
    return RestoreFailed(f"{exc.message}: {gap.range_text}", hint=exc.hint, **{
        **exc.context, "unrecoverable_from": gap.last_commit_before.isoformat() if gap.last_commit_before
        else None, "unrecoverable_until": gap.next_backup_end.isoformat() if gap.next_backup_end else None})


def parse_target(text: str) -> datetime:
    """An ISO 8601 moment; one without an offset is UTC (said in the docs)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"recovery target {text!r} is not an ISO 8601 time "
                         "(e.g. 2026-12-03 17:29:51+00:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@when(parsers.parse('the database is recovered to "{moment}"'))
def recovered_to(moment: str, drillbook_env: Any, drill_state: ScenarioState,
                 request: pytest.FixtureRequest) -> None:
    """Point in time: the newest base backup taken by the target, recovered to it and paused there."""
    from .backup import restore_limit

    try:
        target = parse_target(moment)
    except ValueError as exc:
        message = str(exc)
        guarded("restore.completed", lambda: Verdict.error("restore.completed", message))
        return
    drill_state.notes[_TARGET] = target
    recover(drill_state, restore_limit(request), target=target)


@then(parsers.parse("the recovered point is within {rpo:Duration} of the target", extra_types=PARSE_TYPES))
def recovered_within(rpo: timedelta, drill_state: ScenarioState) -> None:
    """The recovery of ``When the database is recovered to`` proven with the data (as one sampled moment)."""

    def check() -> Verdict:
        target = drill_state.notes.get(_TARGET)
        if not isinstance(target, datetime) or drill_state.store is None:
            return Verdict.error(MOMENT, 'no point-in-time recovery in this scenario: add `When the database '
                                 'is recovered to "<time>"` before this step')
        result = drill_state.require_restore()
        assert result.target is not None
        return prove(drill_state.store, target, rpo, result.target.dsn, getattr(result, "recovery", {}))

    record(_checked(MOMENT, check))


SAMPLE = "the database can be recovered to {n:d} random moments of the last {window:Duration}"


@then(parsers.parse(SAMPLE, extra_types=PARSE_TYPES))
def sampled(n: int, window: timedelta, drill_state: ScenarioState, request: pytest.FixtureRequest) -> None:
    """n seeded moments of the recoverable window, each restored, recovered and proven (store key ``rpo``)."""
    _sample_step(drill_state, request, n=n, window=window, rpo=None)


@then(parsers.parse("the database can be recovered within an RPO of {rpo:Duration} to {n:d} random moments "
                    "of the last {window:Duration}", extra_types=PARSE_TYPES))
def sampled_with_rpo(n: int, window: timedelta, rpo: timedelta, drill_state: ScenarioState,
                     request: pytest.FixtureRequest) -> None:
    """The same, the RPO named in the sentence (it wins over the store's ``rpo``)."""
    _sample_step(drill_state, request, n=n, window=window, rpo=rpo)


def _sample_step(drill_state: ScenarioState, request: pytest.FixtureRequest, *, n: int, window: timedelta,
                 rpo: timedelta | None) -> None:
    from .backup import restore_limit

    store = drill_state.store
    if store is None or not is_physical(store.kind):
        record(Verdict.error(MOMENT, 'name a physical backup store first (basebackup, pgbackrest or '
                             'barman-cloud): `Given the backups in "NAME"`'))
        return
    seed = run_seed(request)
    for verdict in sample_verdicts(store, n=n, window=window, rpo=rpo, seed=seed,
                                   draw=f"{seed}/{request.node.name}/{store.name}",
                                   limit=lambda: restore_limit(request), database=drill_state.database):
        record(verdict)  # at once: an interrupted step keeps what it found


def run_seed(request: pytest.FixtureRequest) -> str:
    """``drillbook run --seed``, else the run id (the run directory's name), else ``pytest``."""
    seed = request.config.getoption("--drillbook-seed", None)
    out = request.config.getoption("--drillbook-out", None)
    return str(seed) if seed else Path(out).name if out else "pytest"


def draw_moments(store: StoreSpec, *, n: int, window: timedelta, seed: str, draw: str,
                 now: datetime | None = None) -> tuple[pitr.Sample, dict[str, Any]] | Verdict:
    """The seeded moments of [max(now − window, oldest backup's end), newest commit], and their evidence;
    an error verdict when there is nothing to sample. ``draw`` (the seed + scenario + store) seeds it."""
    try:
        bounds = recoverable_window(archive_listing(store), now=now or datetime.now(UTC), window=window)
        sample = pitr.sample_moments(draw, n, bounds.low, bounds.high)
    except (DrillbookError, OSError, ValueError) as exc:
        return Verdict.error(MOMENT, f"no moment of the last {format_duration(window)} of `{store.name}` to "
                             f"sample: {exc}", evidence={"seed": seed, "draw": draw})
    return sample, {**sample.evidence(), "seed": seed, "draw": draw, "window_start_from": bounds.low_from,
                    "window_end_from": bounds.high_from}


def sample_verdicts(store: StoreSpec, *, n: int, window: timedelta, rpo: timedelta | None, seed: str,
                    draw: str, limit: Callable[[], Limit], database: str | None = None,
                    now: datetime | None = None) -> Iterator[Verdict]:
    """Draw the moments, then one verdict per moment as each is proven; what stops the draw is one
    error verdict (no RPO, an unreadable archive, an empty window)."""
    rpo = rpo or store.rpo
    if rpo is None:
        yield Verdict.error(MOMENT, f"no RPO to prove against: set `rpo` on store `{store.name}` (e.g. "
                            'rpo = "5m") or say it: "… can be recovered within an RPO of 5 minutes to …"')
        return
    drawn = draw_moments(store, n=n, window=window, seed=seed, draw=draw, now=now)
    if isinstance(drawn, Verdict):
        yield drawn
        return
    sample, evidence = drawn
    yield from moment_verdicts(store, sample.moments, rpo=rpo, limit=limit, database=database,
                               evidence=evidence)


def moment_verdicts(store: StoreSpec, moments: list[datetime], *, rpo: timedelta,
                    limit: Callable[[], Limit], database: str | None,
                    evidence: dict[str, Any]) -> Iterator[Verdict]:
    """One verdict per moment, restored one after another (each cleaned up before the next)."""
    for i, moment in enumerate(moments, 1):
        label = f"moment {i}/{len(moments)}, "
        action = partial(_moment, store, moment, rpo, limit(), database, label, {**evidence, "moment": i})
        yield timed(partial(_checked, MOMENT, action, label=label))


def _moment(store: StoreSpec, target: datetime, rpo: timedelta, limit: Limit, database: str | None,
            label: str, evidence: dict[str, Any]) -> Verdict:
    """Restore to one moment and prove it; cleaned up before the next one, the journal in the evidence."""
    drill = PhysicalRestore(store, target=target, limit=limit, database=database)
    facts = dict(evidence)

    def run() -> Verdict:
        with drill:
            try:
                result = drill.run()
            except RestoreFailed as exc:
                raise with_gap_range(exc, store) from exc
            assert result.target is not None
            facts.update(backup=result.backup.key, rto_s=round(result.rto_s, 3))
            return prove(store, target, rpo, result.target.dsn, result.recovery, label=label, evidence=facts)

    verdict = _checked(MOMENT, run, label=label)
    journal = [{"phase": e.get("phase"), "status": e.get("status"), "duration_s": e.get("duration_s")}
               for e in drill.journal.entries]
    return replace(verdict, evidence={**facts, **verdict.evidence, "target": target.isoformat(),
                                      "journal": journal})


def prove(store: StoreSpec, target: datetime, rpo: timedelta, dsn: str, recovery: dict[str, Any], *,
          label: str = "", evidence: dict[str, Any] | None = None) -> Verdict:
    """pg_last_xact_replay_timestamp() and the store's ``pitr_column`` against the target and the RPO."""
    replayed, newest = measure_point(dsn, store.pitr_column)
    start = recovery.get("start_segment")
    return pitr.recovered_point(target=target, replayed=replayed,
                                started_by=_started_by(store, start) if isinstance(start, str) else None,
                                newest_row=newest, column=".".join(store.pitr_column) if store.pitr_column
                                else None, rpo=rpo, check_id=MOMENT, label=label, evidence=evidence)


def _started_by(store: StoreSpec, start_segment: str) -> datetime | None:
    """When the restored backup had surely started: its ``.backup`` file's START TIME + 1 s."""
    try:
        backups = archive_listing(store).backups
    except (DrillbookError, OSError):
        return None
    starts = [b.start_time for b in backups if b.start_segment == start_segment and b.start_time]
    return max(starts) + timedelta(seconds=1) if starts else None


def _checked(check_id: str, check: Callable[[], Verdict], *, label: str = "") -> Verdict:
    """A check's verdict; "checked and it does not hold" failed, "could not check" error — never raised."""
    try:
        verdict: Verdict = check()
    except DrillbookError as exc:
        verdict = verdict_from_error(check_id, exc)
        verdict = Verdict(verdict.id, verdict.outcome, label + verdict.message, evidence=verdict.evidence)
    except psycopg.Error as exc:
        verdict = Verdict.error(check_id, f"{label}the recovered server did not answer: {str(exc).strip()}")
    except (OSError, ValueError) as exc:  # unreadable archive file, a malformed value: one moment's error
        verdict = Verdict.error(check_id, f"{label}could not check: {exc}")
    return verdict


@then(parsers.parse('the WAL archive of "{store}" has no gap since the oldest backup'))
def archive_continuous(store: str, drillbook_env: Any) -> None:
    """Continuity from the listing (no restore): the first missing segment and the range it costs."""

    def check() -> Verdict:
        spec = drillbook_env.store(store)
        if not is_physical(spec.kind):
            return Verdict.error("pitr.wal_continuity", f"store `{store}` is no physical backup store: it "
                                 "has no WAL archive (basebackup, pgbackrest or barman-cloud)")
        listing = archive_listing(spec)
        gap = find_gap(listing)
        return pitr.continuity(where=listing.where, first=gap.first, last=gap.last, missing=gap.missing,
                               count=gap.count, range_text=gap.range_text if gap.missing else "",
                               evidence={"store": store, "unrecoverable_from": gap.last_commit_before,
                                         "unrecoverable_until": gap.next_backup_end})

    record(_checked("pitr.wal_continuity", check))
