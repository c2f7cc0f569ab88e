"""Replay of a migration set into scratch: each step timed, a failure named by file, line and statement.

**Replay** applies the steps over one psycopg connection, each step in its own transaction (or,
when the part holds its own ``BEGIN``/``COMMIT``, a statement PostgreSQL refuses inside a
transaction such as ``CREATE INDEX CONCURRENTLY``, or its layout says so — goose's ``NO
TRANSACTION``, dbmate's ``transaction:false`` —, statement by statement in autocommit, as the
tools do). Every step is timed. Empty parts are accepted (a no-op step). A step with a verify
script (sqitch) runs it right after its deploy, inside a transaction that is rolled back, and a
failing verify fails the step. A *prelude* (the team's init script: schemas, extensions, roles,
a ``search_path``) runs before the first step; its ``CREATE ROLE`` statements are run by the
scratch cluster's admin in a safe form (:mod:`.prelude_roles`), the rest as the replay role.
The whole replay has one deadline (``[run] migration_timeout``, :mod:`drills.deadlines`): past
it the server cancels the running statement and the failure names its file and line and the limit.

Only scratch is ever written: every entry point calls ``require_scratch()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq

from checks.errors import DrillbookError
from checks.redact import redact
from checks.schema import SchemaSnapshot, snapshot
from checks.verdict import Verdict

from .. import deadlines
from ..deadlines import Deadline, Limit
from ..targets import Journal, PostgresTarget
from .model import (
    Direction,
    LayoutError,
    Migration,
    MigrationError,
    MigrationFailed,
    MigrationSet,
    Part,
    Statement,
)
from .prelude_roles import RoleCreator, RoleRefused, RoleSpec, take_roles
from .statements import Script, read_script

STATEMENT_EXCERPT = 200
_INSUFFICIENT_PRIVILEGE = "42501"
# CREATE ROLE / USER / GROUP (not CREATE USER MAPPING), after leading comments.
_CREATE_ROLE = re.compile(r"(?:\s|--[^\n]*\n|/\*.*?\*/)*CREATE\s+(?:ROLE|GROUP|USER(?!\s+MAPPING\b))\b",
                          re.IGNORECASE | re.DOTALL)


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
    # The verify script that passed after this deploy (sqitch), when the step has one.
    verified: str | None = None
    # A prelude's roles, created by drillbook (prelude_roles.py), and what was left out of them.
    roles: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_evidence(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "version": self.version, "direction": self.direction.value, "file": self.file,
            "statements": self.statements, "duration_s": round(self.duration_s, 6),
            "notices": self.notices, "transactional": self.transactional}
        if self.verified is not None:
            found["verified"] = self.verified
        if self.roles:
            found["roles"] = list(self.roles)
        if self.notes:
            found["notes"] = list(self.notes)
        return found


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
        self.preludes: list[StepRun] = []
        self._scripts: dict[Part, Script] = {}
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
        """Read and split every part first: an unreadable file stops us before the first write."""
        for migration in migrations if migrations is not None else self.migrations.migrations:
            self.script(migration.up)
            if migration.verify is not None:
                self.script(migration.verify)
            if downs and migration.down is not None:
                self.script(migration.down)

    def script(self, part: Part) -> Script:
        if part not in self._scripts:
            self._scripts[part] = read_script(part)
        return self._scripts[part]

    def snapshot(self) -> SchemaSnapshot:
        """The scratch database's schema right now."""
        return snapshot(self.connect())

    def prelude(self, path: Path, *, roles: RoleCreator | None = None) -> StepRun:
        """Run the team's init script (schemas, extensions, roles, ``search_path``) first.

        Its ``CREATE ROLE`` statements go to ``roles`` (the scratch's ``create_roles``, which
        creates them with the cluster's admin connection and drops them with the database); the
        rest runs as the replay role. Without ``roles`` (a scratch drillbook did not start), a
        prelude that creates a role is refused naming its line.
        """
        part = Part(path)
        specs, rest = take_roles(self.script(part), str(path))
        created: list[str] = []
        if specs:
            created = self._create_roles(specs, roles, str(path))
            self._scripts[part] = rest  # the role statements are done: the rest keeps its lines
        run = self._step("prelude", Direction.UP, part, label=f"prelude {path.name}", shown=str(path))
        if specs:
            run = dataclasses.replace(run, roles=tuple(created),
                                      notes=tuple(n for s in specs if (n := s.note()) is not None))
        self.preludes.append(run)
        return run

    def _create_roles(self, specs: list[RoleSpec], roles: RoleCreator | None, file: str) -> list[str]:
        """The prelude's roles, created by the scratch; a refusal names the line of the role."""
        first = specs[0]
        if roles is None:
            raise RoleRefused(
                f"{file}:{first.line}: the prelude creates role {first.name!r}, but drillbook creates "
                "roles only in the scratch clusters it starts itself",
                hint="create the roles on that server yourself, or let drillbook create the scratch",
                file=file, line=first.line, role=first.name)
        started = datetime.now(UTC).isoformat()
        t0 = time.perf_counter()
        try:
            created = roles(self.target, specs)
        except (DrillbookError, psycopg.Error) as exc:
            named = exc.context.get("role") if isinstance(exc, DrillbookError) else None
            spec = next((s for s in specs if s.name == named), first)
            message = exc.message if isinstance(exc, DrillbookError) else str(exc).strip()
            hint = exc.hint if isinstance(exc, DrillbookError) and exc.hint else None
            self.journal.add(f"prelude roles {Path(file).name}", "failed", started,
                             time.perf_counter() - t0, file=file, error=redact(message))
            raise RoleRefused(f"{file}:{spec.line}: {message}", hint=hint, file=file, line=spec.line,
                              role=spec.name) from exc
        self.journal.add(f"prelude roles {Path(file).name}", "ok", started, time.perf_counter() - t0,
                         file=file, roles=len(created))
        return created

    def apply(self, migration: Migration, direction: Direction = Direction.UP) -> StepRun:
        """Apply one step in its own transaction; raise MigrationFailed naming file, statement, line."""
        part = migration.up if direction is Direction.UP else migration.down
        if part is None:
            raise MigrationFailed(
                f"version {migration.label} has no down migration: cannot roll it back",
                version=migration.version,
                hint=f"add the down file for {self.migrations.relative(migration.up.path)}")
        run = self._step(migration.version, direction, part,
                         label=f"{direction.value} {migration.version}")
        if direction is Direction.UP and migration.verify is not None:
            run = self._verify(migration, run)
        self.steps.append(run)
        return run

    def _step(self, version: str, direction: Direction, part: Part, *, label: str,
              shown: str | None = None, rollback: bool = False) -> StepRun:
        script = self.script(part)
        file = shown or self.migrations.relative(part.path)
        conn = self.connect()
        self.target.require_scratch()
        started = datetime.now(UTC).isoformat()
        notices_before = self._notices
        t0 = time.perf_counter()
        assert self._deadline is not None  # set by connect()
        # Past the deadline the server cancels the running statement (a cancel request, as
        # pg_cancel_backend): the statement fails where it runs, and the failure names it.
        watchdog = deadlines.Watchdog(self._deadline, conn.cancel_safe)
        try:
            with watchdog:
                count = self._run(conn, script, file, rollback=rollback)
        except MigrationFailed as exc:
            failure = self._timed_out(exc, label) if watchdog.fired.is_set() else exc
            self.journal.add(label, "failed", started, time.perf_counter() - t0, file=file,
                             error=redact(failure.message))
            if failure is exc:
                raise
            raise failure from exc
        run = StepRun(version, direction, file, count, time.perf_counter() - t0,
                      self._notices - notices_before, transactional=not script.autocommit)
        self.journal.add(label, "ok", started, run.duration_s, file=run.file, statements=count)
        return run

    def _verify(self, migration: Migration, run: StepRun) -> StepRun:
        """sqitch's verify script, right after the deploy; its work is always rolled back."""
        assert migration.verify is not None
        try:
            checked = self._step(migration.version, Direction.UP, migration.verify,
                                 label=f"verify {migration.version}", rollback=True)
        except MigrationFailed as exc:
            raise MigrationFailed(f"verify of {migration.label} failed: {exc.message}",
                                  **{**exc.context, "verify": True},
                                  hint="the deploy script ran, but its verify script says the change "
                                       "is not there: fix the deploy (or the verify) script") from exc
        return StepRun(run.version, run.direction, run.file, run.statements, run.duration_s,
                       run.notices, run.transactional, verified=checked.file)

    def _run(self, conn: psycopg.Connection[Any], script: Script, file: str, *, rollback: bool) -> int:
        """Run a script's statements; ``rollback``: undo whatever they did (verify scripts)."""
        count = 0
        if script.empty:
            return 0  # an empty file is a valid no-op step (e.g. a change for another database)
        if script.statements is None:
            try:
                with conn.transaction(force_rollback=rollback):
                    conn.execute(script.text.encode("utf-8"))
            except psycopg.Error as exc:
                raise self._unparsed_failure(script, file, exc) from exc
            return 1
        if script.autocommit:
            try:
                for statement in script.statements:
                    self._execute(conn, script, file, statement)
                    count += 1
            finally:
                # A file that manages its own transaction must end it; one that failed inside
                # its own BEGIN, or never commits, is rolled back here, never left open.
                unfinished = conn.info.transaction_status != pq.TransactionStatus.IDLE
                if unfinished:
                    conn.execute("ROLLBACK")
            if unfinished and not rollback:
                raise MigrationFailed(
                    f"{file}: the file opens a transaction it never ends (BEGIN without COMMIT); "
                    "its work was rolled back", file=file, line=script.statements[-1].line)
            return count
        with conn.transaction(force_rollback=rollback):
            # Statement by statement in one transaction: a failing or cancelled
            # statement is known without re-running the file (a round trip each, ~0.1 ms).
            for statement in script.statements:
                self._execute(conn, script, file, statement)
                count += 1
        return count

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

    def _execute(self, conn: psycopg.Connection[Any], script: Script, file: str,
                 statement: Statement) -> None:
        try:
            # No parameters: psycopg sends the text as is (simple query protocol).
            conn.execute(statement.text.encode("utf-8"))
        except psycopg.Error as exc:
            raise self._statement_failure(script, file, statement, exc) from exc

    def _statement_failure(self, script: Script, file: str, statement: Statement,
                           exc: psycopg.Error) -> MigrationFailed:
        position = exc.diag.statement_position
        line = statement.line
        if position and position.isdigit():
            line += statement.text[: int(position) - 1].count("\n")
        return _failure(file, script, statement.text, line, exc)

    def _unparsed_failure(self, script: Script, file: str, exc: psycopg.Error) -> MigrationFailed:
        position = exc.diag.statement_position
        if position and position.isdigit():
            inner = script.text[: int(position) - 1].count("\n") + 1
            lines = script.text.splitlines()
            excerpt = lines[inner - 1] if 0 < inner <= len(lines) else script.text
        else:
            inner, excerpt = 1, script.text
        return _failure(file, script, excerpt, inner + script.first_line - 1, exc)

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
    hint = diag.message_hint or MigrationFailed.default_hint
    if diag.sqlstate == _INSUFFICIENT_PRIVILEGE:
        # A migration reached outside its scratch database (a server program or file, server
        # settings, roles, other databases): the replay role is built to refuse exactly that.
        primary += (": refused, the replay runs as a role that is not a superuser and owns "
                    "only its scratch database")
        if _CREATE_ROLE.match(statement):
            # Roles are the cluster's, not the database's: only the prelude may make them.
            hint = ("create the role in the prelude (--prelude / [migrations] prelude): drillbook "
                    "creates a prelude's roles itself, without LOGIN or any superuser-like attribute")
    return MigrationFailed(
        f"{file}:{line}: {primary}{context} — in statement: {excerpt}",
        file=file, line=line, statement=excerpt, sqlstate=diag.sqlstate or "",
        hint=hint
        + ("" if script.parse_error is None else " (the file was sent whole: pglast could not split it)"),
    )


def replay_verdict(migrations: MigrationSet, runs: list[StepRun], *,
                   failure: MigrationError | None = None, target: str = "") -> Verdict:
    """Passed when every step applied; failed naming the file, statement and line otherwise."""
    total = sum(r.duration_s for r in runs)
    evidence: dict[str, Any] = {"directory": str(migrations.directory), "layout": migrations.layout,
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


def prelude_verdict(path: Path, run: StepRun | None, *, failure: MigrationError | None = None) -> Verdict:
    """Passed when the prelude ran; failed naming its line otherwise. Evidence: file, hash, timing."""
    evidence: dict[str, Any] = {"file": str(path)}
    with contextlib.suppress(OSError):  # unreadable: the failure below says so
        evidence["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    if failure is not None or run is None:
        evidence["error"] = type(failure).__name__ if failure else "no run"
        return Verdict.failed("migrations.prelude", f"the prelude {path.name} failed, so no migration "
                                                    f"was replayed: {failure}", evidence=evidence)
    evidence.update(run.to_evidence())
    roles = (f", roles created by drillbook without LOGIN and dropped with the database: "
             f"{', '.join(run.roles)}" if run.roles else "")
    return Verdict.passed("migrations.prelude", f"prelude {path.name} ran before the first step "
                                                f"({run.statements} statements, {run.duration_s:.2f}s"
                                                f"{roles})",
                          measured=round(run.duration_s, 6), evidence=evidence)
