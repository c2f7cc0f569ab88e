"""The restore-from-yesterday drill.

Phases, each journaled with UTC start, duration and status:

1. **discover** the newest backup in a store (key date pattern or LastModified);
2. **download** it to a private temp file while hashing it (SHA-256), and
   compare with a checksum sidecar when the store has one;
3. **detect** its format from its first bytes;
4. **restore** it into a fresh scratch database (``pg_restore -j N --no-owner``
   for custom and directory dumps, ``psql`` with ``ON_ERROR_STOP`` for plain
   SQL, gzip streamed; the named database's section of ``pg_dumpall`` output);
5. **first query** on the restored database — RTO ends here;
   download, restore and first query share one deadline (:mod:`drills.deadlines`): past it,
   the work is cancelled (client process group killed, the scratch database's sessions
   terminated server-side) and the drill raises :class:`RestoreTimedOut`;
6. **cleanup** in ``finally``: the scratch database is dropped and the temp
   files removed, journaled too.

The drill never writes anywhere but the scratch database it was handed, and
asks that database to prove it is scratch before the first write.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from checks.backups import (
    BackupObject,
    DumpFormat,
    KeyPattern,
    checksum_matches,
    compile_key_pattern,
    detect_format,
    newest_backup,
    parse_checksum_sidecar,
)
from checks.errors import (
    BackupRefused,
    BackupUnreadable,
    ChecksumMismatch,
    DrillbookError,
    NoBackupFound,
    RestoreFailed,
    RestoreTimedOut,
    TargetUnreachable,
)
from checks.files import DISK_ERRNOS, disk_error
from checks.redact import redact
from checks.verdict import Verdict

from . import deadlines, pgclient, pgtools, plain_sql
from .deadlines import Deadline, Limit
from .reaper import make_tempdir
from .stores import BackupStore, open_store
from .targets import Journal, PostgresTarget, ScratchPostgres, StoreSpec

CHUNK = 1 << 20
HEAD_BYTES = 64 * 1024
LOG_TAIL_LINES = 20
Progress = Callable[[str], None]


@dataclass
class RestoreResult:
    """What the drill did and measured. The scratch database lives until ``close()``."""

    store: str
    backup: BackupObject
    backup_time: datetime
    dump_format: DumpFormat | None = None
    sha256: str | None = None
    checksum: Verdict | None = None
    target: PostgresTarget | None = None
    timings: dict[str, float] = field(default_factory=dict)
    journal: Journal = field(default_factory=Journal)

    @property
    def rto_s(self) -> float:
        """Download + restore + first successful query."""
        return sum(self.timings.get(k, 0.0) for k in ("download", "restore", "first_query"))

    def evidence(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "key": self.backup.key,
            "size_bytes": self.backup.size,
            "backup_time": self.backup_time.isoformat(),
            "format": self.dump_format.value if self.dump_format else None,
            "sha256": self.sha256,
            "scratch": self.target.describe() if self.target else None,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "rto_s": round(self.rto_s, 3),
            "journal": self.journal.entries,
        }


class RestoreDrill:
    """Restore the newest backup of one store into a fresh scratch database.

    Use as a context manager: the scratch database and temp files are removed
    on exit, whatever happened.
    """

    def __init__(
        self,
        spec: StoreSpec,
        scratch: ScratchPostgres,
        *,
        jobs: int = 2,
        database: str | None = None,
        progress: Progress | None = None,
        store: BackupStore | None = None,
        limit: Limit | None = None,
    ) -> None:
        self.spec = spec
        self.scratch = scratch
        self.jobs = jobs
        self.database = database
        self.progress = progress or (lambda _msg: None)
        self.store = store or open_store(spec)
        self.journal = Journal()
        # Download + restore + first query must end by this (the scenario's RTO plus a margin, or
        # the configured default): a backup may hold a statement that never returns.
        self.limit = limit or Limit.configured(None, key="restore_timeout",
                                               default_s=deadlines.DEFAULT_RESTORE_TIMEOUT_S)
        self._deadline: Deadline | None = None
        # Recorded, so that a run killed mid-restore has its downloads reaped (drills/reaper.py).
        self._workdir, self._workdir_record = make_tempdir("drillbook-restore-")
        self._target: PostgresTarget | None = None
        self.result: RestoreResult | None = None
        # Why the scratch database could not be dropped or emptied, for callers that report it.
        self.cleanup_error: DrillbookError | psycopg.Error | None = None

    # -- phases ---------------------------------------------------------------

    def discover(self) -> tuple[BackupObject, datetime]:
        """The newest backup in the store and the time it was taken."""
        with self._phase("discover", store=self.store.describe()) as notes:
            objects = self.store.list()
            pattern = compile_key_pattern(self.spec.key_pattern) if self.spec.key_pattern else None
            backup, taken = _newest(objects, pattern, self.store)
            notes.update(objects=len(objects), key=backup.key, backup_time=taken.isoformat())
        return backup, taken

    def run(self, backup: BackupObject | None = None, taken: datetime | None = None) -> RestoreResult:
        """Discover (unless given), download, restore and query. Raises DrillbookError subclasses."""
        t0 = time.perf_counter()
        self._deadline = self.limit.start()
        if backup is None or taken is None:
            backup, taken = self.discover()
        result = RestoreResult(store=self.spec.name, backup=backup, backup_time=taken,
                               journal=self.journal)
        self.result = result
        result.timings["discover"] = time.perf_counter() - t0

        self.progress(f"downloading {backup.key} ({backup.size:,} bytes)")
        t = time.perf_counter()
        local = self._download(backup, result)
        result.timings["download"] = time.perf_counter() - t
        self._verify_checksum(backup, local, result)
        assert result.dump_format is not None  # set by _download from the head

        self.progress(f"restoring {result.dump_format.value} dump into a scratch database")
        t = time.perf_counter()
        with self._phase("create scratch database") as notes:
            target = self.scratch.fresh_database("restore")
            target.require_scratch()
            self._target = target
            result.target = target
            notes["scratch"] = target.describe()
        with self._phase("restore", format=result.dump_format.value, deadline=self.limit.describe()):
            self._restore(local, result.dump_format, target)
        result.timings["restore"] = time.perf_counter() - t

        t = time.perf_counter()
        with self._phase("first query") as notes:
            notes["relations"] = self._first_query(target)
        result.timings["first_query"] = time.perf_counter() - t
        result.timings["total"] = time.perf_counter() - t0
        return result

    def close(self) -> None:
        """Drop the scratch database and remove temp files (journaled, never raises)."""
        if self._target is not None:
            target, self._target = self._target, None
            try:
                with self._phase("cleanup: drop scratch database", scratch=target.describe()):
                    self.scratch.drop(target)
            except (DrillbookError, psycopg.Error) as exc:
                # Journaled and kept; the environment's own teardown drops what is left (or the
                # scratch server died, taking the database with it): temp files must still go.
                self.cleanup_error = exc
        if self._workdir.exists():
            with self._phase("cleanup: remove temp files"):
                shutil.rmtree(self._workdir, ignore_errors=True)
        if not self._workdir.exists():
            self._workdir_record.release()

    def __enter__(self) -> RestoreDrill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------

    def _phase(self, name: str, **evidence: Any) -> _PhaseContext:
        return _PhaseContext(self.journal, name, evidence)

    def _download(self, backup: BackupObject, result: RestoreResult) -> Path:
        """Copy the backup to a private temp file, hashing it; its head is judged before the copy.

        An object whose first bytes are no dump (say an 8 GiB sparse file of zeros) is refused
        before anything is written.
        """
        name = Path(backup.key).name or "backup"
        local = self._workdir / name
        digest = hashlib.sha256()
        with self._phase("download", key=backup.key) as notes:
            stream = self.store.open(backup)
            try:
                head = _read_head(stream)
                if not head:
                    raise BackupUnreadable(
                        f"backup {backup.key} in {self.store.describe()} is empty (0 bytes)",
                        key=backup.key,
                    )
                result.dump_format = detect_format(head, name=backup.key)
                notes["format"] = result.dump_format.value
                size = len(head)
                digest.update(head)
                try:
                    with local.open("wb") as out:
                        out.write(head)
                        while chunk := stream.read(CHUNK):
                            if self._deadline is not None and self._deadline.expired():
                                raise self._timed_out("download", backup.key, None)
                            digest.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
                except OSError as exc:
                    if exc.errno not in DISK_ERRNOS:
                        raise
                    # A full or unwritable TMPDIR: say where and in which phase, not a traceback.
                    raise disk_error(exc, path=local, phase=f"downloading backup {backup.key} into TMPDIR",
                                     what="TMPDIR") from exc
            finally:
                stream.close()
            result.sha256 = digest.hexdigest()
            notes.update(bytes=size, sha256=result.sha256)
        return local

    def _verify_checksum(self, backup: BackupObject, local: Path, result: RestoreResult) -> None:
        """Compare with the checksum sidecar, when there is one; a mismatch stops the drill here.

        A backup that is not the one its job wrote is never executed: the check runs before
        the restore, not after.
        """
        sidecar_key = backup.key + self.spec.checksum_suffix
        sidecar = self.store.read_text(sidecar_key)
        if sidecar is None or result.sha256 is None:
            return
        with self._phase("checksum", sidecar=sidecar_key) as notes:
            expected = parse_checksum_sidecar(sidecar, filename=local.name)
            result.checksum = checksum_matches(result.sha256, expected, key=backup.key)
            notes["outcome"] = result.checksum.outcome.value
            if result.checksum.counts_as_fail():
                raise ChecksumMismatch(
                    f"{result.checksum.message}: the backup was not restored",
                    key=backup.key, sidecar=sidecar_key,
                )

    def _restore(self, path: Path, fmt: DumpFormat, target: PostgresTarget) -> None:
        target.require_scratch()
        if fmt is DumpFormat.CUSTOM:
            self._pg_restore(["-j", str(self.jobs), str(path)], target, path)
        elif fmt is DumpFormat.DIRECTORY_TAR:
            self._restore_tar(path, target)
        elif fmt in (DumpFormat.PLAIN, DumpFormat.GZIP_PLAIN):
            self._psql(plain_sql.sql_lines(path, gz=fmt is DumpFormat.GZIP_PLAIN), target, path)
        else:
            gz = fmt is DumpFormat.GZIP_DUMPALL
            # Two passes over the local file keep memory flat: find the databases, then stream one.
            names = plain_sql.dumpall_databases(plain_sql.sql_lines(path, gz=gz))
            database = plain_sql.choose_database(names, self.database, path)
            self._psql(plain_sql.dumpall_section(plain_sql.sql_lines(path, gz=gz), database), target, path)

    def _restore_tar(self, path: Path, target: PostgresTarget) -> None:
        extract = self._workdir / "extracted"
        try:
            with tarfile.open(path) as tar:
                members = tar.getnames()
                tar.extractall(extract, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BackupUnreadable(f"{path.name}: not a readable tar archive: {exc}") from exc
        if "toc.dat" in members and "restore.sql" in members:
            # pg_dump -Ft: pg_restore reads the archive itself (tar format cannot run in parallel).
            self._pg_restore(["-Ft", str(path)], target, path)
            return
        tocs = sorted(extract.rglob("toc.dat"))
        if not tocs:
            raise BackupUnreadable(f"{path.name}: tar archive holds no toc.dat (not a pg_dump directory)")
        self._pg_restore(["-Fd", "-j", str(self.jobs), str(tocs[0].parent)], target, path)

    def _pg_restore(self, args: list[str], target: PostgresTarget, source: Path) -> None:
        # Owners and privileges name roles of the source cluster: the restore role takes them all.
        with pgclient.access(target.dsn) as access:
            command = [pgtools.tool("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error",
                       "-d", access.conninfo, *args]
            # Its own process group: on expiry the parallel workers it forked are killed with it.
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    env=access.env, cwd=self._workdir, start_new_session=True)
            try:
                _, stderr = proc.communicate(timeout=self._remaining())
            except subprocess.TimeoutExpired:
                deadlines.kill_process_group(proc)
                proc.communicate()
                raise self._timed_out("restore (pg_restore)", source.name, target) from None
            except BaseException:
                deadlines.kill_process_group(proc)
                proc.communicate()
                raise
        if proc.returncode != 0:
            raise _restore_failure("pg_restore", source, target, proc.returncode, stderr)

    def _psql(self, lines: Iterator[plain_sql.Numbered], target: PostgresTarget, source: Path) -> None:
        psql = pgtools.tool("psql")
        pgtools.require_restrict(psql)
        feed = plain_sql.PsqlFeed()
        stderr = self._workdir / "psql.stderr"
        with pgclient.access(target.dsn) as access, stderr.open("w+b") as err:
            command = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                       "-d", access.conninfo, "-f", "-"]
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=err, env=access.env, cwd=self._workdir, start_new_session=True)
            assert proc.stdin is not None
            assert self._deadline is not None
            # Feeding blocks in write() once psql is stuck on a statement: only a timer reaches it.
            with deadlines.Watchdog(self._deadline, lambda: deadlines.kill_process_group(proc)) as dog:
                try:
                    for line in feed.lines(lines):
                        proc.stdin.write(line)
                    proc.stdin.close()
                except BrokenPipeError:
                    pass  # psql stopped on an error (or was killed); its exit code and stderr say which
                except BaseException:
                    # Unreadable input (e.g. a truncated gzip) or an interrupt: kill psql
                    # rather than close its stdin, so the single transaction never commits.
                    deadlines.kill_process_group(proc)
                    proc.wait()
                    raise
                code = proc.wait()
            if dog.fired.is_set():
                raise self._timed_out("restore (psql)", source.name, target)
            err.seek(0)
            text = err.read().decode("utf-8", "replace")
        if code != 0:
            raise _restore_failure("psql", source, target, code, _file_lines(text, feed, source.name),
                                   feed=feed)


    def _remaining(self) -> float | None:
        return self._deadline.remaining() if self._deadline is not None else None

    def _first_query(self, target: PostgresTarget) -> int:
        deadline = self._deadline or self.limit.start()
        try:
            return _first_query(target, options=deadline.libpq_options())
        except psycopg.errors.QueryCanceled:
            raise self._timed_out("first query", target.describe(), target) from None

    def _timed_out(self, phase: str, name: str, target: PostgresTarget | None) -> RestoreTimedOut:
        """The client is already stopped; end what it left running in the server, then say so."""
        assert self._deadline is not None
        message = self._deadline.expiry_message(f"restore of {name}", phase)
        if target is not None:
            try:
                ended = deadlines.terminate_sessions(target.dsn)
                message += f"; its {ended} session(s) in the scratch database were terminated"
            except psycopg.Error as exc:
                # Cleanup's DROP DATABASE ... WITH (FORCE) ends them in any case.
                message += f"; its sessions could not be terminated now ({str(exc).strip()})"
        return RestoreTimedOut(message, phase=phase, elapsed_s=round(self._deadline.elapsed(), 3),
                               limit_s=round(self._deadline.limit.seconds, 3))


class _PhaseContext:
    """Times a phase and journals it, failed or not."""

    def __init__(self, journal: Journal, name: str, evidence: dict[str, Any]) -> None:
        self.journal = journal
        self.name = name
        self.notes: dict[str, Any] = dict(evidence)

    def __enter__(self) -> dict[str, Any]:
        self.started = datetime.now(UTC).isoformat()
        self.t0 = time.perf_counter()
        return self.notes

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        status = "ok" if exc is None else "failed"
        if exc is not None:
            self.notes["error"] = redact(str(exc))
        self.journal.add(self.name, status, self.started, time.perf_counter() - self.t0,
                         **self.notes)


def _first_query(target: PostgresTarget, *, options: str = "") -> int:
    try:
        with psycopg.connect(target.dsn, connect_timeout=10, options=options) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            ).fetchone()
    except psycopg.errors.QueryCanceled:
        raise  # the deadline's statement_timeout: the caller says so
    except psycopg.OperationalError as exc:
        raise TargetUnreachable(
            f"restored database {target.describe()} does not answer: {str(exc).strip()}"
        ) from exc
    return int(row[0]) if row else 0


def _first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if "ERROR" in line or "FATAL" in line or "error:" in line:
            return redact(line.strip())
    lines = [line for line in stderr.splitlines() if line.strip()]
    return redact(lines[-1].strip()) if lines else "no error output"


_PSQL_LINE = re.compile(r"^psql:<stdin>:(?P<line>\d+): ", re.MULTILINE)
_META_REFUSED = "backslash commands are restricted"
# What the server says when the restore role lacks a right only a superuser (or a
# privileged built-in role) has: the backup needs more than a restore may have.
_NEEDS_PRIVILEGE = re.compile(
    r"must be superuser|permission denied to (?:create extension|create role|create tablespace|"
    r"set parameter|create database)|pg_execute_server_program|pg_write_server_files|"
    r"pg_read_server_files|must be owner of|must be (?:able to SET ROLE|member of role)|"
    r"permission denied for (?:database|tablespace|function lo_)",
    re.IGNORECASE,
)


def _file_lines(stderr: str, feed: plain_sql.PsqlFeed, name: str) -> str:
    """psql's ``psql:<stdin>:N:`` prefixes rewritten as ``FILE:LINE:`` of the backup."""

    def replace(match: re.Match[str]) -> str:
        line = feed.file_line(int(match.group("line")))
        return f"{name}:{line}: " if line is not None else match.group(0)

    return _PSQL_LINE.sub(replace, stderr)


def _restore_failure(tool: str, source: Path, target: PostgresTarget, code: int, stderr: str, *,
                     feed: plain_sql.PsqlFeed | None = None) -> RestoreFailed:
    """The error for a failed restore; a refused meta-command or privilege is said as such."""
    first = _first_error(stderr)
    where = f"{tool} restore of {source.name} into {target.describe()}"
    if feed is not None and _META_REFUSED in stderr:
        match = re.search(rf"{re.escape(source.name)}:(\d+): ", first)
        line = int(match.group(1)) if match else None
        command = feed.meta_commands.get(line) if line is not None else None
        shown = f" `{redact(command)}`" if command else ""
        return BackupRefused(
            f"{where} refused: the backup contains a psql meta-command{shown} at "
            f"{source.name}:{line if line is not None else '?'}; a backup may not run client-side "
            "commands (shell, files, connections), so nothing of it was committed",
            log=redact(_tail(stderr)),
            hint="pg_dump and pg_dumpall write no meta-commands but \\connect and \\restrict: "
            "this file was altered, or was not written by them",
        )
    if _NEEDS_PRIVILEGE.search(stderr):
        return BackupRefused(
            f"{where} failed (exit {code}): {first}: the backup needs a right the restore role does "
            "not have (drillbook restores as a role that is not a superuser and owns only the scratch "
            "database, so that a backup cannot run commands or touch files on the server)",
            log=redact(_tail(stderr)),
            hint="a backup that needs a superuser (an untrusted extension, roles, tablespaces, server "
            "settings) cannot be drilled as it is; dump without them (pg_dump --no-owner --no-acl, "
            "trusted extensions only)",
        )
    return RestoreFailed(f"{where} failed (exit {code}): {first}", log=redact(_tail(stderr)))


def _tail(text: str) -> str:
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])


def _read_head(stream: Any) -> bytes:
    """Up to HEAD_BYTES from the start of a stream (``read`` may return less than asked)."""
    head = b""
    while len(head) < HEAD_BYTES:
        chunk = stream.read(HEAD_BYTES - len(head))
        if not chunk:
            break
        head += chunk
    return head


def newest_in_store(spec: StoreSpec) -> tuple[BackupObject, datetime, list[BackupObject]]:
    """Discovery alone, for freshness and retention checks that need no restore."""
    store = open_store(spec)
    objects = store.list()
    pattern = compile_key_pattern(spec.key_pattern) if spec.key_pattern else None
    backup, taken = _newest(objects, pattern, store)
    return backup, taken, objects


def _newest(objects: list[BackupObject], pattern: KeyPattern | None,
            store: BackupStore) -> tuple[BackupObject, datetime]:
    """The newest backup; "none found" names the store it looked in."""
    try:
        return newest_backup(objects, pattern=pattern)
    except NoBackupFound as exc:
        raise NoBackupFound(f"{store.describe()}: {exc.message}", hint=exc.hint, **exc.context) from None
