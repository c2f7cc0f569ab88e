"""Reading a history table: its columns, a quoted name, plain SELECTs (read-only)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql


def columns_of(conn: psycopg.Connection[Any], name: str) -> set[str]:
    """The table's column names, or an empty set when it does not exist on the search path."""
    row = conn.execute("SELECT to_regclass(%s)::oid", (name,)).fetchone()
    if not row or row[0] is None:
        return set()
    return {str(r[0]) for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped",
        (row[0],)).fetchall()}


def table_sql(name: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(part) for part in name.split("."))


def select(conn: psycopg.Connection[Any], name: str, columns: list[str],
           order: str | None) -> list[tuple[Any, ...]]:
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), table_sql(name))
    if order:
        query = sql.SQL("{} ORDER BY {}").format(query, sql.Identifier(order))
    return list(conn.execute(query).fetchall())


def base_name(name: str) -> str:
    """``sqitch.changes`` → ``changes``; ``flyway_schema_history`` unchanged."""
    return name.split(".")[-1]
