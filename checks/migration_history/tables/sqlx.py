"""sqlx's ``_sqlx_migrations``: one row per applied migration with the SHA-384 of its SQL.

sqlx (launchbadge/sqlx, ``sqlx-postgres/src/migrate.rs``) creates ``version bigint primary key,
description text, installed_on timestamptz, success boolean, checksum bytea, execution_time
bigint``; it inserts ``success = true`` with the migration's checksum, and a row left with
``success = false`` is a dirty (failed) migration. The checksum (``sqlx-core/src/migrate/
migration.rs``: ``Sha384::digest(sql)``) covers the up file's text exactly as read — no line-break
or byte-order-mark normalisation — unless ``[migrate] ignored-chars`` is set in ``sqlx.toml``
(sqlx 0.9), which drillbook does not read. Checksums are compared as lowercase hex.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
from psycopg import sql

from ..model import AppliedMigration, History, HistoryKind, LocalMigration
from .common import table_sql

KIND = HistoryKind.SQLX
TABLE = "_sqlx_migrations"
_COLUMNS = {"version", "description", "success", "checksum", "execution_time"}


def sqlx_checksum(content: bytes) -> str:
    """SHA-384 of the migration's bytes, as lowercase hex (sqlx stores the raw 48 bytes)."""
    return hashlib.sha384(content).hexdigest()


def recognises(name: str, columns: set[str]) -> bool:
    """sqlx's columns (its table can be renamed); Flyway's table has them too, plus installed_rank."""
    return columns >= _COLUMNS and "installed_rank" not in columns


def read(conn: psycopg.Connection[Any], name: str, columns: set[str]) -> History:
    """Every row, by version: its description, success flag and checksum as hex (read-only)."""
    rows = conn.execute(sql.SQL(
        "SELECT version, description, success, checksum FROM {} ORDER BY version"
    ).format(table_sql(name))).fetchall()
    return History(KIND, name, tuple(
        AppliedMigration(str(version), str(description or ""),
                         None if digest is None else bytes(digest).hex(), bool(success))
        for version, description, success, digest in rows))


def checksum(local: LocalMigration) -> str | None:
    return sqlx_checksum(local.content)
