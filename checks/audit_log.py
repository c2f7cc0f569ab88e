"""Audit-log events of a kind in a time window, from a PostgreSQL table or a JSON-lines file.

A kind is matched as a shell glob, case-sensitively: ``*_FAILED`` matches
``LOGIN_FAILED`` and ``FOCUS_FAILED``. In PostgreSQL the glob becomes a
``LIKE`` pattern (``*`` → ``%``, ``?`` → ``_``; literal ``%``, ``_`` and ``\\``
escaped). A JSON-lines file holds one object per line with a ``kind`` string
and a ``time`` in ISO 8601; a time without an offset is taken as UTC.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .errors import TargetUnreachable, UnusableAnswer
from .postgres import qualified
from .schedules import span
from .thresholds import compare
from .verdict import Verdict

# Event times quoted in evidence; counts are always exact.
_EXAMPLES = 20


@dataclass(frozen=True)
class AuditTable:
    """An audit log in PostgreSQL: the table and which columns hold the kind and the time."""

    table: str
    kind_column: str
    time_column: str

    def describe(self) -> str:
        return f"table {self.table} ({self.kind_column}, {self.time_column})"


@dataclass(frozen=True)
class AuditFile:
    """An audit log as JSON lines with ``kind`` and ``time`` fields."""

    path: Path

    def describe(self) -> str:
        return f"file {self.path}"


def glob_to_like(glob: str) -> str:
    """``*_FAILED`` → ``%\\_FAILED`` (for ``LIKE ... ESCAPE '\\'``)."""
    out = []
    for char in glob:
        if char in "\\%_":
            out.append("\\" + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append(char)
    return "".join(out)


def table_event_times(conn: psycopg.Connection[Any], log: AuditTable, *, kind: str,
                      since: datetime, until: datetime) -> list[datetime]:
    """Times of events whose kind matches ``kind`` with ``since <= time <= until``, oldest first."""
    query = sql.SQL(
        "SELECT {time} FROM {table} WHERE {kind} LIKE %s ESCAPE '\\' AND {time} >= %s AND {time} <= %s "
        "ORDER BY {time}"
    ).format(time=sql.Identifier(log.time_column), table=qualified(log.table),
             kind=sql.Identifier(log.kind_column))
    try:
        rows = conn.execute(query, (glob_to_like(kind), since, until)).fetchall()
    except psycopg.OperationalError as exc:
        raise TargetUnreachable(f"audit log {log.describe()}: {str(exc).strip()}") from None
    except psycopg.Error as exc:
        raise UnusableAnswer(
            f"cannot read the audit log {log.describe()}: {str(exc).strip()}",
            table=log.table, hint="check the table and column names in the feature",
        ) from None
    return [_utc(r[0], where=log.describe()) for r in rows]


def file_event_times(log: AuditFile, *, kind: str, since: datetime, until: datetime) -> list[datetime]:
    """Times of matching events in a JSON-lines file; a bad line is :class:`UnusableAnswer` naming it."""
    try:
        text = log.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetUnreachable(f"cannot read the audit log {log.path}: {exc}",
                                hint="check the path in the feature") from None
    times = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{log.path}:{number}"
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UnusableAnswer(f"audit log {where} is not JSON: {exc.msg}",
                                 hint="each line must be one JSON object") from None
        if not isinstance(event, dict) or not isinstance(event.get("kind"), str) or "time" not in event:
            raise UnusableAnswer(f"audit log {where}: expected an object with `kind` (string) and `time`",
                                 hint='write e.g. {"kind": "LOGIN_FAILED", "time": "2026-01-05T03:00:00Z"}')
        if not fnmatch.fnmatchcase(event["kind"], kind):
            continue
        taken = parse_time(event["time"], where=where)
        if since <= taken <= until:
            times.append(taken)
    return sorted(times)


def parse_time(value: Any, *, where: str) -> datetime:
    """ISO 8601 text → aware UTC datetime; :class:`UnusableAnswer` naming ``where`` otherwise."""
    if not isinstance(value, str):
        raise UnusableAnswer(f"{where}: `time` must be an ISO 8601 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UnusableAnswer(f"{where}: `time` {value!r} is not ISO 8601",
                             hint="write e.g. 2026-01-05T03:00:00Z") from None
    return _utc(parsed, where=where)


def _utc(value: Any, *, where: str) -> datetime:
    if not isinstance(value, datetime):
        raise UnusableAnswer(f"{where}: the time column holds {type(value).__name__}, not a timestamp")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def event_count(times: list[datetime], *, kind: str, comparison: str, count: int, window: timedelta,
                now: datetime, source: str) -> Verdict:
    """The number of ``kind`` events in the last ``window`` compares as the runbook says."""
    found = len(times)
    shown = [t.isoformat() for t in times[-_EXAMPLES:]]
    return Verdict.compare(
        "audit.event_count", measured=found, expected=f"{comparison} {count}",
        ok=compare(found, comparison, count),
        message=f"audit log {source}: {found} {kind!r} events in the last {span(window)}, "
                f"expected {comparison} {count}",
        evidence={"source": source, "kind": kind, "count": found, "since": now - window, "until": now,
                  "latest": shown},
    )
