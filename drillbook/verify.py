"""``drillbook verify backup``: the restore drill on one backup, without a feature."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import psycopg

from checks import redact
from checks.backups import BackupObject, backup_freshness
from checks.compare import compare_databases
from checks.durations import parse_duration
from checks.errors import ConfigError, NoBackupFound, SafetyError, ScratchNotRestored, StoreUnreachable
from checks.verdict import Verdict, format_duration, verdict_from_error
from drills import deadlines
from drills.deadlines import Limit
from drills.restore import RestoreDrill
from drills.targets import PostgresTarget, Role, StoreSpec

from .runner import EXIT_FAILED, EXIT_PASSED, EXIT_USAGE


class SingleFileStore:
    """A store of exactly one local dump file (its mtime as the backup time)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def list(self) -> list[BackupObject]:
        stat = self.path.stat()
        return [BackupObject(key=self.path.name, size=stat.st_size,
                             last_modified=datetime.fromtimestamp(stat.st_mtime, UTC))]

    def open(self, obj: BackupObject) -> BinaryIO:
        return self.path.open("rb")

    def read_text(self, key: str) -> str | None:
        sidecar = self.path.parent / key
        return sidecar.read_text(encoding="utf-8", errors="replace") if sidecar.is_file() else None

    def describe(self) -> str:
        return str(self.path)


def verify_backup(args: argparse.Namespace) -> int:
    """Exit 0 restorable and verified, 1 not, 2 usage or unreadable input."""
    # Every argument is validated before anything starts (a scratch PostgreSQL takes a second):
    # a usage error is exit 2 with nothing started, never a failed verdict after a server start.
    max_age = _duration(args.max_age, "--max-age") if args.max_age else None
    limit = _restore_limit(getattr(args, "timeout", None))
    if args.key_pattern is not None:
        _key_pattern(args.key_pattern)
    if args.compare_with:
        redact.register_dsn(args.compare_with)
    if args.scratch:
        redact.register_dsn(args.scratch)
    spec, store = _source(args)
    scratch = _scratch(args)
    verdicts: list[Verdict] = []
    code = EXIT_PASSED
    try:
        with RestoreDrill(spec, scratch, database=args.database, store=store, limit=limit,
                          progress=lambda m: print(f"  {m}", file=sys.stderr)) as drill:
            try:
                result = drill.run()
            except (NoBackupFound, StoreUnreachable, SafetyError) as exc:
                # Nothing was restored, so nothing is known about the backup: usage, not "not restorable".
                verdicts.append(verdict_from_error("restore.completed", exc))
                code = EXIT_USAGE
            except Exception as exc:  # noqa: BLE001 - every drill failure becomes a verdict
                verdicts.append(verdict_from_error("restore.completed", exc))
            else:
                verdicts.append(Verdict.passed(
                    "restore.completed",
                    f"{result.backup.key} ({result.dump_format}) restored in "
                    f"{format_duration(timedelta(seconds=result.rto_s))}",
                    measured=round(result.rto_s, 3), evidence=result.evidence(),
                ))
                if result.checksum is not None:
                    verdicts.append(result.checksum)
                if max_age is not None:
                    verdicts.append(backup_freshness(result.backup_time, now=datetime.now(UTC),
                                                     max_age=max_age))
                if args.compare_with:
                    subject_dsn: str = args.compare_with
                    target = result.target
                    assert target is not None
                    # The server cancels a comparison statement past the default query deadline.
                    options = Limit.configured(None, key="query_timeout",
                                               default_s=deadlines.DEFAULT_QUERY_TIMEOUT_S).start().libpq_options()
                    verdicts.append(compare_databases(
                        lambda: psycopg.connect(subject_dsn, connect_timeout=10, options=options),
                        lambda: psycopg.connect(target.dsn, connect_timeout=10, options=options),
                        cutoff=result.backup_time,
                    ))
        if isinstance(drill.cleanup_error, ScratchNotRestored):
            # A configured scratch not left as it was found is the user's to know about.
            verdicts.append(verdict_from_error("scratch.cleanup", drill.cleanup_error))
    finally:
        closer = getattr(scratch, "close", None)
        if callable(closer):
            closer()
    failed = [v for v in verdicts if v.counts_as_fail()]
    if failed and code == EXIT_PASSED:
        code = EXIT_FAILED
    _print(verdicts, as_json=args.json, code=code)
    return code


def _print(verdicts: list[Verdict], *, as_json: bool, code: int) -> None:
    if as_json:
        from .cli import print_json

        print_json({"exit_code": code, "verdicts": [v.to_dict() for v in verdicts]})
        return
    for verdict in verdicts:
        print(redact.redact(f"{verdict.outcome.value.upper():<8} {verdict.id}: {verdict.message}"))


def _key_pattern(pattern: str) -> None:
    """``--key-pattern`` compiles, or :class:`ConfigError` naming the option (exit 2)."""
    from checks.backups import compile_key_pattern

    try:
        compile_key_pattern(pattern)
    except ConfigError as exc:
        raise ConfigError(f"--key-pattern: {exc.message}", hint=exc.hint, key="--key-pattern") from exc


def _restore_limit(text: str | None) -> Limit:
    """``--timeout``: the restore's deadline (validated before anything starts), else the default."""
    if text is None:
        return Limit.configured(None, key="restore_timeout", default_s=deadlines.DEFAULT_RESTORE_TIMEOUT_S)
    value = _duration(text, "--timeout")
    if value <= timedelta(0):
        raise ConfigError(f"--timeout: must be longer than 0s, got {text!r}")
    return Limit(value.total_seconds(), "--timeout")


def _duration(text: str, option: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from exc


def _source(args: argparse.Namespace) -> tuple[StoreSpec, Any]:
    source: str = args.source
    if source.startswith("s3://"):
        spec = StoreSpec(
            name="source", url=source, key_pattern=args.key_pattern,
            endpoint_url=args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
            region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
            secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        )
        redact.register(spec.secret_access_key)
        return spec, None
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"backup source {source} does not exist",
                          hint="give a dump file, a directory of dumps, or s3://bucket/prefix")
    if path.is_dir():
        return StoreSpec(name="source", url=str(path.resolve()), key_pattern=args.key_pattern), None
    spec = StoreSpec(name="source", url=str(path.resolve().parent))
    return spec, SingleFileStore(path.resolve())


def _scratch(args: argparse.Namespace) -> Any:
    if args.scratch:
        from drills.live import ConfiguredScratch

        # The database compared with is a subject: the scratch must be proven to be on another server.
        subjects = [PostgresTarget(name="--compare-with", dsn=args.compare_with)] if args.compare_with else []
        return ConfiguredScratch(PostgresTarget(name="--scratch", dsn=args.scratch, role=Role.SCRATCH),
                                 subjects=subjects)
    from drills.local import LocalScratch

    print("  starting a throwaway local PostgreSQL for the restore", file=sys.stderr)
    return LocalScratch.start()
