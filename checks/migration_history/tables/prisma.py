"""Prisma Migrate's history: ``_prisma_migrations``.

The table (prisma-engines, schema-engine's PostgreSQL flavour ``create_migrations_table``)::

    id VARCHAR(36) PRIMARY KEY, checksum VARCHAR(64) NOT NULL, finished_at TIMESTAMPTZ,
    migration_name VARCHAR(255) NOT NULL, logs TEXT, rolled_back_at TIMESTAMPTZ,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(), applied_steps_count INTEGER NOT NULL DEFAULT 0

One row per *attempt*, named by the migration directory (``migration_name``):

* ``finished_at`` set, ``rolled_back_at`` NULL: applied;
* ``finished_at`` NULL, ``rolled_back_at`` NULL: failed (``prisma migrate deploy`` stops, P3009);
* ``rolled_back_at`` set (``prisma migrate resolve --rolled-back``): not applied, ignored.

``checksum`` is the SHA-256 (lower-case hex) of ``migration.sql``'s text as read. Prisma
then accepts the file as unchanged when any of three variants matches: as is, with CRLF
turned into LF, or LF into CRLF (a Windows checkout), and compares rows written by old
engines (hex without zero padding, shorter than 64) in that old form
(``script_matches_checksum``, schema-connector ``checksum.rs``). :func:`checksum` gives
what Prisma writes; :func:`matches` is Prisma's comparison.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import psycopg
from psycopg import sql

from ..model import AppliedMigration, History, HistoryKind, LocalMigration
from .common import base_name, table_sql

KIND = HistoryKind.PRISMA
TABLE = "_prisma_migrations"
_COLUMNS = {"migration_name", "checksum", "finished_at", "rolled_back_at"}
_LEADING_DIGITS = re.compile(r"^(\d+)_")
_CHECKSUM_LEN = 64


def recognises(name: str, columns: set[str]) -> bool:
    """Prisma's table name and the columns its reading needs."""
    return base_name(name) == TABLE and columns >= _COLUMNS


def read(conn: psycopg.Connection[Any], name: str, columns: set[str]) -> History:
    """One applied (or failed) migration per ``migration_name``; rolled-back attempts ignored."""
    rows = conn.execute(sql.SQL(
        "SELECT migration_name, checksum, finished_at IS NOT NULL, rolled_back_at IS NOT NULL "
        "FROM {} ORDER BY started_at, migration_name").format(table_sql(name))).fetchall()
    applied: dict[str, AppliedMigration] = {}
    for migration_name, recorded, finished, rolled_back in rows:
        if rolled_back:
            continue
        key = str(migration_name)
        row = AppliedMigration(version_of(key), key, None if recorded is None else str(recorded),
                               success=bool(finished), history_id=key)
        # A finished attempt outweighs an unfinished one for the same directory.
        if key not in applied or (row.success and not applied[key].success):
            applied[key] = row
    return History(KIND, name, tuple(applied.values()))


def version_of(migration_name: str) -> str:
    """The digits before the first ``_`` (``20230406064219_init`` → ``20230406064219``)."""
    match = _LEADING_DIGITS.match(migration_name)
    return match[1] if match else migration_name


def checksum(local: LocalMigration) -> str | None:
    """What Prisma writes: SHA-256 hex of migration.sql's bytes (UTF-8 text as read)."""
    return hashlib.sha256(local.content).hexdigest()


def matches(local: LocalMigration, recorded: str) -> bool:
    """Prisma's ``script_matches_checksum``: line-ending variants and the old unpadded form."""
    text = local.content
    variants = (text, text.replace(b"\r\n", b"\n"), text.replace(b"\n", b"\r\n"))
    for variant in variants:
        digest = hashlib.sha256(variant).digest()
        shown = (digest.hex() if not recorded or len(recorded) == _CHECKSUM_LEN
                 else "".join(f"{byte:x}" for byte in digest))
        if shown == recorded:
            return True
    return False
