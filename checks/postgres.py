"""Facts about a PostgreSQL database: row counts, documented queries, integrity."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from psycopg import sql

from .verdict import Verdict

# Settings that change how values print as text: pinned so that fingerprints
# of the same rows agree between two servers (FIELD-NOTES, "t::text").
PINNED_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}

COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "more than": operator.gt,
    "at least": operator.ge,
    "exactly": operator.eq,
    "at most": operator.le,
    "less than": operator.lt,
}


def pin_session(conn: psycopg.Connection[Any]) -> None:
    """Pin the settings that affect ``row::text``."""
    for name, value in PINNED_SETTINGS.items():
        conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))


def qualified(name: str) -> sql.Composable:
    """``schema.table`` or ``table`` as a quoted identifier."""
    parts = name.split(".", 1)
    return sql.Identifier(*parts)


def row_counts(conn: psycopg.Connection[Any], minimums: Mapping[str, int]) -> Verdict:
    """Every named table has at least its minimum number of rows (exact ``count(*)``)."""
    counts: dict[str, int | None] = {}
    short: list[str] = []
    for table, minimum in minimums.items():
        try:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(qualified(table))).fetchone()
        except psycopg.errors.UndefinedTable:
            conn.rollback()
            counts[table] = None
            short.append(f"{table}: table missing (expected >= {minimum})")
            continue
        count = int(row[0]) if row else 0
        counts[table] = count
        if count < minimum:
            short.append(f"{table}: {count} rows (expected >= {minimum})")
    expected = {t: f">= {m}" for t, m in minimums.items()}
    if short:
        return Verdict.failed(
            "postgres.row_counts",
            "row counts below the minimum: " + "; ".join(short),
            measured=counts, expected=expected, evidence={"counts": counts},
        )
    total = sum(c or 0 for c in counts.values())
    return Verdict.passed(
        "postgres.row_counts",
        f"{len(counts)} tables hold at least their minimum rows ({total} rows in all)",
        measured=counts, expected=expected, evidence={"counts": counts},
    )


def query_value(
    conn: psycopg.Connection[Any], query: str, *, comparison: str, value: float
) -> Verdict:
    """A documented query returns a single number that compares as the runbook says."""
    compare = COMPARATORS.get(comparison)
    if compare is None:
        raise ValueError(f"unknown comparison {comparison!r}; use one of {sorted(COMPARATORS)}")
    try:
        row = conn.execute(query.encode()).fetchone()
    except psycopg.Error as exc:
        conn.rollback()
        return Verdict.error(
            "postgres.query", f"query failed: {query!r}: {str(exc).strip()}",
            evidence={"query": query},
        )
    if row is None or len(row) != 1:
        return Verdict.error(
            "postgres.query", f"query {query!r} must return one row with one column",
            evidence={"query": query},
        )
    measured = row[0]
    try:
        number = float(measured)
    except (TypeError, ValueError):
        return Verdict.error(
            "postgres.query", f"query {query!r} returned {measured!r}, not a number",
            evidence={"query": query},
        )
    ok = compare(number, value)
    shown = int(number) if number.is_integer() else number
    return Verdict.compare(
        "postgres.query", measured=shown, expected=f"{comparison} {value:g}", ok=ok,
        message=f"{query} returned {shown}, expected {comparison} {value:g}",
        evidence={"query": query, "result": shown},
    )


def unique_values(conn: psycopg.Connection[Any], table: str, column: str) -> Verdict:
    """``COUNT(*)`` equals ``COUNT(DISTINCT column)``: no duplicated key."""
    query = sql.SQL("SELECT count(*), count(DISTINCT {}) FROM {}").format(
        sql.Identifier(column), qualified(table)
    )
    try:
        row = conn.execute(query).fetchone()
    except psycopg.Error as exc:
        conn.rollback()
        return Verdict.error("postgres.unique", f"cannot count {table}.{column}: {exc}".strip())
    total, distinct = (int(row[0]), int(row[1])) if row else (0, 0)
    return Verdict.compare(
        "postgres.unique",
        measured={"count": total, "distinct": distinct},
        expected="count == distinct",
        ok=total == distinct,
        message=(
            f"{table}.{column}: {total} rows, {distinct} distinct"
            + ("" if total == distinct else f" — {total - distinct} duplicated")
        ),
        evidence={"table": table, "column": column, "count": total, "distinct": distinct},
    )
