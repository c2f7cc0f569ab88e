"""Restore a ``pg_basebackup`` base backup plus its WAL archive into a scratch server and recover it.

The design study (docs/design/physical-backups.md, A4/A5/B3) is followed phase by phase, each
journaled: **discover** (the newest backup, or the newest taken at or before a target time),
**extract** (tar/tar.gz through tarfile's ``data`` filter, or a plain directory copy refusing
links) into a private scratch directory, **quarantine** (the backup's ``postgresql.auto.conf``
moved aside, its SHA-256 kept; ``standby.signal`` removed; ``recovery.signal`` written),
**recover** (the server started as drillbook decides: every setting of A5 forced with ``-c``, its
own config/hba/ident files, a generated ``restore_command`` that copies from a WAL copy in scratch
and exits 126 on a segment missing inside the archive's range, so a gap aborts recovery naming it
instead of promoting silently), **first query** (RTO ends), and **cleanup** in ``finally``
(server stopped, scratch removed).

Readiness is the server's state, never ``pg_ctl -w``'s (A4): paused at the target, or out of
recovery (promoted at the end of the archive), or the postmaster gone (its log says why).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from checks.backups import BackupObject, compile_key_pattern
from checks.errors import BackupRefused, DrillbookError, NoBackupFound, RestoreFailed, RestoreTimedOut
from checks.pitr import SEGMENT, first_missing
from checks.redact import redact

from . import deadlines, pgtools
from .deadlines import Limit
from .processes import SERVER_USER, PostgresServer, hand_to_server_user, postgres_version, running_as_root
from .reaper import make_tempdir
from .restore import RestoreResult, _PhaseContext
from .targets import Journal, PostgresTarget, Role, StoreSpec

HISTORY = re.compile(r"[0-9A-F]{8}\.history")
_BACKUP_HISTORY = re.compile(r"[0-9A-F]{24}\.[0-9A-F]{8}\.backup")
_POLL_S = 0.1
# What the server's log says when recovery cannot go on (A4).
_NOT_REACHED = "recovery ended before configured recovery target was reached"
_COULD_NOT_RESTORE = re.compile(r'could not restore file "([0-9A-F]{24})" from archive'
                                r'|drillbook: WAL segment ([0-9A-F]{24}) is missing')


@dataclass
class PhysicalResult(RestoreResult):
    """A recovered scratch cluster: what was restored, forced and measured."""

    recovery: dict[str, Any] = field(default_factory=dict)

    @property
    def rto_s(self) -> float:
        """Extract + recovery + first successful query."""
        return sum(self.timings.get(k, 0.0) for k in ("restore", "recovery", "first_query"))

    def evidence(self) -> dict[str, Any]:
        return {**super().evidence(), "format": "pg_basebackup", "recovery": self.recovery}


def list_base_backups(spec: StoreSpec) -> list[tuple[BackupObject, datetime]]:
    """Every base backup directly in the store's directory and when it was taken, oldest first.

    A backup is a ``*.tar``/``*.tar.gz`` file, a directory holding ``base.tar[.gz]``, or a plain
    data directory (``PG_VERSION``). With a key pattern its date comes from the name (names that
    do not match are ignored), else from the modification time.
    """
    pattern = compile_key_pattern(spec.key_pattern) if spec.key_pattern else None
    found: list[tuple[BackupObject, datetime]] = []
    try:
        entries = sorted(spec.path.iterdir())
    except OSError as exc:
        raise NoBackupFound(f"cannot list base backups in {spec.path}: {exc.strerror or exc}",
                            store=spec.name) from exc
    for entry in entries:
        if entry.is_symlink() or not (_tar_of(entry) or (entry / "PG_VERSION").is_file()):
            continue
        info = entry.stat()
        modified = datetime.fromtimestamp(info.st_mtime, UTC)
        taken = pattern.parse(entry.name) if pattern else modified
        if taken is not None:
            found.append((BackupObject(key=entry.name, size=info.st_size, last_modified=modified), taken))
    return sorted(found, key=lambda item: item[1])


def _tar_of(entry: Path) -> Path | None:
    """The base tar a store entry is or holds, else None (plain directory or no backup)."""
    if entry.is_file() and entry.name.endswith((".tar", ".tar.gz", ".tgz")):
        return entry
    for name in ("base.tar.gz", "base.tar"):
        if (entry / name).is_file():
            return entry / name
    return None


def extract_tar(archive: Path, dest: Path) -> int:
    """Extract an untrusted tar into ``dest`` only (tarfile's ``data`` filter); return members.

    Absolute names, ``..``, links pointing out and device files are refused by the filter:
    :class:`BackupRefused` naming the member, before or instead of writing it.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:  # refuse before writing anything (the filter alone stops mid-way)
                _refuse_escapes(member, archive)
                tarfile.data_filter(member, str(dest))
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        raise BackupRefused(f"{archive.name}: refusing member {exc.tarinfo.name!r}: {exc}",
                            hint="a base backup never holds absolute paths, `..` or links out of "
                            "its directory: inspect who wrote this archive", key=archive.name) from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise RestoreFailed(f"{archive.name} is not a readable tar: {exc}", key=archive.name) from exc
    return len(members)


def _refuse_escapes(member: tarfile.TarInfo, archive: Path) -> None:
    """Absolute names and ``..`` are refused outright (the data filter would strip a leading ``/``)."""
    link = member.linkname if member.islnk() or member.issym() else ""
    for what, name in (("name", member.name), ("link target", link)):
        if name.startswith("/") or ".." in name.split("/"):
            raise BackupRefused(f"{archive.name}: refusing member {member.name!r}: its {what} {name!r} "
                                "is absolute or climbs with `..`", key=archive.name,
                                hint="a base backup never holds such names: inspect who wrote this archive")


def copy_plain(source: Path, dest: Path) -> int:
    """Copy a plain-format backup, refusing any symlink (tablespaces are not supported)."""
    count = 0
    for root, dirs, files in os.walk(source):
        for name in dirs + files:
            if (Path(root) / name).is_symlink():
                raise BackupRefused(f"{source.name}: refusing link {Path(root, name).relative_to(source)}",
                                    key=source.name)
        count += len(files)
    shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
    return count


def _chown_tree(path: Path) -> None:
    """Hand an extracted tree to the server user (tarfile's data filter keeps the extractor's)."""
    if not running_as_root():
        return
    entry = pwd.getpwnam(SERVER_USER)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(Path(root) / name, entry.pw_uid, entry.pw_gid)
    os.lchown(path, entry.pw_uid, entry.pw_gid)


def _label(datadir: Path) -> dict[str, str]:
    """``backup_label`` as a mapping (START WAL LOCATION, START TIME, …); refused when missing."""
    try:
        text = (datadir / "backup_label").read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise RestoreFailed("the base backup holds no backup_label: it is no pg_basebackup backup",
                            hint="point the store at pg_basebackup output") from exc
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


def _ended(entry: Path, wal_dir: Path) -> datetime | None:
    """When a backup ended, from its ``backup_label`` (the first tar member) and the archive."""
    text = ""
    try:
        tar_path = _tar_of(entry)
        if tar_path is None:
            text = (entry / "backup_label").read_text(encoding="utf-8", errors="replace")
        else:
            with tarfile.open(tar_path, "r:*") as tar:
                for _, member in zip(range(5), tar, strict=False):  # pg_basebackup writes it first
                    if member.name == "backup_label" and member.isfile() and member.size < 65536:
                        stream = tar.extractfile(member)
                        text = stream.read().decode("utf-8", "replace") if stream else ""
                        break
    except (OSError, tarfile.TarError, EOFError):
        return None  # judged again, loudly, when this backup is extracted
    start = re.search(r"START WAL LOCATION: .*\(file ([0-9A-F]{24})\)", text)
    return _stop_time(wal_dir, start.group(1)) if start else None


def _stop_time(wal_dir: Path, start_segment: str) -> datetime | None:
    """The backup's end (STOP TIME) from the archive's ``.backup`` history file, when present."""
    for entry in sorted(wal_dir.glob(f"{start_segment}.*.backup")):
        if not _BACKUP_HISTORY.fullmatch(entry.name):
            continue
        with entry.open("rb") as file:  # a history file is a few lines: never read a huge one whole
            text = file.read(65536).decode("utf-8", "replace")
        for line in text.splitlines():
            if line.startswith("STOP TIME:"):
                return _pg_time(line.partition(":")[2].strip())
    return None


def _pg_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text.replace(" UTC", " +0000"), "%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        return None


def restore_script(wal_copy: Path, first: str, last: str) -> str:
    """The ``restore_command`` script: copy from ``wal_copy``; a segment in [first, last] missing → 126.

    PostgreSQL aborts recovery on a status > 125 (A4) and names the file; status 1 means "end of
    archive". Names are 24 upper-case hex digits of one timeline, so string order is WAL order.
    """
    for value in (first, last):
        if not SEGMENT.fullmatch(value):
            raise ValueError(f"not a WAL segment name: {value!r}")
    quoted = str(wal_copy).replace("'", "'\\''")
    return f"""#!/bin/sh
# Generated by drillbook: copies WAL from its own copy of the archive, never the network.
f="$1"
if [ -f '{quoted}'/"$f" ]; then exec cp '{quoted}'/"$f" "$2"; fi
case "$f" in
  {first[:8]}????????????????)
    if [ ! "$f" \\< '{first}' ] && [ ! "$f" \\> '{last}' ]; then
      echo "drillbook: WAL segment $f is missing inside the archive ({first} to {last})" >&2
      exit 126
    fi;;
esac
exit 1
"""


class PhysicalRestore:
    """Restore the newest base backup (or the newest taken by ``target``) and recover it.

    Use as a context manager: the server is stopped and scratch removed on exit, whatever happened.
    """

    def __init__(self, spec: StoreSpec, *, target: datetime | None = None, limit: Limit | None = None,
                 bindir: Path | None = None, database: str | None = None) -> None:
        if spec.wal is None:
            raise RestoreFailed(f"store `{spec.name}` has no WAL archive", store=spec.name)
        self.spec = spec
        self.wal_dir = Path(spec.wal)
        self.target = target
        self.database = database  # which database later steps query: None = the only user one
        self.limit = limit or Limit.configured(None, key="restore_timeout",
                                               default_s=deadlines.DEFAULT_RESTORE_TIMEOUT_S)
        self.bindir = bindir or pgtools.bindir()
        self.journal = Journal()
        self._workdir, self._record = make_tempdir("drillbook-restore-")
        self._workdir.chmod(0o711)  # the server user must traverse it (it owns what is inside)
        self.server: PostgresServer | None = None
        self.result: PhysicalResult | None = None

    def __enter__(self) -> PhysicalRestore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _phase(self, name: str, **evidence: Any) -> _PhaseContext:
        return _PhaseContext(self.journal, name, evidence)

    def run(self) -> PhysicalResult:
        """Every phase up to the first query. Raises DrillbookError subclasses."""
        t0 = time.perf_counter()
        deadline = self.limit.start()
        with self._phase("discover", store=self.spec.url, wal=str(self.wal_dir)) as notes:
            backup, taken = self._choose()
            notes.update(key=backup.key, backup_time=taken.isoformat())
        result = PhysicalResult(store=self.spec.name, backup=backup, backup_time=taken, journal=self.journal)
        self.result = result
        result.timings["discover"] = time.perf_counter() - t0
        datadir = self._workdir / "data"

        t = time.perf_counter()
        with self._phase("restore", key=backup.key) as notes:
            datadir.mkdir(mode=0o700)
            entry = self.spec.path / backup.key
            notes["members"] = self._extract(entry, datadir)
            _chown_tree(datadir)
            datadir.chmod(0o700)
        result.timings["restore"] = time.perf_counter() - t
        if deadline.expired():
            raise RestoreTimedOut(f"extracting {backup.key} took past the limit ({self.limit.describe()})",
                                  store=self.spec.name)

        with self._phase("quarantine") as notes:
            notes.update(self._quarantine(datadir))
            result.recovery["quarantined"] = dict(notes)
        label = _label(datadir)
        start = re.search(r"\(file ([0-9A-F]{24})\)", label.get("START WAL LOCATION", ""))
        if start is None:
            raise RestoreFailed(f"{backup.key}: backup_label names no start WAL segment", key=backup.key)
        first = start.group(1)
        stop = _stop_time(self.wal_dir, first)
        result.recovery.update(start_segment=first, backup_end=stop.isoformat() if stop else None)
        if self.target is not None and stop is not None and stop > self.target:
            raise RestoreFailed(
                f"target {self.target.isoformat()} is before the end of base backup {backup.key} "
                f"({stop.isoformat()}): no backup in `{self.spec.name}` can recover to it",
                hint="pick a target after the oldest backup's end", target=self.target.isoformat())

        with self._phase("copy WAL", archive=str(self.wal_dir)) as notes:
            last, missing = self._copy_wal(first, notes)
        result.recovery.update(last_segment=last, first_missing_segment=missing)

        t = time.perf_counter()
        with self._phase("recover", target=self.target.isoformat() if self.target else "end of archive",
                         deadline=self.limit.describe()) as notes:
            state = self._recover(datadir, first, last, deadline.remaining())
            notes.update(state)
            result.recovery.update(state)
        result.timings["recovery"] = time.perf_counter() - t

        assert self.server is not None
        t = time.perf_counter()
        with self._phase("first query") as notes, psycopg.connect(self.server.dsn(), connect_timeout=10,
                                                                 autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_catalog.pg_class").fetchone()
            notes["relations"] = row[0] if row else 0
            names = [r[0] for r in conn.execute(
                "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate "
                "AND datname <> 'postgres' ORDER BY datname").fetchall()]
        result.timings["first_query"] = time.perf_counter() - t
        database = self.database or (names[0] if len(names) == 1 else "postgres")
        if database != "postgres" and database not in names:
            raise RestoreFailed(f"the recovered cluster has no database {database!r} (it has: "
                                f"{', '.join(names) or 'only postgres'})", database=database)
        result.recovery["database"] = database
        result.target = PostgresTarget(name=f"{self.spec.name}-recovered", dsn=self.server.dsn(database),
                                       role=Role.SCRATCH, created_by_drillbook=True)
        result.timings["total"] = time.perf_counter() - t0
        return result

    def close(self) -> None:
        """Stop the server and remove scratch (journaled, never raises)."""
        if self.server is not None:
            server, self.server = self.server, None
            with self._phase("cleanup: stop scratch server"):
                try:
                    server.stop()
                except Exception as exc:  # noqa: BLE001 - scratch must still be removed
                    self.journal.add("cleanup: stop failed", "error", datetime.now(UTC).isoformat(), 0.0,
                                     error=redact(str(exc)))
        if self._workdir.exists():
            with self._phase("cleanup: remove scratch", path=str(self._workdir)):
                shutil.rmtree(self._workdir, ignore_errors=True)
        if not self._workdir.exists():
            self._record.release()

    # -- phases ---------------------------------------------------------------

    def _choose(self) -> tuple[BackupObject, datetime]:
        """The newest backup; for a target, the newest that *ended* by it (its ``.backup`` file's STOP
        TIME, read before extracting; the key's time when the archive has no such file)."""
        backups = list_base_backups(self.spec)
        if self.target is not None:
            backups = [(b, t) for b, t in backups if t <= self.target
                       and (_ended(self.spec.path / b.key, self.wal_dir) or t) <= self.target]
        if not backups:
            when = f" that ended at or before {self.target.isoformat()}" if self.target else ""
            raise NoBackupFound(f"no base backup{when} in {self.spec.path} (store `{self.spec.name}`)",
                                store=self.spec.name)
        return backups[-1]

    def _extract(self, entry: Path, datadir: Path) -> int:
        tar = _tar_of(entry)
        if tar is None:
            return copy_plain(entry, datadir)
        if entry.is_dir():
            extra = sorted(p.name for p in entry.iterdir() if p.name.endswith((".tar", ".tar.gz"))
                           and not p.name.startswith(("base.", "pg_wal.")))
            if extra:
                raise RestoreFailed(f"{entry.name}: tablespace archives are not supported yet: {extra}",
                                    key=entry.name)
        count = extract_tar(tar, datadir)
        for name in ("pg_wal.tar.gz", "pg_wal.tar"):
            if tar.parent == entry and (entry / name).is_file():
                (datadir / "pg_wal").mkdir(exist_ok=True)
                count += extract_tar(entry / name, datadir / "pg_wal")
        (datadir / "pg_wal" / "archive_status").mkdir(parents=True, exist_ok=True)
        version = (datadir / "PG_VERSION").read_text(encoding="utf-8", errors="replace").strip() \
            if (datadir / "PG_VERSION").is_file() else "?"
        ours = postgres_version(self.bindir).split(".")[0]
        if version != ours:
            raise RestoreFailed(f"{entry.name} is a PostgreSQL {version} backup; the server binaries in "
                                f"{self.bindir} are {ours}", key=entry.name,
                                hint="set DRILLBOOK_PG_BINDIR to that major's bin directory")
        return count

    def _quarantine(self, datadir: Path) -> dict[str, Any]:
        """Move the backup's own settings and signals out of the server's reach (A5)."""
        notes: dict[str, Any] = {}
        auto = datadir / "postgresql.auto.conf"
        if auto.exists() and not auto.is_symlink():
            content = auto.read_bytes()
            notes["auto_conf_sha256"] = hashlib.sha256(content).hexdigest()
            # Names only: a value may be a password (primary_conninfo).
            notes["auto_conf_settings"] = sorted({
                line.split("=")[0].strip() for line in content.decode("utf-8", "replace").splitlines()
                if "=" in line and not line.lstrip().startswith("#")})
            auto.rename(self._workdir / "quarantined-postgresql.auto.conf")
        auto.unlink(missing_ok=True)
        auto.write_text("# emptied by drillbook: the backup's copy was quarantined\n", encoding="utf-8")
        for name in ("standby.signal", "recovery.signal", "postmaster.pid"):
            if (datadir / name).exists():
                notes.setdefault("removed", []).append(name)
                (datadir / name).unlink()
        (datadir / "recovery.signal").write_text("", encoding="utf-8")
        _chown_tree(datadir)
        return notes

    def _copy_wal(self, first: str, notes: dict[str, Any]) -> tuple[str, str | None]:
        """Copy the archive's segments from ``first`` on into scratch; the newest and first missing."""
        wal_copy = self._workdir / "wal"
        wal_copy.mkdir(mode=0o700)
        try:
            names = sorted(p.name for p in self.wal_dir.iterdir() if p.is_file() and not p.is_symlink())
        except OSError as exc:
            raise RestoreFailed(f"cannot list the WAL archive {self.wal_dir}: {exc.strerror or exc}",
                                store=self.spec.name) from exc
        segments = [n for n in names if SEGMENT.fullmatch(n) and n[:8] == first[:8] and n >= first]
        if not segments:
            raise RestoreFailed(f"the WAL archive {self.wal_dir} holds no segment from {first} on "
                                f"(the base backup's start)", segment=first, store=self.spec.name)
        copied = 0
        for name in names:
            if (name in segments) or HISTORY.fullmatch(name):
                shutil.copyfile(self.wal_dir / name, wal_copy / name)
                copied += (self.wal_dir / name).stat().st_size
        last = segments[-1]
        missing = first_missing(segments, first, last, (self.wal_dir / last).stat().st_size)
        _chown_tree(wal_copy)
        notes.update(segments=len(segments), bytes=copied, first=first, last=last, first_missing=missing)
        return last, missing

    def _settings(self, first: str, last: str) -> dict[str, str]:
        """Every setting A5 forces, and drillbook's own config, hba, ident and restore_command."""
        conf = self._workdir / "conf"
        conf.mkdir(mode=0o700)
        (conf / "postgresql.conf").write_text("# drillbook's own: the backup's config is never read\n",
                                              encoding="utf-8")
        (conf / "pg_hba.conf").write_text("local all postgres trust\nhost all postgres 127.0.0.1/32 trust\n",
                                          encoding="utf-8")
        (conf / "pg_ident.conf").write_text("", encoding="utf-8")
        script = conf / "restore_wal.sh"
        script.write_text(restore_script(self._workdir / "wal", first, last), encoding="utf-8")
        script.chmod(0o700)
        _chown_tree(conf)
        settings = {
            "config_file": str(conf / "postgresql.conf"), "hba_file": str(conf / "pg_hba.conf"),
            "ident_file": str(conf / "pg_ident.conf"),
            "archive_mode": "off", "archive_command": "", "archive_library": "",
            "shared_preload_libraries": "", "session_preload_libraries": "", "local_preload_libraries": "",
            "restore_command": f"{script} %f %p", "recovery_end_command": "", "archive_cleanup_command": "",
            "primary_conninfo": "", "primary_slot_name": "", "recovery_target_timeline": "current",
            "external_pid_file": "", "logging_collector": "off", "ssl": "off", "log_timezone": "UTC",
            "dynamic_library_path": "$libdir", "jit": "off", "hot_standby": "on",
        }
        if self.target is not None:
            settings.update(recovery_target_time=self.target.isoformat(), recovery_target_action="pause",
                            recovery_target_inclusive="on")
        return settings

    def _recover(self, datadir: Path, first: str, last: str, remaining_s: float) -> dict[str, Any]:
        """Start the server and wait for its state: paused at the target, promoted, or gone."""
        sockdir = self._workdir / "sock"
        sockdir.mkdir(mode=0o700)
        hand_to_server_user(sockdir)
        self.server = PostgresServer("recovered", datadir, bindir=self.bindir, sockdir=sockdir,
                                     log_path=self._workdir / "server.log",
                                     settings=self._settings(first, last))
        self.server.start(wait=False)
        if self.server.pid is not None:  # a killed run's postmaster is stopped by the next run's reaper
            self._record.add_server(self.server.label, self.server.pid, anchor=self._workdir)
        budget = remaining_s
        ends = time.monotonic() + budget
        while time.monotonic() < ends:
            gone = self.server.exit_reason()
            if gone is not None:
                raise self._failure(gone)
            state = self._state()
            if state is not None:
                in_recovery, pause, replayed = state
                if (self.target is not None and pause == "paused") or not in_recovery:
                    return {"state": "paused at target" if in_recovery else "promoted",
                            "replayed_to": replayed.isoformat() if replayed else None}
            time.sleep(_POLL_S)
        raise RestoreTimedOut(f"recovery of `{self.spec.name}` did not finish within {budget:.0f} s",
                              store=self.spec.name)

    def _state(self) -> tuple[bool, str | None, datetime | None] | None:
        assert self.server is not None
        try:
            with psycopg.connect(self.server.dsn(), connect_timeout=2, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN "
                    "pg_get_wal_replay_pause_state() END, pg_last_xact_replay_timestamp()").fetchone()
        except psycopg.Error:
            return None
        return (bool(row[0]), row[1], row[2]) if row else None

    def _failure(self, gone: str) -> DrillbookError:
        """Name why recovery stopped from the server's log (A4's messages)."""
        log = (self._workdir / "server.log").read_text(encoding="utf-8", errors="replace")
        tail = redact("\n".join(log.splitlines()[-8:]))  # the log goes with scratch: keep its end
        if found := _COULD_NOT_RESTORE.search(log):
            segment = found.group(1) or found.group(2)
            return RestoreFailed(f"WAL segment {segment} is missing from the archive "
                                 f"{self.wal_dir}: recovery cannot pass it", segment=segment, log_tail=tail,
                                 hint="the archive has a gap: base backups taken after it still recover")
        if _NOT_REACHED in log:
            return RestoreFailed(f"target {self.target.isoformat() if self.target else '?'} is beyond the "
                                 f"WAL archive {self.wal_dir}: recovery ended before reaching it",
                                 target=self.target.isoformat() if self.target else None, log_tail=tail)
        return RestoreFailed(f"the recovered server stopped: {redact(gone)}", log_tail=tail)
