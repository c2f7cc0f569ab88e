"""``drillbook verify migrations DIR``: replay (round trip, drift, history, lint) without a feature.

Exit codes: 0 clean (warnings included), 1 a finding (a failed or errored
verdict), 2 usage or unreadable input (no such folder, unknown layout,
duplicate versions, an unreadable file, a ``--against`` database that does
not answer, a ``--scratch`` refused before its first write: on the server of
the ``--against`` database, reached by a role that could reach beyond it, or
not empty) — in that case nothing was written anywhere.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checks import redact
from checks.verdict import Verdict

from .runner import EXIT_FAILED, EXIT_PASSED, EXIT_USAGE

if TYPE_CHECKING:
    from checks.migration_history import History
    from checks.schema import SchemaSnapshot


def add_parser(verify_sub: Any) -> None:
    """Register ``verify migrations`` under the ``verify`` subcommands."""
    p = verify_sub.add_parser(
        "migrations", help="replay a migration folder into a scratch database (round trip, drift, lint)",
        description="DIR holds the migrations of one tool (Flyway, golang-migrate, goose, dbmate, Prisma, "
                    "sqitch, Liquibase, Atlas, sqlx, Diesel, …; detected, --layout overrides). Several "
                    "DIRs are replayed one after the other into one scratch database.",
    )
    from drills.config import MIGRATION_LAYOUTS

    p.add_argument("directories", type=Path, nargs="*", metavar="DIR",
                   help="the migration folders; with --command, the one folder the command runs in")
    p.add_argument("--layout", choices=MIGRATION_LAYOUTS,
                   help="the layout of every DIR, when detection should not decide")
    p.add_argument("--prelude", type=Path, metavar="FILE",
                   help="SQL run in the scratch database before the first step (what the team's init "
                        "script does in production: schemas, extensions, a search_path)")
    p.add_argument("--round-trip", action="store_true",
                   help="up to head, down to zero, up again: the schema must match at every version")
    p.add_argument("--against", metavar="DSN",
                   help="a live database (read-only): drift of its schema, and its migration history")
    p.add_argument("--history-table", help="the history table on --against, when not a known one")
    p.add_argument("--ignore-table", action="append", default=[], metavar="TABLE",
                   help="leave a table out of the drift comparison (repeatable)")
    p.add_argument("--lint", action="store_true",
                   help="lint the pending migrations (all, without --against) with squawk")
    p.add_argument("--fail-on", action="append", default=None, metavar="RULE",
                   help="squawk rule that fails the lint (repeatable; default: the destructive and "
                        "lock-heavy ones; 'all' for every rule)")
    p.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                   help="a session setting the migrations read (e.g. myapp.tenant=demo)")
    p.add_argument("--scratch", metavar="DSN",
                   help="an EMPTY database to replay into (default: a throwaway local one)")
    p.add_argument("--timeout", type=_duration, default=None, metavar="DURATION",
                   help="the replay's deadline, e.g. 10m (default 30m): past it the running statement "
                        "is cancelled and the replay fails naming its file and line")
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    from .verify_command import add_arguments as add_command_arguments

    add_command_arguments(p)


def verify_migrations(args: argparse.Namespace) -> int:
    """Run the requested checks; print the verdicts; return the exit code."""
    from checks.errors import DrillbookError, SafetyError, ScratchNotRestored
    from drills.migrations import IntegrityFailed, LayoutError, load_folders, read_script

    if args.migrate_command is not None:
        from .verify_command import verify_command

        return verify_command(args, finish=_finish, scratch_of=_scratch, limit=_limit)
    if args.down_command is not None or args.command_env:
        return _finish([Verdict.error("migrations.command", "--down-command and --command-env need "
                                                            "--command")], args, code=EXIT_USAGE)
    if not args.directories:
        return _finish([Verdict.error("migrations.layout", "give the migration folder DIR (or --command)")],
                       args, code=EXIT_USAGE)
    if args.against:
        redact.register_dsn(args.against)
    if args.scratch:
        redact.register_dsn(args.scratch)
    settings = _settings(args.setting)
    verdicts: list[Verdict] = []
    try:
        migrations = load_folders(args.directories, layout=args.layout)
        # Read and split every file now: an unreadable one stops us before anything is written.
        for migration in migrations.migrations:
            for part in (migration.up, migration.down, migration.verify):
                if part is not None:
                    read_script(part)
        if args.prelude is not None:
            read_script(args.prelude)
    except IntegrityFailed as exc:
        # The folder's own integrity record (atlas.sum) disagrees with its files: a finding.
        return _finish([Verdict.failed(exc.check_id, str(exc))], args, code=EXIT_FAILED)
    except LayoutError as exc:
        return _finish([Verdict.error("migrations.layout", str(exc))], args, code=EXIT_USAGE)
    if args.lint and args.fail_on:
        from checks.migration_lint import check_rule_names

        try:
            if args.fail_on != ["all"]:
                check_rule_names(args.fail_on)
        except DrillbookError as exc:
            return _finish([Verdict.error("migrations.lint", str(exc))], args, code=EXIT_USAGE)

    subject: _Subject | None = None
    if args.against:
        try:
            subject = _Subject.read(args.against, args.history_table)
        except DrillbookError as exc:
            return _finish([Verdict.error("migrations.against", str(exc))], args, code=EXIT_USAGE)
        if subject.history_error:
            verdicts.append(Verdict.not_applicable("migrations.history", subject.history_error))

    scratch = _scratch(args)
    try:
        verdicts += _replay(migrations, scratch, args, settings, subject)
    except SafetyError as exc:
        # Refused before the first write (a scratch on a subject's server, a powerful role, not
        # empty): usage, nothing written. A scratch not left as found is a finding of the run.
        code = EXIT_FAILED if isinstance(exc, ScratchNotRestored) else EXIT_USAGE
        return _finish([*verdicts, Verdict.error("migrations.scratch", str(exc))], args, code=code)
    finally:
        closer = getattr(scratch, "close", None)
        if callable(closer):
            closer()
    if args.lint:
        verdicts.append(_lint(migrations, subject, args.fail_on))
    code = EXIT_FAILED if any(v.counts_as_fail() for v in verdicts) else EXIT_PASSED
    return _finish(verdicts, args, code=code)


class _Subject:
    """The ``--against`` database, read once, read-only: its schema and its history."""

    def __init__(self, name: str, live: SchemaSnapshot, history: History | None,
                 history_error: str | None) -> None:
        self.name = name
        self.live = live
        self.history = history
        self.history_error = history_error

    @classmethod
    def read(cls, dsn: str, table: str | None) -> _Subject:
        import psycopg

        from checks.errors import TargetUnreachable
        from checks.migration_history import HistoryUnreadable, read_history
        from checks.schema import snapshot
        from drills.targets import PostgresTarget

        name = PostgresTarget(name="--against", dsn=dsn).describe()
        try:
            with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
                conn.read_only = True
                live = snapshot(conn)
                try:
                    history: History | None = read_history(conn, table=table)
                    error = None
                except HistoryUnreadable as exc:
                    if table is not None:
                        raise
                    history, error = None, f"no history validation: {exc.message}"
        except psycopg.Error as exc:
            raise TargetUnreachable(f"--against {name}: {redact.redact(str(exc).strip())}") from exc
        return cls(name, live, history, error)


def _replay(migrations: Any, scratch: Any, args: argparse.Namespace, settings: dict[str, str],
            subject: _Subject | None) -> list[Verdict]:
    from checks.migration_history import compare_history, known_tables, show_version, validate_history
    from checks.schema import schemas_match
    from drills.migrations import (
        MigrationError,
        MigrationReplay,
        replay_verdict,
        round_trip,
        round_trip_verdict,
    )

    verdicts: list[Verdict] = []
    target = scratch.fresh_database("verify-migrations")
    # Drift is measured at the subject's version (from its history) when it has one.
    at_version: tuple[int, ...] | None = None
    if subject is not None and subject.history is not None:
        verdicts.append(validate_history(subject.history, migrations.for_history()))
        report = compare_history(subject.history, migrations.for_history())
        applied = [m.key for m in migrations.versioned() if show_version(m.key) in report.applied]
        at_version = max(applied) if applied else ()
    snapshots: dict[tuple[int, ...], SchemaSnapshot] = {}
    try:
        with MigrationReplay(migrations, target, settings=settings, limit=_limit(args)) as replayer:
            if args.prelude is not None:
                verdict = _prelude(replayer, args.prelude, scratch)
                verdicts.append(verdict)
                if verdict.counts_as_fail():
                    return verdicts
            if args.round_trip:
                result = round_trip(replayer)
                versions = len(migrations.versioned())
                first_up_done = len(result.first_up) - 1 == versions
                verdicts.append(replay_verdict(
                    migrations, result.steps[: len(result.first_up) - 1],
                    failure=None if first_up_done else result.failure, target=target.describe()))
                if first_up_done:
                    verdicts.append(round_trip_verdict(result, migrations))
                snapshots = {m.key: result.snapshots[m.version] for m in migrations.versioned()
                             if m.version in result.snapshots}
                snapshots[()] = result.snapshots["0"]
            else:
                if at_version == ():
                    snapshots[()] = replayer.snapshot()

                def keep(migration: Any) -> None:
                    if at_version is not None and migration.key == at_version:
                        snapshots[migration.key] = replayer.snapshot()

                try:
                    runs = replayer.up(after_each=keep)
                    verdicts.append(replay_verdict(migrations, runs, target=target.describe()))
                    if subject is not None and at_version is None:
                        versioned = migrations.versioned()
                        snapshots[versioned[-1].key if versioned else ()] = replayer.snapshot()
                except MigrationError as exc:
                    verdicts.append(replay_verdict(migrations, list(replayer.steps), failure=exc,
                                                   target=target.describe()))
    finally:
        scratch.drop(target)
    if subject is not None:
        key = at_version if at_version is not None else (max(snapshots) if snapshots else None)
        replayed = snapshots.get(key) if key is not None else None
        if replayed is None:
            verdicts.append(Verdict.error("migrations.drift", "no replayed schema to compare: the "
                                                              "replay stopped before the subject's version"))
        else:
            ignore = [*known_tables(), *args.ignore_table]
            if subject.history is not None:
                ignore.append(subject.history.table)
            shown = ".".join(str(p) for p in key) if key else "0"
            verdicts.append(schemas_match(
                replayed.without_tables(ignore), subject.live.without_tables(ignore),
                check_id="migrations.drift", expected_name=f"replay at {shown}", actual_name=subject.name,
                evidence={"ignored_tables": ignore}))
    return verdicts


def _prelude(replayer: Any, path: Path, scratch: Any) -> Verdict:
    """The prelude as a verdict of its own: what ran before the first step is evidence.

    Its roles are made by the scratch (dropped with the database): see prelude_roles.py.
    """
    from drills.migrations import MigrationError, prelude_verdict
    from drills.migrations.prelude_roles import role_creator

    try:
        return prelude_verdict(path, replayer.prelude(path, roles=role_creator(scratch)))
    except MigrationError as exc:
        return prelude_verdict(path, None, failure=exc)


def _lint(migrations: Any, subject: _Subject | None, fail_on: list[str] | None) -> Verdict:
    from checks.errors import DrillbookError
    from checks.migration_history import compare_history, show_version
    from checks.migration_lint import ALL_RULES, DEFAULT_BLOCKING_RULES, lint_files, lint_verdict

    chosen = migrations.versioned()
    if subject is not None and subject.history is not None:
        report = compare_history(subject.history, migrations.for_history())
        chosen = [m for m in chosen if show_version(m.key) in report.pending]
    rules: Any = DEFAULT_BLOCKING_RULES
    if fail_on:
        rules = ALL_RULES if fail_on == ["all"] else set(fail_on)
    try:
        findings = lint_files([m.up.path for m in chosen], base=migrations.directory)
    except DrillbookError as exc:
        return Verdict.error("migrations.lint", str(exc))
    return lint_verdict(findings, failing_rules=rules, files=len(chosen))


def _settings(items: list[str]) -> dict[str, str]:
    from checks.errors import ConfigError

    found = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or "." not in name:
            raise ConfigError(f"--setting {item!r}: use NAME=VALUE with a dotted custom name "
                              "(e.g. myapp.tenant=demo)")
        found[name.strip()] = value
    return found


def _scratch(args: argparse.Namespace) -> Any:
    if args.scratch:
        from drills.live import ConfiguredScratch
        from drills.targets import PostgresTarget, Role

        # The --against database is a subject: the scratch must be proven to be on another server.
        subjects = [PostgresTarget(name="--against", dsn=args.against)] if args.against else []
        return ConfiguredScratch(PostgresTarget(name="--scratch", dsn=args.scratch, role=Role.SCRATCH),
                                 subjects=subjects)
    from drills.local import LocalScratch

    print("  starting a throwaway local PostgreSQL for the replay", file=sys.stderr)
    return LocalScratch.start()


def _finish(verdicts: list[Verdict], args: argparse.Namespace, *, code: int) -> int:
    if args.json:
        from .cli import print_json

        print_json({"exit_code": code, "verdicts": [v.to_dict() for v in verdicts]})
        return code
    for verdict in verdicts:
        print(redact.redact(f"{verdict.outcome.value.upper():<8} {verdict.id}: {verdict.message}"))
        evidence = verdict.evidence
        lines = evidence.get("diff", {}).get("lines", []) if isinstance(evidence.get("diff"), dict) else []
        for line in lines[:40]:
            print(redact.redact(f"         {line}"))
    return code


def _duration(text: str) -> timedelta:
    """``--timeout``: a duration as runbooks write it; argparse reports a bad one (exit 2)."""
    from checks.durations import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"must be longer than 0s, got {text!r}")
    return value


def _limit(args: argparse.Namespace) -> Any:
    from drills import deadlines

    if args.timeout is not None:
        return deadlines.Limit(args.timeout.total_seconds(), "--timeout")
    return deadlines.Limit.configured(None, key="migration_timeout",
                                      default_s=deadlines.DEFAULT_MIGRATION_TIMEOUT_S)
