"""The drill around the team's own migrate command: replay from empty, round trip, their verdicts.

:mod:`.command` runs the command once; this module runs it as a drill against one
scratch database under one deadline: the schema before (after the prelude, if
any), after ``up``, after ``down`` and after ``up`` again, and the rows the
tool wrote into its own table (for history, :mod:`checks.command_history`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from checks import redact
from checks.command_history import ToolTable, find_tool_table, read_rows, tool_tables
from checks.schema import SchemaSnapshot, diff_schemas, snapshot
from checks.verdict import Verdict

from ..deadlines import Deadline
from ..targets import Journal, PostgresTarget
from .command import CommandFailed, CommandRun, CommandUnusable, MigrateCommand, run_command
from .model import MigrationError, MigrationSet
from .prelude_roles import RoleCreator
from .replay import MigrationReplay, StepRun


def schema_of(target: PostgresTarget) -> SchemaSnapshot:
    """The scratch database's schema, on a connection of its own (never held while the command runs)."""
    with psycopg.connect(target.dsn, connect_timeout=10, autocommit=True) as conn:
        return snapshot(conn)


@dataclass
class CommandResult:
    """What the command's replay (or round trip) left: its runs, the schemas, the tool's history rows."""

    command: MigrateCommand
    scratch: str
    runs: list[CommandRun] = field(default_factory=list)
    start: SchemaSnapshot | None = None       # before the first run: empty, or what the prelude made
    prelude: Path | None = None               # the team's init script, run before the command
    prelude_run: StepRun | None = None
    head: SchemaSnapshot | None = None        # after the up command
    after_down: SchemaSnapshot | None = None  # after the down command (round trip)
    up_again: SchemaSnapshot | None = None    # after the up command once more (round trip)
    tool_table: ToolTable | None = None
    tool_rows: frozenset[tuple[str, ...]] = frozenset()
    failure: MigrationError | None = None

    def ignored_tables(self) -> list[str]:
        """The tool's own tables: bookkeeping, left out of every schema comparison."""
        return [*tool_tables(), *([self.tool_table.name] if self.tool_table else [])]

    def to_evidence(self) -> dict[str, Any]:
        def digest(s: SchemaSnapshot | None) -> str | None:
            return s.without_tables(self.ignored_tables()).digest() if s is not None else None

        return {"command": redact.redact(self.command.shown()),
                "down_command": redact.redact(self.command.shown(self.command.down))
                if self.command.down else None,
                "workdir": str(self.command.workdir), "scratch": self.scratch,
                "limit": self.command.limit.describe(), "passed_env": list(self.command.env_names),
                "runs": [r.to_evidence() for r in self.runs],
                "fingerprints": {"start": digest(self.start), "up": digest(self.head),
                                 "down": digest(self.after_down), "up_again": digest(self.up_again)},
                "history_table": self.tool_table.name if self.tool_table else None,
                "prelude": str(self.prelude) if self.prelude else None,
                "ignored_tables": self.ignored_tables(),
                "failure": redact.redact(str(self.failure)) if self.failure else None}


class CommandReplay:
    """Runs the team's command against one scratch database, under one deadline for the whole drill."""

    def __init__(self, command: MigrateCommand, target: PostgresTarget, *,
                 environ: Mapping[str, str] | None = None, prelude: Path | None = None,
                 roles: RoleCreator | None = None) -> None:
        target.require_scratch()
        self.command = command
        self.target = target
        self.prelude = prelude
        # The scratch's create_roles, for the prelude's CREATE ROLE statements (prelude_roles.py).
        self.roles = roles
        # Passed in (STYLE rule 4): tests hand their own; the CLI and steps hand os.environ, of which
        # only PATH, HOME, LANG and the listed names ever reach the child.
        self.environ = dict(os.environ if environ is None else environ)
        self.journal = Journal()
        self._deadline: Deadline | None = None

    def _run(self, argv: Sequence[str], phase: str, result: CommandResult) -> None:
        if self._deadline is None:
            self._deadline = self.command.limit.start()
        try:
            result.runs.append(run_command(argv, self.target, workdir=self.command.workdir, phase=phase,
                                           deadline=self._deadline, environ=self.environ,
                                           env_names=self.command.env_names, journal=self.journal))
        except CommandFailed as exc:
            run = exc.context.get("run")
            if isinstance(run, CommandRun):
                result.runs.append(run)
            raise

    def up(self) -> CommandResult:
        """From empty to what the up command leaves; its schema and the tool's history rows."""
        result = CommandResult(self.command, self.target.describe(), prelude=self.prelude)
        try:
            if self.prelude is not None:
                self._run_prelude(self.prelude, result)
            result.start = schema_of(self.target)
            self._run(self.command.up, "up", result)
            result.head = schema_of(self.target)
            self._read_tool_rows(result)
        except MigrationError as exc:
            result.failure = exc
        return result

    def round_trip(self) -> CommandResult:
        """Up (A), down (must equal the empty start), up again (must equal A)."""
        if self.command.down is None:
            raise CommandUnusable("a round trip needs the down command too (--down-command, "
                                  "[migrations] down_command)", command=self.command.shown())
        result = self.up()
        if result.failure is not None:
            return result
        try:
            self._run(self.command.down, "down", result)
            result.after_down = schema_of(self.target)
            self._run(self.command.up, "up again", result)
            result.up_again = schema_of(self.target)
        except MigrationError as exc:
            result.failure = exc
        return result

    def _run_prelude(self, path: Path, result: CommandResult) -> None:
        """The init script, run as SQL replays run it (:meth:`MigrationReplay.prelude`), within the limit."""
        empty = MigrationSet(path.parent, "prelude", ())
        with MigrationReplay(empty, self.target, limit=self.command.limit) as replay:
            result.prelude_run = replay.prelude(path, roles=self.roles)

    def _read_tool_rows(self, result: CommandResult) -> None:
        with psycopg.connect(self.target.dsn, connect_timeout=10, autocommit=True) as conn:
            result.tool_table = find_tool_table(conn, self.command.history_table)
            if result.tool_table is not None:
                result.tool_rows = read_rows(conn, result.tool_table)


def command_replay_verdict(result: CommandResult) -> Verdict:
    """``migrations.replay``: passed when the up command exited 0; failed (or error) naming it otherwise."""
    check_id = "migrations.replay"
    evidence = result.to_evidence()
    shown = result.command.shown()
    up = next((r for r in result.runs if r.phase == "up"), None)
    if isinstance(result.failure, CommandUnusable):
        return Verdict.error(check_id, str(result.failure), evidence=evidence)
    if result.prelude is not None and result.prelude_run is None:
        return Verdict.failed(check_id, f"the prelude failed, so `{shown}` did not run: {result.failure}",
                              evidence=evidence)
    if up is None or up.exit_code != 0 or result.head is None:
        return Verdict.failed(check_id, f"the migrate command failed: {result.failure}", evidence=evidence)
    counts = result.head.without_tables(result.ignored_tables()).counts()
    objects = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "no objects"
    return Verdict.passed(
        check_id, f"`{shown}` migrated an empty database in {up.duration_s:.2f}s (exit 0; {objects})",
        measured=round(up.duration_s, 6), expected="the command exits 0", evidence=evidence)


def command_round_trip_verdict(result: CommandResult) -> Verdict:
    """``migrations.round_trip``: down must give back the empty start, up again the first head.

    A difference left by the down command is named even when the second up then fails on it
    (an upgrade that meets the table a downgrade forgot): the difference is the cause.
    """
    check_id = "migrations.round_trip"
    evidence = result.to_evidence()
    down = result.command.shown(result.command.down) if result.command.down else "(no down command)"
    if isinstance(result.failure, CommandUnusable):
        return Verdict.error(check_id, str(result.failure), evidence=evidence)
    ignored = result.ignored_tables()
    parts, differences = [], {}
    for label, left, right, left_name, right_name in (
            ("down", result.start, result.after_down, "the start", f"after `{down}`"),
            ("up again", result.head, result.up_again, "the first up", "the second up")):
        if left is None or right is None:
            continue
        lines = diff_schemas(left.without_tables(ignored), right.without_tables(ignored),
                             left_name=left_name, right_name=right_name).lines()
        # Whole tables first: "table public.accounts" says more than its columns one by one.
        lines.sort(key=lambda line: ": table " not in line)
        differences[label] = lines
        if lines:
            more = f"; +{len(lines) - 4} more" if len(lines) > 4 else ""
            parts.append(f"{label}: " + "; ".join(lines[:4]) + more)
    evidence["differences"] = differences
    if result.failure is not None:
        parts.append(str(result.failure))
    if parts or result.up_again is None:
        what = "leaves a different schema" if differences and any(differences.values()) else "failed"
        return Verdict.failed(check_id, f"round trip {what}: " + " | ".join(parts),
                              measured=sum(len(v) for v in differences.values()),
                              expected="the start after down, identical after up again", evidence=evidence)
    assert result.head is not None  # up_again is only set after head
    head = result.head.without_tables(ignored).digest()
    return Verdict.passed(
        check_id, f"`{result.command.shown()}` → `{down}` → up again: back to the start after down, "
                  f"identical after up again (head fingerprint {head[:12]})",
        measured=0, expected="the start after down, identical after up again", evidence=evidence)
