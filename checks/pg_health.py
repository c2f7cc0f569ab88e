"""Health of a live PostgreSQL subject: reachability, replication, connections, queries, size, growth, rows.

Every check reads through a session opened by :func:`connect_read_only`:
``default_transaction_read_only`` is on for the whole session (autocommit or
not), so nothing here can write to a subject. Row counts and duplicate keys
reuse :mod:`checks.postgres`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from . import redact
from .errors import AuthenticationFailed, TargetUnreachable
from .postgres import qualified
from .thresholds import format_size
from .verdict import Verdict, format_duration

CONNECT_TIMEOUT_S = 10
# Long query texts are cut in evidence: enough to recognise the query, not a whole report.
_QUERY_PREVIEW_CHARS = 200
_DAY = timedelta(days=1)
# A first measurement names at most this many other targets in its message (all are in the evidence).
_OTHER_TARGETS_SHOWN = 3
# libpq's words for a server that answered but refused who we are (not: does not answer).
_REFUSED_SIGNS = ("authentication failed", "no password supplied")


def read_only_options(dsn: str, *, statement_timeout_ms: int | None = None) -> str:
    """The DSN's own ``options`` with read-only, UTC and (when given) a statement timeout appended.

    Appended, not replaced: a ``search_path`` in the DSN's options must survive. Raises
    :class:`psycopg.ProgrammingError` for a DSN libpq cannot parse.
    """
    own = str(psycopg.conninfo.conninfo_to_dict(dsn).get("options") or "")
    extra = "-c default_transaction_read_only=on -c TimeZone=UTC"
    if statement_timeout_ms is not None:
        extra += f" -c statement_timeout={int(statement_timeout_ms)}"
    return f"{own} {extra}".strip()


def connect_read_only(dsn: str, *, label: str, timeout_s: int = CONNECT_TIMEOUT_S,
                      statement_timeout_ms: int | None = None,
                      application_name: str = "drillbook-health") -> psycopg.Connection[Any]:
    """A read-only autocommit session (every statement, from the first: the setting is a startup option).

    :class:`AuthenticationFailed` when the server refuses the credentials, else
    :class:`TargetUnreachable` (its parent), naming ``label``, when no session opens.
    """
    try:
        options = read_only_options(dsn, statement_timeout_ms=statement_timeout_ms)
        return psycopg.connect(dsn, connect_timeout=timeout_s, autocommit=True,
                               application_name=application_name, options=options)
    except psycopg.OperationalError as exc:
        text = redact.redact(str(exc).strip())
        if refused_credentials(text):
            raise AuthenticationFailed(f"database {label} refuses the credentials: {text}",
                                       target=label) from None
        raise TargetUnreachable(f"database {label} does not answer: {text}", target=label) from None


def refused_credentials(message: str) -> bool:
    """Whether libpq's error says the server answered but refused the credentials."""
    return any(sign in message for sign in _REFUSED_SIGNS)


def answers_select_1(dsn: str, *, label: str, limit: timedelta) -> Verdict:
    """Connect and run ``SELECT 1`` within ``limit`` (connection set-up included)."""
    started = time.perf_counter()
    try:
        with connect_read_only(dsn, label=label) as conn:
            row = conn.execute("SELECT 1").fetchone()
    except TargetUnreachable as exc:
        return Verdict.error("postgres.select_1", str(exc), evidence={"target": label})
    except psycopg.Error as exc:
        return Verdict.error("postgres.select_1", f"{label}: SELECT 1 failed: {str(exc).strip()}",
                             evidence={"target": label})
    took = timedelta(seconds=time.perf_counter() - started)
    if row is None or row[0] != 1:
        return Verdict.failed("postgres.select_1", f"{label}: SELECT 1 returned {row!r}",
                              evidence={"target": label})
    return Verdict.compare(
        "postgres.select_1", measured=took, expected=f"<= {format_duration(limit)}", ok=took <= limit,
        message=f"{label} answered SELECT 1 in {format_duration(took)} (connect included), "
                f"limit {format_duration(limit)}",
        evidence={"target": label, "seconds": round(took.total_seconds(), 6)},
    )


def replication_lag(conn: psycopg.Connection[Any], *, max_lag: timedelta, label: str) -> Verdict:
    """The largest ``replay_lag`` of ``pg_stat_replication`` on a primary, or the replay delay on a standby.

    A primary with no replica attached: not applicable, with that reason. A
    replica row with no ``replay_lag`` has nothing left to replay (PostgreSQL
    clears it when idle): its lag counts as zero.
    """
    check_id = "postgres.replication_lag"
    in_recovery = bool(_scalar(conn, "SELECT pg_is_in_recovery()"))
    if in_recovery:
        row = conn.execute(
            "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN interval '0' "
            "ELSE now() - pg_last_xact_replay_timestamp() END"
        ).fetchone()
        lag = row[0] if row else None
        if lag is None:
            return Verdict.error(check_id, f"{label} is a standby that has replayed nothing yet",
                                 evidence={"target": label, "role": "standby"})
        return Verdict.compare(
            check_id, measured=lag, expected=f"<= {format_duration(max_lag)}", ok=lag <= max_lag,
            message=f"{label} (standby) replays {format_duration(lag)} behind its primary, "
                    f"limit {format_duration(max_lag)}",
            evidence={"target": label, "role": "standby", "lag_s": lag.total_seconds()},
        )
    rows = conn.execute(
        "SELECT application_name, coalesce(client_addr::text, 'local'), state, "
        "replay_lag, write_lag, flush_lag FROM pg_stat_replication ORDER BY application_name"
    ).fetchall()
    if not rows:
        return Verdict.not_applicable(
            check_id, f"{label} has no replicas: pg_stat_replication is empty on this primary",
            evidence={"target": label, "role": "primary", "replicas": 0},
        )
    replicas = []
    for name, addr, state, replay, write, flush in rows:
        replicas.append({
            "application_name": name, "client_addr": addr, "state": state,
            "replay_lag_s": replay.total_seconds() if replay is not None else None,
            "write_lag_s": write.total_seconds() if write is not None else None,
            "flush_lag_s": flush.total_seconds() if flush is not None else None,
        })
    lags = [r[3] or timedelta(0) for r in rows]
    worst = max(lags)
    behind = [f"{r[0] or r[1]} {format_duration(r[3])}" for r in rows if r[3] is not None and r[3] > max_lag]
    not_streaming = [f"{r[0] or r[1]} is {r[2]}" for r in rows if r[2] != "streaming"]
    problems = behind + not_streaming
    evidence = {"target": label, "role": "primary", "replicas": replicas}
    if problems:
        return Verdict.failed(
            check_id, f"{label}: replication lag above {format_duration(max_lag)} or not streaming: "
            + "; ".join(problems),
            measured=worst, expected=f"<= {format_duration(max_lag)}", evidence=evidence,
        )
    return Verdict.passed(
        check_id, f"{label}: {len(rows)} replica(s) streaming, largest replay lag "
        f"{format_duration(worst)} (limit {format_duration(max_lag)})",
        measured=worst, expected=f"<= {format_duration(max_lag)}", evidence=evidence,
    )


def connections_within(conn: psycopg.Connection[Any], *, percent: int, label: str) -> Verdict:
    """Client connections (``pg_stat_activity``) use at most ``percent`` % of ``max_connections``."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
        "current_setting('max_connections')::int, "
        "current_setting('superuser_reserved_connections')::int"
    ).fetchone()
    assert row is not None  # an aggregate always returns a row
    used, maximum, reserved = int(row[0]), int(row[1]), int(row[2])
    share = 100.0 * used / maximum if maximum else 100.0
    return Verdict.compare(
        "postgres.connections", measured=round(share, 2), expected=f"<= {percent} %", ok=share <= percent,
        message=f"{label}: {used} of {maximum} connections in use ({share:.1f} %), limit {percent} %",
        evidence={"target": label, "connections": used, "max_connections": maximum,
                  "superuser_reserved_connections": reserved},
    )


def long_running_queries(conn: psycopg.Connection[Any], *, limit: timedelta, label: str) -> Verdict:
    """No active query (other than this check's own) has run longer than ``limit``."""
    rows = conn.execute(
        "SELECT pid, usename, datname, now() - query_start AS runtime, left(query, %s) "
        "FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend' "
        "AND pid <> pg_backend_pid() AND now() - query_start > %s ORDER BY runtime DESC",
        (_QUERY_PREVIEW_CHARS, limit),
    ).fetchall()
    found = [{"pid": pid, "user": user, "database": db, "runtime_s": runtime.total_seconds(),
              "query": redact.redact(text or "")} for pid, user, db, runtime, text in rows]
    if found:
        longest = rows[0][3]
        return Verdict.failed(
            "postgres.long_queries",
            f"{label}: {len(found)} queries running longer than {format_duration(limit)}; longest "
            f"{format_duration(longest)} (pid {rows[0][0]}): {found[0]['query'][:80]!r}",
            measured=len(found), expected=0, evidence={"target": label, "queries": found},
        )
    return Verdict.passed(
        "postgres.long_queries", f"{label}: no query running longer than {format_duration(limit)}",
        measured=0, expected=0, evidence={"target": label, "limit_s": limit.total_seconds()},
    )


def database_size(conn: psycopg.Connection[Any]) -> tuple[str, int]:
    """The current database's name and ``pg_database_size`` in bytes."""
    row = conn.execute("SELECT current_database(), pg_database_size(current_database())").fetchone()
    assert row is not None  # a SELECT without FROM always returns a row
    return str(row[0]), int(row[1])


def database_smaller_than(conn: psycopg.Connection[Any], *, max_bytes: int, label: str) -> Verdict:
    """``pg_database_size(current_database())`` is below ``max_bytes``."""
    name, size = database_size(conn)
    return Verdict.compare(
        "postgres.size", measured=size, expected=f"< {max_bytes}", ok=size < max_bytes,
        message=f"{label}: database {name} is {format_size(size)}, limit {format_size(max_bytes)}",
        evidence={"target": label, "database": name, "bytes": size, "limit_bytes": max_bytes},
    )


@dataclass(frozen=True)
class SizeMeasurement:
    """A database size an earlier run recorded: the bytes, when, and in which run."""

    bytes: int
    measured_at: datetime
    run_id: str


@dataclass(frozen=True)
class EarlierSize:
    """What earlier runs offer a growth check.

    ``previous``: the latest size the scenario recorded for this target, or
    None; ``searched``: where earlier runs were looked for; ``unreadable``:
    results files that could not be read (skipped); ``other_targets``: targets
    the scenario measured in earlier runs that are not this one (another
    server, port or database), the most recently measured first.
    """

    previous: SizeMeasurement | None = None
    searched: str = ""
    unreadable: tuple[str, ...] = ()
    other_targets: tuple[str, ...] = ()


def database_growth(
    conn: psycopg.Connection[Any], *, max_bytes_per_day: int, earlier: EarlierSize, now: datetime, label: str,
) -> Verdict:
    """Measure the size now and hand it to :func:`growth_within` (``now``: when it is measured)."""
    name, size = database_size(conn)
    return growth_within(size, database=name, earlier=earlier, now=now, max_bytes_per_day=max_bytes_per_day,
                         label=label)


def growth_per_day(before: int, after: int, elapsed: timedelta) -> float:
    """Bytes per day between two sizes ``elapsed`` apart (negative: it shrank); ``elapsed`` must be > 0."""
    if elapsed <= timedelta(0):
        raise ValueError(f"the earlier size must be earlier: {format_duration(elapsed)} apart")
    return (after - before) / (elapsed / _DAY)


def growth_within(
    size: int, *, database: str, earlier: EarlierSize, now: datetime, max_bytes_per_day: int, label: str,
) -> Verdict:
    """Growth per day since the earlier size is at most ``max_bytes_per_day``.

    No earlier size: not applicable, with the size measured now in the
    evidence (the next run compares with it).
    """
    check_id = "postgres.growth"
    limit = f"{format_size(max_bytes_per_day)} per day"
    evidence: dict[str, Any] = {"target": label, "database": database, "bytes": size, "measured_at": now,
                                "limit_bytes_per_day": max_bytes_per_day}
    if earlier.searched:
        evidence["searched"] = earlier.searched
    if earlier.unreadable:
        evidence["unreadable_results"] = list(earlier.unreadable)
    previous = earlier.previous
    if previous is None:
        reason = (f"{label}: first measurement: recorded {size:,} bytes ({format_size(size)}) of "
                  f"database {database}; growth is checked from the next run")
        if earlier.other_targets:
            evidence["other_targets"] = list(earlier.other_targets)
            shown = ", ".join(earlier.other_targets[:_OTHER_TARGETS_SHOWN])
            more = len(earlier.other_targets) - _OTHER_TARGETS_SHOWN
            reason += (f" (earlier runs of this scenario measured another server or database: {shown}"
                       + (f" and {more} more" if more > 0 else "") + ")")
        return Verdict.not_applicable(check_id, reason, evidence=evidence)
    elapsed = now - previous.measured_at
    evidence["previous"] = {"run_id": previous.run_id, "bytes": previous.bytes,
                            "measured_at": previous.measured_at}
    evidence["elapsed_s"] = elapsed.total_seconds()
    if elapsed <= timedelta(0):
        return Verdict.error(
            check_id, f"{label}: the earlier size (run {previous.run_id}, {_stamp(previous.measured_at)}) "
            f"is not earlier than now ({_stamp(now)}): check the clocks", evidence=evidence)
    rate = growth_per_day(previous.bytes, size, elapsed)
    evidence["growth_bytes_per_day"] = round(rate)
    change = f"grew by {format_size(round(rate))}" if rate >= 0 else f"shrank by {format_size(round(-rate))}"
    return Verdict.compare(
        check_id, measured=round(rate), expected=f"<= {max_bytes_per_day} bytes per day",
        ok=rate <= max_bytes_per_day,
        message=f"{label}: database {database} {change} per day ({format_size(previous.bytes)} → "
                f"{format_size(size)} in {format_duration(elapsed)} since run {previous.run_id}), "
                f"limit {limit}",
        evidence=evidence,
    )


def stuck_rows(
    conn: psycopg.Connection[Any], table: str, *, column: str, state: str, time_column: str,
    limit: timedelta, now: datetime, label: str,
) -> Verdict:
    """No row of ``table`` has ``column = state`` with ``time_column`` older than ``limit`` (stuck scans)."""
    check_id = "postgres.stuck_rows"
    cutoff = now - limit
    query = sql.SQL(
        "SELECT count(*), min({time}) FROM {table} WHERE {column}::text = %s AND {time} < %s"
    ).format(time=sql.Identifier(time_column), table=qualified(table), column=sql.Identifier(column))
    try:
        row = conn.execute(query, (state, cutoff)).fetchone()
    except psycopg.Error as exc:
        return Verdict.error(check_id, f"{label}: cannot read {table}.{column}/{time_column}: "
                             f"{str(exc).strip()}", evidence={"target": label, "table": table})
    count, oldest = (int(row[0]), row[1]) if row else (0, None)
    evidence = {"target": label, "table": table, "column": column, "state": state,
                "time_column": time_column, "cutoff": cutoff, "count": count, "oldest": oldest}
    if count:
        return Verdict.failed(
            check_id, f"{label}: {count} {'row' if count == 1 else 'rows'} of {table} "
            f"{'has' if count == 1 else 'have'} been {column} = {state!r} for longer than "
            f"{format_duration(limit)} (oldest {time_column} {_stamp(oldest)})",
            measured=count, expected=0, evidence=evidence,
        )
    return Verdict.passed(
        check_id, f"{label}: no row of {table} has been {column} = {state!r} for longer than "
        f"{format_duration(limit)}", measured=0, expected=0, evidence=evidence,
    )


def _scalar(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query.encode()).fetchone()
    return row[0] if row else None


def _stamp(value: Any) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else str(value)
