"""Migration sets on disk, their replay into scratch, and the up→down→up round trip.

**Layouts** (detected from the file names, or named explicitly):

============  ==========================================  ==========================
layout        files                                        ordered by
============  ==========================================  ==========================
``flyway``    ``V3__add_x.sql``, undo ``U3__add_x.sql``,  version parts (``1.1`` <
              repeatable ``R__views.sql``                   ``1.2`` < ``2``); then
                                                            repeatables by description
``dotted``    ``V0003.Add_X.up.sql`` / ``.down.sql``        integer version
              (Authelia)
``updown``    ``000003_add_x.up.sql`` / ``.down.sql``       integer version
              (golang-migrate, dbmate-style)
``directory`` ``0003_add_x/up.sql`` and ``down.sql``        integer version
``numbered``  ``0003_add_x.sql`` (up only)                  integer version
============  ==========================================  ==========================

Two files claiming the same version (``0003_a.up.sql`` and ``3_b.up.sql``, or
Flyway's ``V1__a.sql`` and ``V1.0__b.sql``) are an error naming both.

**Replay** applies the steps over one psycopg connection, each step in its own
transaction (or, when the file holds its own ``BEGIN``/``COMMIT`` or a
statement PostgreSQL refuses inside a transaction such as ``CREATE INDEX
CONCURRENTLY``, statement by statement in autocommit, as the tools do). Files
are split into statements with PostgreSQL's own parser (pglast), so a failing
step names its file, the statement and the line; a file pglast cannot parse
is sent whole and the server's error position gives the line. Every step is
timed. Empty files are accepted (a no-op step). The whole replay has one deadline
(``[run] migration_timeout``, :mod:`drills.deadlines`): past it the server cancels the
running statement and the failure names its file and line and the limit.

**Round trip**: up to head, down to zero, up again, with a schema snapshot
(:mod:`checks.schema`) at every version; see :func:`round_trip`.

Only scratch is ever written: every entry point calls ``require_scratch()``.

Errors::

    DrillbookError
    └── MigrationError
        ├── LayoutError        no migrations, unknown or mixed layout, duplicate version,
        │                      unreadable file (→ "could not check", exit 2)
        └── MigrationFailed    a step failed in scratch: file, statement, line
"""

from __future__ import annotations

import enum
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq

from checks.errors import DrillbookError
from checks.migration_history import LocalMigration, show_version, version_key
from checks.redact import redact
from checks.schema import SchemaDiff, SchemaSnapshot, diff_schemas, snapshot
from checks.verdict import Verdict

from . import deadlines
from .deadlines import Deadline, Limit
from .targets import Journal, PostgresTarget

STATEMENT_EXCERPT = 200
_INSUFFICIENT_PRIVILEGE = "42501"


class MigrationError(DrillbookError):
    pass


class LayoutError(MigrationError):
    default_hint = (
        "name files like V3__add_x.sql (Flyway), 000003_add_x.up.sql (golang-migrate), "
        "V0003.Add_X.up.sql, 0003_add_x/up.sql or 0003_add_x.sql, or set the layout explicitly"
    )


class MigrationFailed(MigrationError):
    default_hint = "fix the statement named above; nothing was written outside the scratch database"


class Layout(enum.StrEnum):
    FLYWAY = "flyway"
    DOTTED = "dotted"
    UPDOWN = "updown"
    DIRECTORY = "directory"
    NUMBERED = "numbered"


class Direction(enum.StrEnum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class ParsedName:
    """What a file name says: version (None for repeatables), description, direction."""

    version: str | None
    description: str
    direction: Direction


_FLYWAY = re.compile(r"^(?P<prefix>[VU])(?P<version>\d+(?:[._]\d+)*)__(?P<desc>.*)\.sql$")
_FLYWAY_REPEATABLE = re.compile(r"^R__(?P<desc>.+)\.sql$")
_DOTTED = re.compile(r"^V(?P<version>\d+)\.(?P<desc>.+)\.(?P<dir>up|down)\.sql$")
_UPDOWN = re.compile(r"^(?P<version>\d+)_(?P<desc>.+)\.(?P<dir>up|down)\.sql$")
_NUMBERED = re.compile(r"^(?P<version>\d+)[_-](?P<desc>.+)\.sql$")
_STEP_DIR = re.compile(r"^(?P<version>\d+)(?:[_-](?P<desc>.*))?$")

# Tried in this order: the most specific pattern first (a golang-migrate name also
# fits the numbered pattern, a numbered name never fits golang-migrate's).
_FILE_LAYOUTS = (Layout.FLYWAY, Layout.DOTTED, Layout.UPDOWN, Layout.NUMBERED)


def parse_name(layout: Layout, name: str) -> ParsedName | None:
    """Parse one file name (for ``directory``: the step directory's name) in a layout."""
    if layout is Layout.FLYWAY:
        match = _FLYWAY.match(name)
        if match:
            direction = Direction.UP if match["prefix"] == "V" else Direction.DOWN
            return ParsedName(match["version"], match["desc"].replace("_", " "), direction)
        repeatable = _FLYWAY_REPEATABLE.match(name)
        if repeatable:
            return ParsedName(None, repeatable["desc"].replace("_", " "), Direction.UP)
        return None
    if layout is Layout.DOTTED:
        match = _DOTTED.match(name)
        return ParsedName(match["version"], match["desc"], Direction(match["dir"])) if match else None
    if layout is Layout.UPDOWN:
        match = _UPDOWN.match(name)
        return ParsedName(match["version"], match["desc"], Direction(match["dir"])) if match else None
    if layout is Layout.NUMBERED:
        match = _NUMBERED.match(name)
        if not match or name.endswith((".up.sql", ".down.sql")):
            return None
        return ParsedName(match["version"], match["desc"], Direction.UP)
    match = _STEP_DIR.match(name)
    return ParsedName(match["version"], match["desc"] or "", Direction.UP) if match else None


@dataclass(frozen=True)
class Migration:
    """One version: its up file and, when the layout has them, its down file."""

    version: str
    description: str
    up: Path
    down: Path | None = None
    repeatable: bool = False

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.version) if not self.repeatable else ()

    @property
    def label(self) -> str:
        return f"{self.version} ({self.description})" if self.description else self.version


@dataclass(frozen=True)
class MigrationSet:
    """The migrations of one directory, in the order the tool applies them."""

    directory: Path
    layout: Layout
    migrations: tuple[Migration, ...]

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
        """The versioned migrations as history validation sees them (version, file, bytes)."""
        return [LocalMigration(m.version, m.description, self.relative(m.up), m.up.read_bytes())
                for m in self.versioned()]

    def relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.directory))
        except ValueError:
            return str(path)

    def describe(self) -> str:
        return f"{len(self.migrations)} migrations ({self.layout.value} layout) in {self.directory}"


def detect_layout(directory: Path) -> Layout:
    """The one layout every migration file in ``directory`` fits."""
    files, step_dirs = _entries(directory)
    if step_dirs and not files:
        return Layout.DIRECTORY
    if step_dirs and files:
        raise LayoutError(
            f"{directory}: mixes step directories ({step_dirs[0].name}/) with migration files "
            f"({files[0].name})", directory=str(directory))
    if not files:
        raise LayoutError(f"{directory}: no migrations found (no *.sql files, no step directories "
                          "with up.sql)", directory=str(directory))
    for layout in _FILE_LAYOUTS:
        if all(parse_name(layout, f.name) is not None for f in files):
            return layout
    # Name the file that fits no layout at all, else the two that disagree.
    for f in files:
        if all(parse_name(layout, f.name) is None for layout in _FILE_LAYOUTS):
            raise LayoutError(f"{directory}: unknown migration layout: {f.name} fits none of "
                              "flyway, dotted, updown, numbered", directory=str(directory), file=f.name)
    first = next(layout for layout in _FILE_LAYOUTS if parse_name(layout, files[0].name))
    other = next(f for f in files if parse_name(first, f.name) is None)
    raise LayoutError(f"{directory}: mixed layouts: {files[0].name} is {first.value}, "
                      f"{other.name} is not", directory=str(directory))


def _entries(directory: Path) -> tuple[list[Path], list[Path]]:
    if not directory.is_dir():
        raise LayoutError(f"migration directory {directory} does not exist or is not a directory",
                          directory=str(directory), hint="give the folder that holds the migration files")
    try:
        children = sorted(directory.iterdir())
    except OSError as exc:
        raise LayoutError(f"cannot list {directory}: {exc.strerror}", directory=str(directory)) from exc
    files = [p for p in children if p.is_file() and p.name.endswith(".sql")]
    step_dirs = [p for p in children if p.is_dir() and (p / "up.sql").is_file()]
    for child in children:
        # A step directory with SQL in it but no up.sql would silently be skipped otherwise.
        if (child.is_dir() and _STEP_DIR.match(child.name) and not (child / "up.sql").is_file()
                and any(child.glob("*.sql"))):
            raise LayoutError(f"{directory}: step directory {child.name}/ has no up.sql",
                              directory=str(directory), file=child.name)
    return files, step_dirs


def load_migrations(directory: Path, *, layout: Layout | str | None = None) -> MigrationSet:
    """Read a migration directory: detect (or use) the layout, pair up/down, order, reject duplicates."""
    directory = directory.resolve()
    chosen = Layout(layout) if layout else detect_layout(directory)
    files, step_dirs = _entries(directory)
    ups: dict[tuple[int, ...], tuple[str, str, Path]] = {}
    downs: dict[tuple[int, ...], tuple[str, Path]] = {}
    repeatables: list[Migration] = []
    if chosen is Layout.DIRECTORY:
        if not step_dirs:
            raise LayoutError(f"{directory}: no step directories with up.sql (layout directory)",
                              directory=str(directory))
        for step in step_dirs:
            parsed = parse_name(chosen, step.name)
            if parsed is None or parsed.version is None:
                raise LayoutError(f"{directory}: step directory {step.name}/ does not start with "
                                  "a version number", directory=str(directory), file=step.name)
            _add(ups, parsed, step / "up.sql", directory)
            if (step / "down.sql").is_file():
                downs[version_key(parsed.version)] = (parsed.version, step / "down.sql")
    else:
        if not files:
            raise LayoutError(f"{directory}: no *.sql migration files", directory=str(directory))
        for path in files:
            parsed = parse_name(chosen, path.name)
            if parsed is None:
                raise LayoutError(f"{directory}: {path.name} does not fit the {chosen.value} layout",
                                  directory=str(directory), file=path.name)
            if parsed.version is None:
                repeatables.append(Migration(parsed.description, parsed.description, path, repeatable=True))
            elif parsed.direction is Direction.UP:
                _add(ups, parsed, path, directory)
            else:
                key = version_key(parsed.version)
                if key in downs:
                    raise LayoutError(
                        f"{directory}: duplicate down migration for version {show_version(key)}: "
                        f"{downs[key][1].name} and {path.name}", directory=str(directory))
                downs[key] = (parsed.version, path)
    for key, (_, path) in sorted(downs.items()):
        if key not in ups:
            raise LayoutError(f"{directory}: {path.name} undoes version {show_version(key)}, "
                              "which has no up migration", directory=str(directory), file=path.name)
    migrations = [Migration(version, description, up, downs.get(key, (None, None))[1])
                  for key, (version, description, up) in sorted(ups.items())]
    migrations += sorted(repeatables, key=lambda m: m.description)
    return MigrationSet(directory, chosen, tuple(migrations))


def _add(ups: dict[tuple[int, ...], tuple[str, str, Path]], parsed: ParsedName, path: Path,
         directory: Path) -> None:
    assert parsed.version is not None
    key = version_key(parsed.version)
    if key in ups:
        other = ups[key][2]
        raise LayoutError(
            f"{directory}: duplicate version {show_version(key)}: "
            f"{_shown(other, directory)} and {_shown(path, directory)}",
            directory=str(directory), hint="give every migration its own version number")
    ups[key] = (parsed.version, parsed.description, path)


def _shown(path: Path, directory: Path) -> str:
    try:
        return str(path.relative_to(directory))
    except ValueError:
        return str(path)


# -- statements -----------------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    """One statement of a file: its text and the line it starts on (1-based)."""

    text: str
    line: int
    needs_autocommit: bool = False


@dataclass(frozen=True)
class Script:
    """A migration file ready to run: whole text, statements (None when unparsed)."""

    path: Path
    text: str
    statements: tuple[Statement, ...] | None
    parse_error: str | None = None

    @property
    def empty(self) -> bool:
        return self.statements == () or not self.text.strip()

    @property
    def autocommit(self) -> bool:
        return bool(self.statements) and any(s.needs_autocommit for s in self.statements or ())


# Statements PostgreSQL refuses inside a transaction block, and transaction control:
# a file holding them manages its own transactions, so it runs in autocommit.
_AUTOCOMMIT_NODES = {"TransactionStmt", "VacuumStmt", "AlterSystemStmt", "CreatedbStmt", "DropdbStmt",
                     "CreateTableSpaceStmt", "DropTableSpaceStmt"}


def read_script(path: Path) -> Script:
    """Read a migration file and split it with PostgreSQL's parser (pglast)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LayoutError(f"cannot read {path}: {exc.strerror}", file=str(path)) from exc
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{path}: not UTF-8 text (byte {exc.start})", file=str(path)) from exc
    if not text.strip():
        return Script(path, text, ())
    try:
        return Script(path, text, tuple(split_statements(text)))
    except ParseFailure as exc:
        # The server is the judge: the file is sent whole, its error position gives the line.
        return Script(path, text, None, parse_error=str(exc))


class ParseFailure(Exception):
    """pglast could not parse the text (kept internal: the server decides)."""


def split_statements(text: str) -> Iterator[Statement]:
    """The statements of a SQL text with their first line, via libpg_query's locations."""
    from pglast import parser

    try:
        tree = json.loads(parser.parse_sql_json(text))
    except parser.ParseError as exc:
        raise ParseFailure(str(exc)) from exc
    data = text.encode("utf-8")
    for raw in tree.get("stmts", []):
        start = int(raw.get("stmt_location", 0))
        length = int(raw.get("stmt_len", 0)) or len(data) - start
        chunk = data[start:start + length].decode("utf-8")
        # libpg_query's location may include leading whitespace or comments: count to the first token.
        lead = len(chunk) - len(chunk.lstrip())
        line = data[:start].count(b"\n") + chunk[:lead].count("\n") + 1
        node = next(iter(raw.get("stmt", {})), "")
        body = raw.get("stmt", {}).get(node, {})
        needs = node in _AUTOCOMMIT_NODES or (
            node in ("IndexStmt", "ReindexStmt", "DropStmt") and bool(
                body.get("concurrent") or any("concurrently" in json.dumps(p).lower()
                                              for p in body.get("params", []))))
        yield Statement(chunk.strip(), line, needs)


# -- replay -------------------------------------------------------------------------

@dataclass(frozen=True)
class StepRun:
    """One applied step: what, in which direction, how long, how many statements."""

    version: str
    direction: Direction
    file: str | None
    statements: int
    duration_s: float
    notices: int = 0
    transactional: bool = True

    def to_evidence(self) -> dict[str, Any]:
        return {"version": self.version, "direction": self.direction.value, "file": self.file,
                "statements": self.statements, "duration_s": round(self.duration_s, 6),
                "notices": self.notices, "transactional": self.transactional}


Progress = Callable[[str], None]


class MigrationReplay:
    """Applies migrations to one scratch database over one connection. Use as a context manager."""

    def __init__(self, migrations: MigrationSet, target: PostgresTarget, *,
                 settings: Mapping[str, str] | None = None, progress: Progress | None = None,
                 limit: Limit | None = None) -> None:
        target.require_scratch()
        # The whole replay must end by this (``[run] migration_timeout``): a migration may sleep or
        # wait on a lock forever. Counted from the first connection.
        self.limit = limit or Limit.configured(None, key="migration_timeout",
                                               default_s=deadlines.DEFAULT_MIGRATION_TIMEOUT_S)
        self._deadline: Deadline | None = None
        self.migrations = migrations
        self.target = target
        self.settings = dict(settings or {})
        self.progress = progress or (lambda _m: None)
        self.journal = Journal()
        self.steps: list[StepRun] = []
        self._scripts: dict[Path, Script] = {}
        self._conn: psycopg.Connection[Any] | None = None
        self._notices = 0

    def __enter__(self) -> MigrationReplay:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            self.target.require_scratch()
            if self._deadline is None:
                self._deadline = self.limit.start()
            conn = psycopg.connect(self.target.dsn, connect_timeout=10, autocommit=True)
            conn.add_notice_handler(self._count_notice)
            for name, value in self.settings.items():
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def _count_notice(self, _diag: psycopg.errors.Diagnostic) -> None:
        self._notices += 1

    def preflight(self, migrations: Iterable[Migration] | None = None, *,
                  downs: bool = False) -> None:
        """Read and split every file first: an unreadable file stops us before the first write."""
        for migration in migrations if migrations is not None else self.migrations.migrations:
            self.script(migration.up)
            if downs and migration.down is not None:
                self.script(migration.down)

    def script(self, path: Path) -> Script:
        if path not in self._scripts:
            self._scripts[path] = read_script(path)
        return self._scripts[path]

    def snapshot(self) -> SchemaSnapshot:
        """The scratch database's schema right now."""
        return snapshot(self.connect())

    def apply(self, migration: Migration, direction: Direction = Direction.UP) -> StepRun:
        """Apply one step in its own transaction; raise MigrationFailed naming file, statement, line."""
        path = migration.up if direction is Direction.UP else migration.down
        if path is None:
            raise MigrationFailed(
                f"version {migration.label} has no down migration: cannot roll it back",
                version=migration.version,
                hint=f"add the down file for {self.migrations.relative(migration.up)}")
        script = self.script(path)
        conn = self.connect()
        self.target.require_scratch()
        started = datetime.now(UTC).isoformat()
        notices_before = self._notices
        t0 = time.perf_counter()
        count = 0
        assert self._deadline is not None  # set by connect()
        # Past the deadline the server cancels the running statement (a cancel request, as
        # pg_cancel_backend): the statement fails where it runs, and the failure names it.
        watchdog = deadlines.Watchdog(self._deadline, conn.cancel_safe)
        try:
            with watchdog:
                if script.empty:
                    pass  # an empty file is a valid no-op step (e.g. a change for another database)
                elif script.statements is None:
                    try:
                        with conn.transaction():
                            conn.execute(script.text.encode("utf-8"))
                    except psycopg.Error as exc:
                        raise self._unparsed_failure(script, exc) from exc
                    count = 1
                elif script.autocommit:
                    try:
                        for statement in script.statements:
                            self._execute(conn, script, statement)
                            count += 1
                    finally:
                        # A file that manages its own transaction must end it; one that failed inside
                        # its own BEGIN, or never commits, is rolled back here, never left open.
                        unfinished = conn.info.transaction_status != pq.TransactionStatus.IDLE
                        if unfinished:
                            conn.execute("ROLLBACK")
                    if unfinished:
                        raise MigrationFailed(
                            f"{self.migrations.relative(path)}: the file opens a transaction it never "
                            "ends (BEGIN without COMMIT); its work was rolled back",
                            file=self.migrations.relative(path), line=script.statements[-1].line)
                else:
                    with conn.transaction():
                        # Statement by statement in one transaction: a failing or cancelled
                        # statement is known without re-running the file (a round trip each, ~0.1 ms).
                        for statement in script.statements:
                            self._execute(conn, script, statement)
                            count += 1
        except MigrationFailed as exc:
            failure = self._timed_out(exc, f"{direction.value} {migration.version}") \
                if watchdog.fired.is_set() else exc
            self.journal.add(f"{direction.value} {migration.version}", "failed", started,
                             time.perf_counter() - t0, file=self.migrations.relative(path),
                             error=redact(failure.message))
            if failure is exc:
                raise
            raise failure from exc
        run = StepRun(migration.version, direction, self.migrations.relative(path), count,
                      time.perf_counter() - t0, self._notices - notices_before,
                      transactional=not script.autocommit)
        self.journal.add(f"{direction.value} {migration.version}", "ok", started, run.duration_s,
                         file=run.file, statements=count)
        self.steps.append(run)
        return run

    def _timed_out(self, failure: MigrationFailed, phase: str) -> MigrationFailed:
        """The cancelled statement's failure (file, line, statement), said as a deadline expiry."""
        assert self._deadline is not None
        file, line = failure.context.get("file", "?"), failure.context.get("line", "?")
        statement = failure.context.get("statement", "")
        return MigrationFailed(
            f"{file}:{line}: " + self._deadline.expiry_message("migration replay", phase)
            + (f" — in statement: {statement}" if statement else ""),
            hint="a migration sleeps or waits on a lock: fix it, or raise [run] migration_timeout "
                 "in drillbook.toml",
            **{**failure.context, "elapsed_s": round(self._deadline.elapsed(), 3),
               "limit_s": self.limit.seconds},
        )

    def _execute(self, conn: psycopg.Connection[Any], script: Script, statement: Statement) -> None:
        try:
            # No parameters: psycopg sends the text as is (simple query protocol).
            conn.execute(statement.text.encode("utf-8"))
        except psycopg.Error as exc:
            raise self._statement_failure(script, statement, exc) from exc

    def _statement_failure(self, script: Script, statement: Statement, exc: psycopg.Error) -> MigrationFailed:
        position = exc.diag.statement_position
        line = statement.line
        if position and position.isdigit():
            line += statement.text[: int(position) - 1].count("\n")
        return _failure(self.migrations.relative(script.path), script, statement.text, line, exc)

    def _unparsed_failure(self, script: Script, exc: psycopg.Error) -> MigrationFailed:
        position = exc.diag.statement_position
        if position and position.isdigit():
            line = script.text[: int(position) - 1].count("\n") + 1
            lines = script.text.splitlines()
            excerpt = lines[line - 1] if 0 < line <= len(lines) else script.text
        else:
            line, excerpt = 1, script.text
        return _failure(self.migrations.relative(script.path), script, excerpt, line, exc)

    def up(self, migrations: Sequence[Migration] | None = None, *,
           after_each: Callable[[Migration], None] | None = None) -> list[StepRun]:
        """Apply ``migrations`` (default: all, in order) upwards."""
        chosen = list(self.migrations.migrations if migrations is None else migrations)
        self.preflight(chosen)
        runs = []
        for migration in chosen:
            self.progress(f"up {migration.label}")
            runs.append(self.apply(migration, Direction.UP))
            if after_each is not None:
                after_each(migration)
        return runs


def _failure(file: str, script: Script, statement: str, line: int, exc: psycopg.Error) -> MigrationFailed:
    """The error naming file, line and statement, with the server's hint when it gave one."""
    diag = exc.diag
    primary = (diag.message_primary or str(exc)).strip()
    excerpt = " ".join(statement.split())
    if len(excerpt) > STATEMENT_EXCERPT:
        excerpt = excerpt[: STATEMENT_EXCERPT - 3] + "..."
    context = f" ({diag.context.strip().splitlines()[0]})" if diag.context else ""
    if diag.sqlstate == _INSUFFICIENT_PRIVILEGE:
        # A migration reached outside its scratch database (a server program or file, server
        # settings, roles, other databases): the replay role is built to refuse exactly that.
        primary += (": refused, the replay runs as a role that is not a superuser and owns "
                    "only its scratch database")
    return MigrationFailed(
        f"{file}:{line}: {primary}{context} — in statement: {excerpt}",
        file=file, line=line, statement=excerpt, sqlstate=diag.sqlstate or "",
        hint=(diag.message_hint or MigrationFailed.default_hint)
        + ("" if script.parse_error is None else " (the file was sent whole: pglast could not split it)"),
    )


# -- round trip ---------------------------------------------------------------------

@dataclass
class Attribution:
    """A schema difference that first appeared after one step of the round trip."""

    phase: str
    version: str
    file: str | None
    empty_file: bool
    diff: SchemaDiff

    def to_evidence(self) -> dict[str, Any]:
        return {"phase": self.phase, "version": self.version, "file": self.file,
                "empty_file": self.empty_file, "differences": self.diff.lines()}


@dataclass
class RoundTripResult:
    """Fingerprints by version for each pass, and what differed where."""

    first_up: dict[str, str] = field(default_factory=dict)
    down: dict[str, str] = field(default_factory=dict)
    second_up: dict[str, str] = field(default_factory=dict)
    attributions: list[Attribution] = field(default_factory=list)
    steps: list[StepRun] = field(default_factory=list)
    failure: MigrationError | None = None
    head: SchemaSnapshot | None = None
    # The first pass's snapshot at each version ("0" = before the first step).
    snapshots: dict[str, SchemaSnapshot] = field(default_factory=dict)

    def to_evidence(self) -> dict[str, Any]:
        return {
            "fingerprints": {"up": self.first_up, "down": self.down, "up_again": self.second_up},
            "differences": [a.to_evidence() for a in self.attributions],
            "steps": [s.to_evidence() for s in self.steps],
            "failure": redact(str(self.failure)) if self.failure else None,
        }


ZERO = "0"


def round_trip(replay: MigrationReplay, *, ignore_tables: Iterable[str] = ()) -> RoundTripResult:
    """Up to head, down to zero, up again; snapshot at every version and attribute differences.

    Comparisons: after each down step, the schema must equal the first pass at
    the version below; after each step of the second up, it must equal the first
    pass at that version. A difference is attributed to the step after which it
    first appeared (it is not repeated for every later step it survives).
    """
    ignored = list(ignore_tables)
    result = RoundTripResult()
    versioned = replay.migrations.versioned()
    replay.preflight(versioned, downs=True)
    states = result.snapshots

    def take() -> SchemaSnapshot:
        return replay.snapshot().without_tables(ignored)

    states[ZERO] = take()
    result.first_up[ZERO] = states[ZERO].digest()
    try:
        for migration in versioned:
            result.steps.append(replay.apply(migration, Direction.UP))
            states[migration.version] = take()
            result.first_up[migration.version] = states[migration.version].digest()
        result.head = states[versioned[-1].version] if versioned else states[ZERO]
        missing = [m for m in versioned if m.down is None]
        if missing:
            first = missing[-1]
            raise MigrationFailed(
                f"round trip impossible: {len(missing)} version(s) have no down migration, "
                f"first met going down: {replay.migrations.relative(first.up)} "
                f"(versions {', '.join(m.version for m in missing[:10])})",
                version=first.version, hint="add the missing down files, or drop --round-trip")
        previous: set[tuple[str, str, str, str]] = set()
        for index in range(len(versioned) - 1, -1, -1):
            migration = versioned[index]
            below = versioned[index - 1].version if index > 0 else ZERO
            result.steps.append(replay.apply(migration, Direction.DOWN))
            now = take()
            result.down[below] = now.digest()
            diff = diff_schemas(states[below], now, left_name=f"up at {below}",
                                right_name=f"after down {migration.version}")
            items = diff.items()
            new = items - previous
            if new:
                result.attributions.append(Attribution(
                    "down", migration.version, replay.migrations.relative(migration.down)
                    if migration.down else None, replay.script(migration.down).empty
                    if migration.down else False, _only(diff, new)))
            previous = items
        previous = set()
        for migration in versioned:
            result.steps.append(replay.apply(migration, Direction.UP))
            now = take()
            result.second_up[migration.version] = now.digest()
            diff = diff_schemas(states[migration.version], now, left_name=f"first up at {migration.version}",
                                right_name=f"second up at {migration.version}")
            items = diff.items()
            new = items - previous
            if new:
                result.attributions.append(Attribution(
                    "up again", migration.version, replay.migrations.relative(migration.up),
                    replay.script(migration.up).empty, _only(diff, new)))
            previous = items
    except MigrationError as exc:
        result.failure = exc
    return result


def _only(diff: SchemaDiff, wanted: set[tuple[str, str, str, str]]) -> SchemaDiff:
    """The part of a diff whose items are in ``wanted``."""
    def keep_key(kind: str, key: str) -> bool:
        return (kind, key, "", "") in wanted

    return SchemaDiff(
        diff.left_name, diff.right_name,
        tuple(k for k in diff.only_left if keep_key("only_left", k)),
        tuple(k for k in diff.only_right if keep_key("only_right", k)),
        tuple(c for c in diff.changed
              if any(item[0] == "changed" and item[1] == f"{c.key}.{c.attribute}" for item in wanted)),
    )


def round_trip_verdict(result: RoundTripResult, migrations: MigrationSet) -> Verdict:
    """Failed on a step failure or a difference after a non-empty step; warning when only
    empty down files (declared irreversible) leave a difference; passed otherwise."""
    check_id = "migrations.round_trip"
    evidence = {"directory": str(migrations.directory), "layout": migrations.layout.value,
                **result.to_evidence()}
    versions = len(migrations.versioned())
    if result.failure is not None:
        if isinstance(result.failure, LayoutError):
            return Verdict.error(check_id, str(result.failure), evidence=evidence)
        return Verdict.failed(check_id, f"round trip failed: {result.failure}", evidence=evidence)
    hard = [a for a in result.attributions if not a.empty_file]
    soft = [a for a in result.attributions if a.empty_file]

    def describe(items: list[Attribution]) -> str:
        parts = []
        for a in items[:4]:
            lines = a.diff.lines()
            parts.append(f"{a.phase} {a.version} ({a.file}): " + "; ".join(lines[:3])
                         + (f"; +{len(lines) - 3} more" if len(lines) > 3 else ""))
        return " | ".join(parts) + (f" | and {len(items) - 4} more steps" if len(items) > 4 else "")

    if hard:
        return Verdict.failed(
            check_id, f"round trip leaves a different schema: {describe(hard)}",
            measured=len(hard), expected="identical schema at every version", evidence=evidence)
    if soft:
        return Verdict.warning(
            check_id, f"round trip of {versions} versions is identical on the way up again, but "
                      f"{len(soft)} empty down file(s) leave the rolled-back schema different: "
                      f"{describe(soft)}",
            measured=len(soft), expected="identical schema at every version", evidence=evidence)
    head = result.first_up.get(migrations.versioned()[-1].version, "") if versions else ""
    return Verdict.passed(
        check_id, f"up → down → up over {versions} versions: the schema is identical at every version "
                  f"(head fingerprint {head[:12]})",
        measured=versions, expected="identical schema at every version", evidence=evidence)


def replay_verdict(migrations: MigrationSet, runs: list[StepRun], *,
                   failure: MigrationError | None = None, target: str = "") -> Verdict:
    """Passed when every step applied; failed naming the file, statement and line otherwise."""
    total = sum(r.duration_s for r in runs)
    evidence: dict[str, Any] = {"directory": str(migrations.directory), "layout": migrations.layout.value,
                                "scratch": target, "steps": [r.to_evidence() for r in runs],
                                "total_s": round(total, 6)}
    if failure is not None:
        evidence.update({k: v for k, v in failure.context.items() if isinstance(v, str | int)})
        evidence["error"] = type(failure).__name__
        if isinstance(failure, LayoutError):
            return Verdict.error("migrations.replay", str(failure), evidence=evidence)
        return Verdict.failed("migrations.replay",
                              f"replay stopped after {len(runs)} of {len(migrations.migrations)} "
                              f"steps: {failure}", evidence=evidence)
    empty = sum(1 for r in runs if r.statements == 0)
    return Verdict.passed(
        "migrations.replay",
        f"{len(runs)} migrations applied from empty in {total:.2f}s"
        + (f" ({empty} empty)" if empty else ""),
        measured=round(total, 6), expected="every step applies", evidence=evidence)
