"""Heartbeats and cron schedules: did what was scheduled actually happen?

A heartbeat is fresh when the newest timestamp is younger than a limit
(Scrydon's license heartbeat). A cron schedule is followed when every time it
should have fired in a window has an occurrence (an event, a backup) within a
tolerance of it (Sovra: backups at 03:00, cert rotation 02:00, audit export
04:00, health every 5 minutes).

Cron expressions are evaluated in UTC with ``croniter`` (five fields, or six
with seconds). Each occurrence satisfies at most one fire time, so a single
backup cannot stand in for three missed ones. A fire time whose tolerance has
not run out by ``now`` is still pending: listed, never counted as missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from croniter import croniter
from psycopg import sql

from .errors import UnusableAnswer
from .postgres import qualified
from .verdict import Verdict, format_duration

# Missing fire times quoted in the message; evidence lists them all.
_SHOWN = 10
# A window with more fire times than this is a mistake (every second for a year), not a schedule.
MAX_FIRE_TIMES = 100_000


def span(value: timedelta) -> str:
    """A window as a runbook says it: ``7 days``, ``1 day``, ``24h``, ``15 min``, else ``1h 30m 00s``."""
    seconds = value.total_seconds()
    if seconds and seconds % 86400 == 0:
        days = int(seconds // 86400)
        return f"{days} day" if days == 1 else f"{days} days"
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0 and seconds < 3600:
        return f"{int(seconds // 60)} min"
    return format_duration(value)


def newest_timestamp(conn: psycopg.Connection[Any], table: str, column: str) -> datetime | None:
    """``max(column)`` of ``table`` as aware UTC, or None when the table is empty."""
    query = sql.SQL("SELECT max({column}) FROM {table}").format(
        column=sql.Identifier(column), table=qualified(table))
    try:
        row = conn.execute(query).fetchone()
    except psycopg.OperationalError:
        raise
    except psycopg.Error as exc:
        raise UnusableAnswer(f"cannot read max({column}) of {table}: {str(exc).strip()}", table=table,
                             hint="check the table and column names in the feature") from None
    value = row[0] if row else None
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise UnusableAnswer(f"{table}.{column} holds {type(value).__name__}, not a timestamp", table=table)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def heartbeat(newest: datetime | None, *, now: datetime, max_age: timedelta, source: str) -> Verdict:
    """The newest timestamp is at most ``max_age`` old; none at all fails."""
    if newest is None:
        return Verdict.failed("schedule.heartbeat", f"{source}: no timestamp at all (empty)",
                              measured=None, expected=f"<= {format_duration(max_age)} old",
                              evidence={"source": source})
    age = now - newest
    return Verdict.compare(
        "schedule.heartbeat", measured=age, expected=f"<= {format_duration(max_age)}", ok=age <= max_age,
        message=f"{source}: newest {newest.isoformat(timespec='seconds')} is {format_duration(age)} old, "
                f"limit {format_duration(max_age)}",
        evidence={"source": source, "newest": newest, "now": now, "age_s": age.total_seconds()},
    )


def validate_cron(expression: str) -> str:
    """The expression, stripped; ValueError naming it when croniter cannot read it."""
    text = expression.strip()
    if not croniter.is_valid(text):
        raise ValueError(f"not a cron schedule: {expression!r} (write e.g. \"0 3 * * *\": 03:00 UTC daily)")
    return text


def fire_times(expression: str, *, start: datetime, end: datetime) -> list[datetime]:
    """Every time ``expression`` fires with ``start < t <= end`` (UTC)."""
    schedule = croniter(validate_cron(expression), start.astimezone(UTC))
    times: list[datetime] = []
    while True:
        fire = schedule.get_next(datetime)
        if fire > end:
            return times
        times.append(fire)
        if len(times) > MAX_FIRE_TIMES:
            raise ValueError(f"{expression!r} fires more than {MAX_FIRE_TIMES} times in the window")


def match_occurrences(
    fires: list[datetime], occurrences: Iterable[datetime], *, tolerance: timedelta
) -> tuple[dict[datetime, datetime], list[datetime]]:
    """Pair each fire time with its own occurrence within ``tolerance`` (earliest first), and the unpaired.

    Greedy over both sorted lists; with equal-width windows this pairs as many
    fire times as any assignment can.
    """
    pending = sorted(occurrences)
    matched: dict[datetime, datetime] = {}
    missing: list[datetime] = []
    i = 0
    for fire in sorted(fires):
        while i < len(pending) and pending[i] < fire - tolerance:
            i += 1  # too early for this fire time, and so for every later one
        if i < len(pending) and pending[i] <= fire + tolerance:
            matched[fire] = pending[i]
            i += 1
        else:
            missing.append(fire)
    return matched, missing


def schedule_followed(
    expression: str, occurrences: Iterable[datetime], *, now: datetime, window: timedelta,
    tolerance: timedelta, what: str, check_id: str = "schedule.followed",
) -> Verdict:
    """Every fire time of ``expression`` in the last ``window`` has an occurrence within ``tolerance``."""
    try:
        expression = validate_cron(expression)
    except ValueError as exc:
        return Verdict.error(check_id, f"{what}: {exc}", evidence={"cron": expression})
    start = now - window
    seen = sorted(o.astimezone(UTC) for o in occurrences)
    all_fires = fire_times(expression, start=start, end=now)
    due = [f for f in all_fires if f + tolerance <= now]
    not_yet = [f for f in all_fires if f + tolerance > now]
    evidence: dict[str, Any] = {
        "what": what, "cron": expression, "timezone": "UTC", "window_start": start, "now": now,
        "tolerance_s": tolerance.total_seconds(), "expected": len(due),
        "pending": [f.isoformat() for f in not_yet], "occurrences": len(seen),
    }
    if not due:
        return Verdict.error(
            check_id, f"{what}: {expression!r} has no fire time to check in the last "
            f"{span(window)} (with {span(tolerance)} tolerance): widen the window",
            evidence=evidence,
        )
    matched, missing = match_occurrences(due, seen, tolerance=tolerance)
    evidence["matched"] = {f.isoformat(): o.isoformat() for f, o in matched.items()}
    evidence["missing"] = [f.isoformat() for f in missing]
    expected = f"{len(due)} of {len(due)} fire times"
    if missing:
        shown = ", ".join(f.strftime("%Y-%m-%d %H:%M") for f in missing[:_SHOWN])
        more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        return Verdict.failed(
            check_id, f"{what}: {len(missing)} of {len(due)} fire times of {expression!r} in the last "
            f"{span(window)} have nothing within {span(tolerance)}: {shown}{more} UTC",
            measured=f"{len(matched)} of {len(due)} fire times", expected=expected, evidence=evidence,
        )
    return Verdict.passed(
        check_id, f"{what}: all {len(due)} fire times of {expression!r} in the last "
        f"{span(window)} have an occurrence within {span(tolerance)}",
        measured=f"{len(matched)} of {len(due)} fire times", expected=expected, evidence=evidence,
    )
