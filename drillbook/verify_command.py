"""``drillbook verify migrations [DIR] --command "alembic upgrade head"``: the team's own migrate command.

Called by :mod:`drillbook.verify_migrations` when ``--command`` is given. DIR
(default: the current folder) is the folder the command runs in. The same exit
codes: 0 clean, 1 a finding (the command failed, timed out, the round trip or
drift or history differs), 2 usage (the command cannot be started, a bad
``--against``, a refused ``--scratch``) — in that case nothing was written.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checks import redact
from checks.verdict import Verdict

from .runner import EXIT_FAILED, EXIT_PASSED, EXIT_USAGE

if TYPE_CHECKING:
    from checks.schema import SchemaSnapshot
    from drills.deadlines import Limit
    from drills.migrations.command import MigrateCommand
    from drills.migrations.command_replay import CommandResult


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--command``, ``--down-command``, ``--command-env`` on ``verify migrations``."""
    p.add_argument("--command", dest="migrate_command", metavar="COMMAND",
                   help="the team's own migrate command (e.g. \"alembic upgrade head\"), run in DIR "
                        "(default: the current folder) against a scratch database named in "
                        "DATABASE_URL and PG*; split like a shell line, never run through a shell")
    p.add_argument("--down-command", metavar="COMMAND",
                   help="with --command and --round-trip: what rolls everything back "
                        "(e.g. \"alembic downgrade base\")")
    p.add_argument("--command-env", action="append", default=[], metavar="NAME",
                   help="a variable of drillbook's environment the command may see (repeatable); "
                        "it gets only PATH, HOME, LANG and these besides the scratch database's")


def verify_command(args: argparse.Namespace, *, finish: Callable[..., int],
                   scratch_of: Callable[[argparse.Namespace], Any],
                   limit: Callable[[argparse.Namespace], Limit]) -> int:
    """Run the command (and the round trip, drift, history); ``finish`` prints and returns the code."""
    from checks.errors import DrillbookError, SafetyError, ScratchNotRestored
    from drills.migrations.command import MigrateCommand

    directories = list(args.directories)
    if len(directories) > 1:
        return finish([Verdict.error("migrations.command", "--command runs in one folder: give at most "
                                                           "one DIR")], args, code=EXIT_USAGE)
    if args.down_command and not args.round_trip:
        return finish([Verdict.error("migrations.command", "--down-command is used by --round-trip only")],
                      args, code=EXIT_USAGE)
    if args.round_trip and not args.down_command:
        message = "--round-trip with --command needs --down-command (e.g. \"alembic downgrade base\")"
        return finish([Verdict.error("migrations.command", message)], args, code=EXIT_USAGE)
    try:
        workdir = directories[0] if directories else Path.cwd()
        command = MigrateCommand.parse(args.migrate_command, workdir=workdir, down=args.down_command,
                                       env_names=args.command_env,
                                       limit=limit(args), history_table=args.history_table)
    except DrillbookError as exc:
        return finish([Verdict.error("migrations.command", str(exc))], args, code=EXIT_USAGE)
    if args.prelude is not None:
        from drills.migrations import LayoutError, read_script

        try:
            read_script(args.prelude)  # unreadable: stop before anything is written
        except LayoutError as exc:
            return finish([Verdict.error("migrations.prelude", str(exc))], args, code=EXIT_USAGE)
    if args.against:
        redact.register_dsn(args.against)
    if args.scratch:
        redact.register_dsn(args.scratch)
    subject: _Subject | None = None
    if args.against:
        try:
            subject = _Subject.read(args.against)
        except DrillbookError as exc:
            return finish([Verdict.error("migrations.against", str(exc))], args, code=EXIT_USAGE)
    scratch = scratch_of(args)
    try:
        verdicts = _run(command, scratch, args, subject)
    except SafetyError as exc:
        code = EXIT_FAILED if isinstance(exc, ScratchNotRestored) else EXIT_USAGE
        return finish([Verdict.error("migrations.scratch", str(exc))], args, code=code)
    finally:
        closer = getattr(scratch, "close", None)
        if callable(closer):
            closer()
    if any(v.outcome.value == "error" and v.id == "migrations.replay" for v in verdicts):
        return finish(verdicts, args, code=EXIT_USAGE)  # the command could not be started
    code = EXIT_FAILED if any(v.counts_as_fail() for v in verdicts) else EXIT_PASSED
    return finish(verdicts, args, code=code)


class _Subject:
    """The ``--against`` database, read once, read-only: its schema (the tool's rows are read later)."""

    def __init__(self, name: str, dsn: str, live: SchemaSnapshot) -> None:
        self.name = name
        self.dsn = dsn
        self.live = live

    @classmethod
    def read(cls, dsn: str) -> _Subject:
        import psycopg

        from checks.errors import TargetUnreachable
        from checks.schema import snapshot
        from drills.targets import PostgresTarget

        name = PostgresTarget(name="--against", dsn=dsn).describe()
        try:
            with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
                conn.read_only = True
                live = snapshot(conn)
        except psycopg.Error as exc:
            raise TargetUnreachable(f"--against {name}: {redact.redact(str(exc).strip())}") from exc
        return cls(name, dsn, live)


def _run(command: MigrateCommand, scratch: Any, args: argparse.Namespace,
         subject: _Subject | None) -> list[Verdict]:
    from drills.migrations import prelude_verdict
    from drills.migrations.command_replay import (
        CommandReplay,
        command_replay_verdict,
        command_round_trip_verdict,
    )
    from drills.migrations.prelude_roles import role_creator

    target = scratch.fresh_database("verify-migrations")
    try:
        replay = CommandReplay(command, target, environ=os.environ, prelude=args.prelude,
                               roles=role_creator(scratch))
        result = replay.round_trip() if args.round_trip else replay.up()
    finally:
        scratch.drop(target)
    verdicts = [prelude_verdict(args.prelude, result.prelude_run,
                                failure=result.failure if result.prelude_run is None else None)
                ] if args.prelude is not None else []
    verdicts.append(command_replay_verdict(result))
    if args.round_trip and result.head is not None:
        verdicts.append(command_round_trip_verdict(result))
    if subject is not None:
        verdicts += _against(result, subject, args.ignore_table)
    return verdicts


def _against(result: CommandResult, subject: _Subject, ignore_tables: list[str]) -> list[Verdict]:
    """Drift of the subject from the command's head, and the tool's history rows on both sides."""
    from checks.command_history import history_against
    from checks.schema import schemas_match

    if result.head is None:
        return [Verdict.error("migrations.drift", "no replayed schema to compare: the command failed")]
    ignore = [*result.ignored_tables(), *ignore_tables]
    verdicts = [schemas_match(result.head.without_tables(ignore), subject.live.without_tables(ignore),
                              check_id="migrations.drift", expected_name="the command's head",
                              actual_name=subject.name, evidence={"ignored_tables": ignore})]
    verdicts.append(history_against(subject.dsn, subject.name, result.tool_table, result.tool_rows,
                                    command=result.command.shown()))
    return verdicts
