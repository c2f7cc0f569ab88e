"""Flyway-style ``validate``: a subject's migration history against the files on disk.

The history is read from the subject (read-only) in one of the formats the
common tools write:

==========================  ==========================================================
``flyway_schema_history``   Flyway: one row per migration, CRC32 checksum, success flag
``schema_migrations``       golang-migrate (one row: current version, ``dirty``) or
                            dbmate (one row per applied version, no checksum)
``drillbook_schema_version`` drillbook's own runner (and the sandbox product): id, name,
                            SHA-256 of the file
any configured table        ``version`` (and optionally ``checksum``) columns named by you
==========================  ==========================================================

:func:`validate_history` then reports, by version: **pending** (on disk, not
applied, newer than everything applied), **out of order** (on disk, not
applied, older than something applied), **missing** (applied, no longer on
disk), **edited** (applied, but the file's checksum changed since) and
**failed** (the tool recorded a failure, or golang-migrate's ``dirty`` flag).

Errors::

    DrillbookError
    └── HistoryUnreadable    no known history table, or it cannot be read
"""

from __future__ import annotations

import enum
import hashlib
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from .errors import DrillbookError
from .verdict import Verdict

_VERSION_PART = re.compile(r"\d+")


def version_key(text: str) -> tuple[int, ...]:
    """A version as the tools compare them: numeric parts, trailing zeros insignificant.

    ``"0003"`` → ``(3,)``; Flyway's ``"1.1"`` and ``"1_1"`` → ``(1, 1)``; ``"1.0"`` equals ``"1"``.
    Raises ValueError on text without digits.
    """
    parts = [int(p) for p in _VERSION_PART.findall(text)]
    if not parts:
        raise ValueError(f"version {text!r} has no digits")
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def show_version(key: tuple[int, ...]) -> str:
    """``(1, 1)`` → ``"1.1"``."""
    return ".".join(str(p) for p in key)


def flyway_checksum(content: bytes) -> int:
    """Flyway's checksum: CRC32 over the file's lines without line breaks (BOM dropped), signed."""
    text = content.decode("utf-8", errors="replace")
    text = text.removeprefix("\ufeff")
    crc = 0
    # Java's BufferedReader.readLine splits on \n, \r and \r\n alike.
    # A trailing break yields an empty last piece, which (like readLine) adds nothing.
    for line in re.split(r"\r\n|\r|\n", text):
        crc = zlib.crc32(line.encode("utf-8"), crc)
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def sha256_checksum(content: bytes) -> str:
    """drillbook's own runner records the SHA-256 of the file's bytes."""
    return hashlib.sha256(content).hexdigest()


class HistoryKind(enum.StrEnum):
    FLYWAY = "flyway"
    GOLANG_MIGRATE = "golang-migrate"
    DBMATE = "dbmate"
    DRILLBOOK = "drillbook"
    CONFIGURED = "configured"


class HistoryUnreadable(DrillbookError):
    default_hint = (
        "name the history table (e.g. `flyway_schema_history`, `schema_migrations`) "
        "and check the subject's user may read it"
    )


@dataclass(frozen=True)
class AppliedMigration:
    """One row of the history as the tool recorded it."""

    version: str
    description: str = ""
    checksum: str | None = None
    success: bool = True


@dataclass(frozen=True)
class History:
    """The applied migrations read from a subject, and where they came from."""

    kind: HistoryKind
    table: str
    applied: tuple[AppliedMigration, ...]
    # golang-migrate records only the current version: everything up to it counts as applied.
    current_only: bool = False


@dataclass(frozen=True)
class LocalMigration:
    """A migration on disk, as history validation needs it."""

    version: str
    description: str
    file: str
    content: bytes

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.version)

    def checksum(self, kind: HistoryKind) -> str | None:
        """The checksum the given tool would have recorded, or None when it records none."""
        if kind is HistoryKind.FLYWAY:
            return str(flyway_checksum(self.content))
        if kind in (HistoryKind.DRILLBOOK, HistoryKind.CONFIGURED):
            return sha256_checksum(self.content)
        return None


KNOWN_TABLES = ("flyway_schema_history", "schema_migrations", "drillbook_schema_version")


def read_history(conn: psycopg.Connection[Any], *, table: str | None = None,
                 version_column: str = "version",
                 checksum_column: str | None = None) -> History:
    """Read the history table (read-only). ``table=None`` finds one of the known tables."""
    name = table or _find_known_table(conn)
    columns = _columns(conn, name)
    if not columns:
        raise HistoryUnreadable(f"history table {name} does not exist on the subject", table=name)
    try:
        if name.split(".")[-1] == "flyway_schema_history" and {"version", "checksum", "success"} <= columns:
            return _flyway(conn, name)
        if name.split(".")[-1] == "schema_migrations" and "version" in columns:
            return _schema_migrations(conn, name, columns)
        if name.split(".")[-1] == "drillbook_schema_version" and {"id", "sha256"} <= columns:
            rows = _select(conn, name, ["id", "name", "sha256"], order="id")
            return History(HistoryKind.DRILLBOOK, name, tuple(
                AppliedMigration(str(r[0]), str(r[1]), str(r[2])) for r in rows))
        if version_column not in columns:
            raise HistoryUnreadable(
                f"history table {name} has no column {version_column!r} (columns: "
                f"{', '.join(sorted(columns))})", table=name,
                hint="name the version column (and the checksum column, if any)")
        if checksum_column is not None and checksum_column not in columns:
            raise HistoryUnreadable(f"history table {name} has no column {checksum_column!r}",
                                    table=name)
        wanted = [version_column] + ([checksum_column] if checksum_column else [])
        rows = _select(conn, name, wanted, order=None)
        return History(HistoryKind.CONFIGURED, name, tuple(
            AppliedMigration(str(r[0]), "", str(r[1]) if checksum_column and r[1] is not None else None)
            for r in rows))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise HistoryUnreadable(f"no permission to read history table {name}: {exc}", table=name) from exc


def _find_known_table(conn: psycopg.Connection[Any]) -> str:
    found = [name for name in KNOWN_TABLES if _columns(conn, name)]
    if not found:
        raise HistoryUnreadable(
            "the subject has no migration history table (looked for "
            f"{', '.join(KNOWN_TABLES)} on the search path)")
    return found[0]


def _columns(conn: psycopg.Connection[Any], name: str) -> set[str]:
    row = conn.execute("SELECT to_regclass(%s)::oid", (name,)).fetchone()
    if not row or row[0] is None:
        return set()
    return {str(r[0]) for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped",
        (row[0],)).fetchall()}


def _table_sql(name: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(part) for part in name.split("."))


def _select(conn: psycopg.Connection[Any], name: str, columns: list[str],
            order: str | None) -> list[tuple[Any, ...]]:
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), _table_sql(name))
    if order:
        query = sql.SQL("{} ORDER BY {}").format(query, sql.Identifier(order))
    return list(conn.execute(query).fetchall())


def _flyway(conn: psycopg.Connection[Any], name: str) -> History:
    rows = conn.execute(sql.SQL(
        "SELECT version, description, checksum, success, type FROM {} ORDER BY installed_rank"
    ).format(_table_sql(name))).fetchall()
    applied = []
    for version, description, checksum, success, kind in rows:
        # Baseline and schema-creation rows mark a state, not a file to compare with.
        if version is None or kind in ("SCHEMA", "BASELINE", "DELETE", "UNDO_SQL"):
            continue
        applied.append(AppliedMigration(str(version), str(description or ""),
                                        None if checksum is None else str(checksum), bool(success)))
    return History(HistoryKind.FLYWAY, name, tuple(applied))


def _schema_migrations(conn: psycopg.Connection[Any], name: str, columns: set[str]) -> History:
    if "dirty" in columns:
        rows = _select(conn, name, ["version", "dirty"], order=None)
        return History(HistoryKind.GOLANG_MIGRATE, name, tuple(
            AppliedMigration(str(v), "", None, not bool(dirty)) for v, dirty in rows),
            current_only=True)
    rows = _select(conn, name, ["version"], order=None)
    return History(HistoryKind.DBMATE, name, tuple(AppliedMigration(str(r[0])) for r in rows))


@dataclass
class HistoryReport:
    """The outcome of comparing a history with the files, by category."""

    applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    edited: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def pending_versions(self) -> list[str]:
        return list(self.pending)

    def to_evidence(self) -> dict[str, Any]:
        return {"applied": self.applied, "pending": self.pending, "out_of_order": self.out_of_order,
                "missing": self.missing, "edited": self.edited, "failed": self.failed,
                "details": self.details}


def compare_history(history: History, local: Sequence[LocalMigration]) -> HistoryReport:
    """Sort every version into applied / pending / out-of-order / missing / edited / failed."""
    report = HistoryReport()
    by_key = {m.key: m for m in local}
    applied: dict[tuple[int, ...], AppliedMigration] = {}
    for row in history.applied:
        try:
            applied[version_key(row.version)] = row
        except ValueError:
            report.missing.append(row.version)
            report.details.append(f"history row with version {row.version!r} names no numeric version")
    if history.current_only:
        # golang-migrate: one row, the current version; every file up to it is applied.
        current = max(applied, default=None)
        if current is not None:
            row = applied[current]
            applied = {k: AppliedMigration(show_version(k), success=True) for k in by_key if k <= current}
            applied[current] = row
    highest = max(applied, default=None)
    for key, row in sorted(applied.items()):
        shown = show_version(key)
        if not row.success:
            report.failed.append(shown)
            report.details.append(f"{shown}: recorded as failed in {history.table}"
                                  + (" (dirty)" if history.kind is HistoryKind.GOLANG_MIGRATE else ""))
        migration = by_key.get(key)
        if migration is None:
            report.missing.append(shown)
            report.details.append(f"{shown} {row.description}: applied on the subject, "
                                  "but no file for it on disk".replace("  ", " "))
            continue
        report.applied.append(shown)
        expected = migration.checksum(history.kind)
        if row.checksum is not None and expected is not None and row.checksum != expected:
            report.edited.append(shown)
            report.details.append(f"{shown} ({migration.file}): edited after it was applied — "
                                  f"checksum on the subject {row.checksum}, file now {expected}")
    for key, migration in sorted(by_key.items()):
        if key in applied:
            continue
        shown = show_version(key)
        if highest is not None and key < highest:
            report.out_of_order.append(shown)
            report.details.append(f"{shown} ({migration.file}): not applied, but older than "
                                  f"applied {show_version(highest)} (out of order)")
        else:
            report.pending.append(shown)
    return report


def validate_history(history: History, local: Sequence[LocalMigration], *,
                     allow_pending: bool = True, check_id: str = "migrations.history") -> Verdict:
    """Failed on missing, edited, out-of-order or failed migrations (and pending, unless allowed)."""
    report = compare_history(history, local)
    problems = []
    for label, versions in (("missing", report.missing), ("edited", report.edited),
                            ("out of order", report.out_of_order), ("failed", report.failed)):
        if versions:
            problems.append(f"{label}: {', '.join(versions)}")
    if report.pending and not allow_pending:
        problems.append(f"pending: {', '.join(report.pending)}")
    evidence = {"table": history.table, "format": history.kind.value, **report.to_evidence()}
    summary = (f"{len(report.applied)} applied, {len(report.pending)} pending "
               f"({', '.join(report.pending) or 'none'})")
    if problems:
        detail = "; ".join(report.details[:4])
        return Verdict.failed(
            check_id, f"migration history in {history.table} does not match the files: "
                      f"{'; '.join(problems)} ({summary}){': ' + detail if detail else ''}",
            measured=problems, expected="no missing, edited, out-of-order or failed migrations",
            evidence=evidence)
    return Verdict.passed(check_id, f"migration history in {history.table} matches the files: {summary}",
                          measured=summary, evidence=evidence)


def known_tables() -> Iterable[str]:
    """The history tables looked for when none is configured."""
    return KNOWN_TABLES


def checksums_of(local: Sequence[LocalMigration], kind: HistoryKind) -> Mapping[str, str | None]:
    """Version → checksum as the tool would record it (for tests and evidence)."""
    return {m.version: m.checksum(kind) for m in local}
