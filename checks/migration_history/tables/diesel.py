"""Diesel's history: ``__diesel_schema_migrations``.

The table (diesel-rs/diesel ``diesel_migrations/src/migration/setup_migration_table.sql``)::

    version VARCHAR(50) PRIMARY KEY NOT NULL,
    run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP

One row per applied migration, its version as ``version_from_string`` gives it (the
directory name before the first ``_`` without dashes: ``20220426153628``). Diesel records
no checksum and no failure: a failed migration's transaction rolls its row back with it.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ..model import AppliedMigration, History, HistoryKind, LocalMigration
from .common import base_name, select

KIND = HistoryKind.DIESEL
TABLE = "__diesel_schema_migrations"


def recognises(name: str, columns: set[str]) -> bool:
    """Diesel's table name with its ``version`` column."""
    return base_name(name) == TABLE and "version" in columns


def read(conn: psycopg.Connection[Any], name: str, columns: set[str]) -> History:
    """Every recorded version."""
    rows = select(conn, name, ["version"], order="version")
    return History(KIND, name, tuple(AppliedMigration(str(row[0])) for row in rows))


def checksum(local: LocalMigration) -> str | None:
    """Diesel records no checksum."""
    return None
