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
6. **cleanup** in ``finally``: the scratch database is dropped and the temp
   files removed, journaled too.

The drill never writes anywhere but the scratch database it was handed, and
asks that database to prove it is scratch before the first write.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import zlib
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
    BackupUnreadable,
    DrillbookError,
    NoBackupFound,
    RestoreFailed,
    TargetUnreachable,
)
from checks.redact import redact
from checks.verdict import Verdict

from . import pgtools
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
    ) -> None:
        self.spec = spec
        self.scratch = scratch
        self.jobs = jobs
        self.database = database
        self.progress = progress or (lambda _msg: None)
        self.store = store or open_store(spec)
        self.journal = Journal()
        self._workdir = Path(tempfile.mkdtemp(prefix="drillbook-restore-"))
        self._target: PostgresTarget | None = None
        self.result: RestoreResult | None = None

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

        with self._phase("detect") as notes:
            with local.open("rb") as fh:
                head = fh.read(HEAD_BYTES)
            result.dump_format = detect_format(head, name=backup.key)
            notes["format"] = result.dump_format.value

        self.progress(f"restoring {result.dump_format.value} dump into a scratch database")
        t = time.perf_counter()
        with self._phase("create scratch database") as notes:
            target = self.scratch.fresh_database("restore")
            target.require_scratch()
            self._target = target
            result.target = target
            notes["scratch"] = target.describe()
        with self._phase("restore", format=result.dump_format.value):
            self._restore(local, result.dump_format, target)
        result.timings["restore"] = time.perf_counter() - t

        t = time.perf_counter()
        with self._phase("first query") as notes:
            notes["relations"] = _first_query(target)
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
            except (DrillbookError, psycopg.Error):
                # Journaled; the environment's own teardown drops what is left (or the scratch
                # server died, taking the database with it): temp files must still go.
                pass
        if self._workdir.exists():
            with self._phase("cleanup: remove temp files"):
                shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> RestoreDrill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------

    def _phase(self, name: str, **evidence: Any) -> _PhaseContext:
        return _PhaseContext(self.journal, name, evidence)

    def _download(self, backup: BackupObject, result: RestoreResult) -> Path:
        name = Path(backup.key).name or "backup"
        local = self._workdir / name
        digest = hashlib.sha256()
        size = 0
        with self._phase("download", key=backup.key) as notes:
            stream = self.store.open(backup)
            try:
                with local.open("wb") as out:
                    while chunk := stream.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            finally:
                stream.close()
            result.sha256 = digest.hexdigest()
            notes.update(bytes=size, sha256=result.sha256)
            if size == 0:
                raise BackupUnreadable(
                    f"backup {backup.key} in {self.store.describe()} is empty (0 bytes)",
                    key=backup.key,
                )
        sidecar_key = backup.key + self.spec.checksum_suffix
        sidecar = self.store.read_text(sidecar_key)
        if sidecar is not None:
            with self._phase("checksum", sidecar=sidecar_key) as notes:
                expected = parse_checksum_sidecar(sidecar, filename=name)
                result.checksum = checksum_matches(result.sha256, expected, key=backup.key)
                notes["outcome"] = result.checksum.outcome.value
        return local

    def _restore(self, path: Path, fmt: DumpFormat, target: PostgresTarget) -> None:
        target.require_scratch()
        if fmt is DumpFormat.CUSTOM:
            self._pg_restore(["-j", str(self.jobs), str(path)], target, path)
        elif fmt is DumpFormat.DIRECTORY_TAR:
            self._restore_tar(path, target)
        elif fmt in (DumpFormat.PLAIN, DumpFormat.GZIP_PLAIN):
            self._psql(_sql_lines(path, gz=fmt is DumpFormat.GZIP_PLAIN), target, path)
        else:
            gz = fmt is DumpFormat.GZIP_DUMPALL
            # Two passes over the local file keep memory flat: find the databases, then stream one.
            database = _choose_database(_dumpall_databases(_sql_lines(path, gz=gz)), self.database, path)
            self._psql(_dumpall_section(_sql_lines(path, gz=gz), database), target, path)

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
        command = [pgtools.tool("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error",
                   "-d", target.dsn, *args]
        proc = subprocess.run(command, capture_output=True, text=True, check=False,
                              env=_quiet_env())
        if proc.returncode != 0:
            raise RestoreFailed(
                f"pg_restore of {source.name} into {target.describe()} failed "
                f"(exit {proc.returncode}): {_first_error(proc.stderr)}",
                log=redact(_tail(proc.stderr)),
            )

    def _psql(self, lines: Iterator[bytes], target: PostgresTarget, source: Path) -> None:
        command = [pgtools.tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                   "--single-transaction", "-d", target.dsn, "-f", "-"]
        stderr = self._workdir / "psql.stderr"
        with stderr.open("w+b") as err:
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=err, env=_quiet_env())
            assert proc.stdin is not None
            try:
                for line in lines:
                    proc.stdin.write(line)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # psql stopped on an error; its exit code and stderr say which
            except BaseException:
                # Unreadable input (e.g. a truncated gzip) or an interrupt: kill psql
                # rather than close its stdin, so the single transaction never commits.
                proc.kill()
                proc.wait()
                raise
            code = proc.wait()
            err.seek(0)
            text = err.read().decode("utf-8", "replace")
        if code != 0:
            raise RestoreFailed(
                f"psql restore of {source.name} into {target.describe()} failed "
                f"(exit {code}): {_first_error(text)}",
                log=redact(_tail(text)),
            )


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


def _quiet_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PGCONNECT_TIMEOUT"] = "10"
    env.setdefault("PGOPTIONS", "-c client_min_messages=warning")
    return env


def _first_query(target: PostgresTarget) -> int:
    try:
        with psycopg.connect(target.dsn, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            ).fetchone()
    except psycopg.OperationalError as exc:
        raise TargetUnreachable(
            f"restored database {target.describe()} does not answer: {str(exc).strip()}"
        ) from exc
    return int(row[0]) if row else 0


def _sql_lines(path: Path, *, gz: bool) -> Iterator[bytes]:
    """The dump's lines; a gzip stream is decompressed on the fly and must end cleanly."""
    if not gz:
        with path.open("rb") as fh:
            yield from fh
        return
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = b""
    consumed = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            consumed += len(chunk)
            try:
                data = decompressor.decompress(chunk)
            except zlib.error as exc:
                raise BackupUnreadable(
                    f"{path.name}: corrupt gzip data near byte {consumed:,}: {exc}"
                ) from exc
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line + b"\n"
            while decompressor.eof and decompressor.unused_data:
                # Concatenated gzip members are legal (e.g. appended by cat).
                rest = decompressor.unused_data
                decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                pending += decompressor.decompress(rest)
    if not decompressor.eof:
        raise BackupUnreadable(
            f"{path.name}: gzip stream is truncated (ended after {consumed:,} bytes "
            "without its end-of-stream marker)",
        )
    if pending:
        yield pending


_DB_HEADER = re.compile(rb'^-- Database "(?P<name>(?:[^"]|"")+)" dump\s*$')
_SKIP_IN_SECTION = re.compile(rb"^(CREATE DATABASE |ALTER DATABASE |\\connect )")
_TEMPLATES = ("postgres", "template0", "template1")


def _dumpall_databases(lines: Iterator[bytes]) -> list[str]:
    """Names of the databases a ``pg_dumpall`` output rebuilds, in order."""
    names = []
    for line in lines:
        match = _DB_HEADER.match(line)
        if match:
            names.append(match.group("name").replace(b'""', b'"').decode("utf-8", "replace"))
    return names


def _choose_database(names: list[str], database: str | None, path: Path) -> str:
    """The named database, or the one application database when none is named."""
    if database is not None:
        if database not in names:
            raise BackupUnreadable(
                f"{path.name}: pg_dumpall output has no database {database!r} "
                f"(databases in the dump: {', '.join(names) or 'none'})",
            )
        return database
    candidates = [n for n in names if n not in _TEMPLATES]
    if len(candidates) != 1:
        raise BackupUnreadable(
            f"{path.name}: pg_dumpall output holds {len(candidates)} application databases "
            f"({', '.join(candidates) or 'none'}); name the one to restore",
            hint='add `from database "NAME"` to the restore step, or `--database` to verify backup',
        )
    return candidates[0]


def _dumpall_section(lines: Iterator[bytes], database: str) -> Iterator[bytes]:
    """The part of ``pg_dumpall`` output that rebuilds one database, minus CREATE/\\connect.

    Roles and tablespaces (the globals) belong to the cluster, not to the
    scratch database, so they are left out, and so are the statements that
    create or switch to the original database: its content goes into the
    scratch database instead.
    """
    wanted = database.encode()
    current: bytes | None = None
    for line in lines:
        match = _DB_HEADER.match(line)
        if match:
            current = match.group("name").replace(b'""', b'"')
            continue
        if current == wanted and not _SKIP_IN_SECTION.match(line):
            yield line


def _first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if "ERROR" in line or "FATAL" in line or "error:" in line:
            return redact(line.strip())
    lines = [line for line in stderr.splitlines() if line.strip()]
    return redact(lines[-1].strip()) if lines else "no error output"


def _tail(text: str) -> str:
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])


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
