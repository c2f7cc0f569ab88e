"""History for migrations run by the team's own command: the tool's table in scratch vs the subject.

drillbook cannot list migrations written as code, so the scratch database the
command migrated is the reference: the rows the tool wrote there (its own
table: ``alembic_version``, ``schema_migrations``, ``django_migrations``,
``knex_migrations``, or one named in config) are compared with the same table
on the subject, by the columns that name a migration (never timestamps or
serial ids, which differ by construction):

- a subject row not in scratch → **missing** (applied there, unknown to the code): failed;
- a scratch row not on the subject → **pending**: passed with ``allow_pending``, else failed.

Left out, on purpose: checksums (these tools record none), order, and the
revision graph. A table that records only the current state (Alembic's
``alembic_version`` holds the head revision, not the applied ones) cannot tell
a subject *behind* the head from one at a revision the code no longer has: a
difference there is a **warning** naming both revisions, not a failure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from .migration_history import HistoryUnreadable
from .verdict import Verdict

CHECK_ID = "migrations.history"
_SHOWN_ROWS = 6  # rows named in a message; all of them are evidence


@dataclass(frozen=True)
class ToolTable:
    """A migration tool's own table, and the columns that name one applied migration."""

    name: str
    key_columns: tuple[str, ...]
    tool: str
    current_only: bool = False


KNOWN_TOOL_TABLES = (
    ToolTable("alembic_version", ("version_num",), "Alembic", current_only=True),
    ToolTable("django_migrations", ("app", "name"), "Django"),
    ToolTable("knex_migrations", ("name",), "Knex"),
    # Rails and Ecto (and dbmate): one row per applied version.
    ToolTable("schema_migrations", ("version",), "Rails/Ecto"),
)
# Bookkeeping the tools keep next to their history: never part of a schema comparison either.
TOOL_BOOKKEEPING = ("ar_internal_metadata", "knex_migrations_lock")
_VARYING_TYPES = ("timestamp", "date", "time", "interval")


def tool_tables() -> tuple[str, ...]:
    """Every table a migrate command's tool keeps for itself (left out of schema comparisons)."""
    return (*(t.name for t in KNOWN_TOOL_TABLES), *TOOL_BOOKKEEPING)


def find_tool_table(conn: psycopg.Connection[Any], configured: str | None = None) -> ToolTable | None:
    """The tool's table in the connected database: the configured one, else the first known one found."""
    if configured is not None:
        known = next((t for t in KNOWN_TOOL_TABLES if t.name == configured.split(".")[-1]), None)
        columns = _columns(conn, configured)
        if not columns:
            return None
        if known is not None and set(known.key_columns) <= set(columns):
            return ToolTable(configured, known.key_columns, known.tool, known.current_only)
        keys = tuple(c for c, kind in columns.items()
                     if c != "id" and not any(v in kind for v in _VARYING_TYPES))
        return ToolTable(configured, keys or tuple(columns), "configured")
    for table in KNOWN_TOOL_TABLES:
        columns = _columns(conn, table.name)
        if columns and set(table.key_columns) <= set(columns):
            return table
    return None


def _columns(conn: psycopg.Connection[Any], name: str) -> dict[str, str]:
    row = conn.execute("SELECT to_regclass(%s)::oid", (name,)).fetchone()
    if not row or row[0] is None:
        return {}
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute"
        " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (row[0],)).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def read_rows(conn: psycopg.Connection[Any], table: ToolTable) -> frozenset[tuple[str, ...]]:
    """The table's rows by their key columns, as text (read-only)."""
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in table.key_columns),
        sql.SQL(".").join(sql.Identifier(p) for p in table.name.split(".")))
    try:
        return frozenset(tuple("" if v is None else str(v) for v in row) for row in conn.execute(query))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise HistoryUnreadable(f"no permission to read {table.name}: {exc}", table=table.name) from exc


def _show(rows: Iterable[tuple[str, ...]]) -> list[str]:
    return ["/".join(row) for row in sorted(rows)]


def compare_tool_history(table: ToolTable, scratch: frozenset[tuple[str, ...]],
                         subject: frozenset[tuple[str, ...]], *, subject_name: str, command: str,
                         allow_pending: bool = True) -> Verdict:
    """Missing (subject only) fails; pending (scratch only) fails only without ``allow_pending``."""
    missing, pending = _show(subject - scratch), _show(scratch - subject)
    evidence = {"table": table.name, "tool": table.tool, "key_columns": list(table.key_columns),
                "current_only": table.current_only, "command": command, "applied": _show(scratch & subject),
                "missing": missing, "pending": pending}
    shown_pending = ", ".join(pending[:_SHOWN_ROWS]) or "none"
    summary = f"{len(scratch & subject)} applied, {len(pending)} pending ({shown_pending})"
    if table.current_only and (missing or pending):
        return Verdict.warning(
            CHECK_ID, f"{table.name} on {subject_name} holds {', '.join(_show(subject)) or 'nothing'}, "
                      f"`{command}` leaves {', '.join(_show(scratch)) or 'nothing'}: the subject is behind "
                      f"the code's head or at a revision the code no longer has ({table.name} records only "
                      "the current revision, so drillbook cannot tell which)",
            measured={"subject": _show(subject), "head": _show(scratch)}, expected="the same rows",
            evidence=evidence)
    problems = []
    if missing:
        problems.append(f"missing (applied on {subject_name}, not written by `{command}`): "
                        + ", ".join(missing[:_SHOWN_ROWS]) + (" …" if len(missing) > _SHOWN_ROWS else ""))
    if pending and not allow_pending:
        problems.append("pending: " + ", ".join(pending[:_SHOWN_ROWS]))
    if problems:
        return Verdict.failed(CHECK_ID, f"migration history in {table.name} does not match `{command}`: "
                                        f"{'; '.join(problems)} ({summary})",
                              measured=problems, expected="no missing migrations", evidence=evidence)
    return Verdict.passed(CHECK_ID, f"migration history in {table.name} matches `{command}`: {summary}",
                          measured=summary, evidence=evidence)


def history_against(dsn: str, subject_name: str, table: ToolTable | None,
                    scratch_rows: frozenset[tuple[str, ...]], *, command: str,
                    allow_pending: bool = True) -> Verdict:
    """Read the tool's table on the subject (read-only) and compare it with what the command wrote."""
    if table is None:
        return Verdict.not_applicable(
            CHECK_ID, f"no history validation: `{command}` wrote none of the known tool tables "
                      f"({', '.join(t.name for t in KNOWN_TOOL_TABLES)}); name it with --history-table "
                      "or `Given the migration history table \"…\"`")
    try:
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            conn.read_only = True
            found = find_tool_table(conn, table.name)
            rows = read_rows(conn, found) if found is not None else frozenset()
    except (psycopg.Error, HistoryUnreadable) as exc:
        return Verdict.error(CHECK_ID, f"cannot read {table.name} on {subject_name}: {exc}")
    if found is None:
        return Verdict.failed(CHECK_ID, f"{subject_name} has no {table.name} table, which `{command}` "
                                        "writes: the subject was never migrated by this tool",
                              evidence={"table": table.name, "command": command})
    return compare_tool_history(table, scratch_rows, rows, subject_name=subject_name, command=command,
                                allow_pending=allow_pending)
