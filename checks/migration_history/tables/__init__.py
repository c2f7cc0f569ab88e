"""The history tables the common tools write: one module per tool, read from the subject read-only.

Each module has ``KIND``, ``TABLE`` (the default name, looked for on the search path when none is
configured), ``recognises(name, columns)``, ``read(conn, name, columns) -> History`` and
``checksum(local) -> str | None`` (exactly what the tool records for a migration, or None). Any
other table can be named with its ``version`` (and ``checksum``) column: the *configured* format.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import psycopg

from ..model import AppliedMigration, History, HistoryKind, HistoryUnreadable, LocalMigration
from . import atlas, diesel, drillbook, flyway, goose, liquibase, prisma, schema_migrations, sqitch, sqlx
from .common import columns_of, select

# Looked for in this order when no table is named.
_MODULES: tuple[ModuleType, ...] = (flyway, schema_migrations, drillbook, goose, prisma, sqitch, liquibase,
                                    atlas, sqlx, diesel)


def _ready() -> list[ModuleType]:
    return [m for m in _MODULES if hasattr(m, "read")]


def known_tables() -> tuple[str, ...]:
    """The history tables looked for when none is configured."""
    return tuple(m.TABLE for m in _ready())


def checksum_for(kind: HistoryKind, local: LocalMigration) -> str | None:
    """The checksum ``kind``'s tool records for ``local`` (None when it records none)."""
    if kind is HistoryKind.CONFIGURED:
        return drillbook.sha256_checksum(local.content)
    for module in _ready():
        if kind is module.KIND or kind in getattr(module, "KINDS", ()):
            result: str | None = module.checksum(local)
            return result
    return None


def checksum_matches(kind: HistoryKind, local: LocalMigration, recorded: str) -> bool:
    """Whether ``recorded`` is a checksum the tool accepts for ``local`` (some accept several forms:
    Prisma takes the file as is or with its line endings converted). True when it records none."""
    for module in _ready():
        if (kind is module.KIND or kind in getattr(module, "KINDS", ())) and hasattr(module, "matches"):
            accepted: bool = module.matches(local, recorded)
            return accepted
    expected = checksum_for(kind, local)
    return expected is None or expected == recorded


def read_history(conn: psycopg.Connection[Any], *, table: str | None = None,
                 version_column: str = "version",
                 checksum_column: str | None = None) -> History:
    """Read the history table (read-only). ``table=None`` finds one of the known tables."""
    name = table or _find_known_table(conn)
    columns = columns_of(conn, name)
    if not columns:
        raise HistoryUnreadable(f"history table {name} does not exist on the subject", table=name)
    try:
        for module in _ready():
            if module.recognises(name, columns):
                history: History = module.read(conn, name, columns)
                return history
        return _configured(conn, name, columns, version_column, checksum_column)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise HistoryUnreadable(f"no permission to read history table {name}: {exc}", table=name) from exc


def _configured(conn: psycopg.Connection[Any], name: str, columns: set[str], version_column: str,
                checksum_column: str | None) -> History:
    if version_column not in columns:
        raise HistoryUnreadable(
            f"history table {name} has no column {version_column!r} (columns: "
            f"{', '.join(sorted(columns))})", table=name,
            hint="name the version column (and the checksum column, if any)")
    if checksum_column is not None and checksum_column not in columns:
        raise HistoryUnreadable(f"history table {name} has no column {checksum_column!r}", table=name)
    wanted = [version_column] + ([checksum_column] if checksum_column else [])
    rows = select(conn, name, wanted, order=None)
    return History(HistoryKind.CONFIGURED, name, tuple(
        AppliedMigration(str(r[0]), "", str(r[1]) if checksum_column and r[1] is not None else None)
        for r in rows))


def _find_known_table(conn: psycopg.Connection[Any]) -> str:
    tables = known_tables()
    found = [name for name in tables if columns_of(conn, name)]
    if not found:
        raise HistoryUnreadable(
            "the subject has no migration history table (looked for "
            f"{', '.join(tables)} on the search path)")
    return found[0]
