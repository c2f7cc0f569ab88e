"""``schema_migrations``: golang-migrate (one row: current version, ``dirty``) or dbmate (one row
per applied version, varchar versions, no checksum)."""

from __future__ import annotations

from typing import Any

import psycopg

from ..model import AppliedMigration, History, HistoryKind, LocalMigration
from .common import base_name, select

KIND = HistoryKind.GOLANG_MIGRATE
KINDS = (HistoryKind.GOLANG_MIGRATE, HistoryKind.DBMATE)
TABLE = "schema_migrations"


def recognises(name: str, columns: set[str]) -> bool:
    return base_name(name) == TABLE and "version" in columns


def read(conn: psycopg.Connection[Any], name: str, columns: set[str]) -> History:
    if "dirty" in columns:
        rows = select(conn, name, ["version", "dirty"], order=None)
        return History(HistoryKind.GOLANG_MIGRATE, name, tuple(
            AppliedMigration(str(v), "", None, not bool(dirty)) for v, dirty in rows),
            current_only=True)
    rows = select(conn, name, ["version"], order=None)
    return History(HistoryKind.DBMATE, name, tuple(AppliedMigration(str(r[0])) for r in rows))


def checksum(local: LocalMigration) -> str | None:
    return None
