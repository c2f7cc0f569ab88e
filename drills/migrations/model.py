"""What a migration set is, whatever tool wrote it: steps, their SQL parts, and the errors.

A layout (:mod:`drills.migrations.layouts`) reads a folder into a :class:`MigrationSet`; replay
and the round trip (:mod:`drills.migrations.replay`) only ever see these types, so a new tool is
a new layout module and nothing else.

A step's SQL is a :class:`Part`: a whole file (Flyway, golang-migrate, Prisma, …) or a section of
one (goose's ``-- +goose Up``, dbmate's ``-- migrate:up``, one Liquibase changeset). Error lines
are always lines of the file, so a part remembers where its text starts.

Errors::

    DrillbookError
    └── MigrationError
        ├── LayoutError        no migrations, unknown or mixed layout, duplicate version,
        │                      unreadable file (→ "could not check", exit 2)
        └── MigrationFailed    a step failed in scratch: file, statement, line
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from checks.errors import DrillbookError
from checks.migration_history import LocalMigration, version_key


class MigrationError(DrillbookError):
    pass


class LayoutError(MigrationError):
    default_hint = (
        "name files like V3__add_x.sql (Flyway), 000003_add_x.up.sql (golang-migrate), "
        "V0003.Add_X.up.sql, 0003_add_x/up.sql or 0003_add_x.sql, or set the layout explicitly"
    )


class IntegrityFailed(LayoutError):
    """The folder's own integrity record (``atlas.sum``) disagrees with its files: a finding."""

    check_id = "migrations.integrity"
    default_hint = "the migration files changed after their checksums were recorded: review the change"


class MigrationFailed(MigrationError):
    default_hint = "fix the statement named above; nothing was written outside the scratch database"


class Layout(enum.StrEnum):
    """Every layout drillbook reads, by the name ``--layout`` and ``[migrations] layout`` take."""

    FLYWAY = "flyway"
    DOTTED = "dotted"
    UPDOWN = "updown"
    DIRECTORY = "directory"
    NUMBERED = "numbered"
    GOOSE = "goose"
    DBMATE = "dbmate"
    PRISMA = "prisma"
    SQITCH = "sqitch"
    LIQUIBASE = "liquibase"
    ATLAS = "atlas"
    SQLX = "sqlx"
    DIESEL = "diesel"


class Direction(enum.StrEnum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class Statement:
    """One statement of a file: its text and the file line it starts on (1-based)."""

    text: str
    line: int
    needs_autocommit: bool = False


@dataclass(frozen=True)
class Part:
    """The SQL one direction of a step runs: a whole file, or a section of one."""

    path: Path
    # None: the whole file, read at replay time; else this section's text.
    text: str | None = None
    # The file line where ``text`` starts, so that a failure names the file's line.
    first_line: int = 1
    # False: the statements run one by one in autocommit (goose NO TRANSACTION, dbmate
    # transaction:false, atlas txmode none, sqlx no-transaction, Liquibase runInTransaction:false).
    transactional: bool = True
    # The layout's own split (goose StatementBegin/End, Liquibase endDelimiter); None: PostgreSQL's
    # parser splits the text.
    statements: tuple[Statement, ...] | None = None
    # True when the tool runs a transactional part inside one transaction whatever it holds
    # (dbmate, sqlx, Liquibase): a `CREATE INDEX CONCURRENTLY` there fails, as it would in
    # production, instead of being moved to autocommit as Flyway does.
    wrapped: bool = False

    @property
    def whole_file(self) -> bool:
        return self.text is None


@dataclass(frozen=True)
class Migration:
    """One step: its up part and, when the tool has them, its down part and verify script."""

    version: str
    description: str
    up: Part
    down: Part | None = None
    repeatable: bool = False
    # sqitch: run after the deploy inside a rolled-back transaction, reported as a check of the step.
    verify: Part | None = None
    # How the tool's history names the step when not by version (a sqitch change, "id:author").
    history_id: str | None = None
    # What the tool's checksum covers when it is not the up file's bytes (a Liquibase changeset).
    hashed: bytes | None = None

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.version) if not self.repeatable else ()

    @property
    def label(self) -> str:
        return f"{self.version} ({self.description})" if self.description else self.version


@dataclass(frozen=True)
class MigrationSet:
    """The migrations of one folder (or several, chained), in the order the tool applies them."""

    directory: Path
    layout: str
    migrations: tuple[Migration, ...]
    # Every folder the set was read from, in order (one unless chained).
    directories: tuple[Path, ...] = ()
    # True when versions are positions in a plan (sqitch, Liquibase), not the tool's own numbers:
    # chaining renumbers them after the folders before.
    ordinal_versions: bool = False

    def versioned(self) -> list[Migration]:
        return [m for m in self.migrations if not m.repeatable]

    def find(self, version: str) -> Migration:
        key = version_key(version)
        for migration in self.versioned():
            if migration.key == key:
                return migration
        raise LayoutError(f"{self.directory}: no migration with version {version}",
                          directory=str(self.directory))

    def after(self, key: tuple[int, ...] | None) -> list[Migration]:
        """Versioned migrations newer than ``key`` (all when None), in order."""
        return [m for m in self.versioned() if key is None or m.key > key]

    def up_to(self, key: tuple[int, ...] | None) -> list[Migration]:
        """Versioned migrations up to and including ``key`` (all when None)."""
        return [m for m in self.versioned() if key is None or m.key <= key]

    def for_history(self) -> list[LocalMigration]:
        """The versioned migrations as history validation sees them (version, file, hashed bytes)."""
        return [LocalMigration(m.version, m.description, self.relative(m.up.path),
                               m.hashed if m.hashed is not None else m.up.path.read_bytes(),
                               history_id=m.history_id)
                for m in self.versioned()]

    def relative(self, path: Path) -> str:
        """``path`` as the report shows it: relative to its folder (prefixed by it when chained)."""
        folders = self.directories or (self.directory,)
        for folder in folders:
            try:
                inner = str(path.relative_to(folder))
            except ValueError:
                continue
            return inner if len(folders) == 1 else f"{folder.name}/{inner}"
        return str(path)

    def describe(self) -> str:
        folders = self.directories if len(self.directories) > 1 else (self.directory,)
        where = ", ".join(str(d) for d in folders)
        return f"{len(self.migrations)} migrations ({self.layout} layout) in {where}"
