"""goose's ``goose_db_version``: one row per up (``is_applied`` true) and, in goose 2, per down.

goose (pressly/goose v3, ``internal/dialect/dialectquery/postgres.go``) creates the table with
``id``, ``version_id bigint``, ``is_applied boolean`` and ``tstamp``, inserts its own first row
``(0, true)`` and one ``(version, true)`` row per applied migration; goose 3 deletes the row on
rollback, goose 2 inserted ``(version, false)``. goose decides a version by its newest row
(``ORDER BY id DESC``): applied when that row has ``is_applied``. Version 0 is goose's own row,
not a migration. goose records no checksum, so an edited applied file cannot be caught here.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ..model import AppliedMigration, History, HistoryKind, LocalMigration
from .common import table_sql

KIND = HistoryKind.GOOSE
TABLE = "goose_db_version"
_COLUMNS = {"version_id", "is_applied"}


def recognises(name: str, columns: set[str]) -> bool:
    """goose's columns, whatever the table is called (goose -table NAME)."""
    return columns >= _COLUMNS


def read(conn: psycopg.Connection[Any], name: str, columns: set[str]) -> History:
    """The versions whose newest row says applied, in version order (read-only)."""
    # goose orders by its serial id; a hand-made table without one falls back to the timestamp.
    order = "id" if "id" in columns else "tstamp" if "tstamp" in columns else None
    query = sql.SQL("SELECT version_id, is_applied FROM {}").format(table_sql(name))
    if order is not None:
        query = sql.SQL("{} ORDER BY {} DESC").format(query, sql.Identifier(order))
    seen: set[int] = set()
    applied: list[int] = []
    for version, is_applied in conn.execute(query).fetchall():
        if version in seen:
            continue  # an older row of a version already decided by its newest one
        seen.add(version)
        if version != 0 and is_applied:
            applied.append(int(version))
    return History(KIND, name, tuple(AppliedMigration(str(v)) for v in sorted(applied)))


def checksum(local: LocalMigration) -> str | None:
    """goose records no checksum."""
    return None
