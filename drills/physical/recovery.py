"""Restore a physical backup into a scratch server and recover it: the generic driver.

The design study (docs/design/physical-backups.md, A4/A5/B3) is followed phase by phase, each
journaled: **discover** (the source picks the newest backup, or the newest that ended by a target
time), **restore** (the source's own tool writes a private scratch data directory; another major
than our binaries is refused), **quarantine** (the backup's ``postgresql.auto.conf`` moved aside,
its SHA-256 kept; ``standby.signal`` removed; ``recovery.signal`` written), **copy WAL** (the
source copies or downloads the segments into scratch, in drillbook's own process), **recover**
(the server started as drillbook decides: every setting of A5 forced with ``-c``, its own
config/hba/ident files, a generated ``restore_command`` that only copies from that scratch copy
and exits 126 on a segment missing inside the range, so a gap aborts recovery naming it instead
of promoting silently), **first query** (RTO ends), and **cleanup** in ``finally`` (server
stopped, scratch removed).

Readiness is the server's state, never ``pg_ctl -w``'s (A4): paused at the target, or out of
recovery (promoted at the end of the archive), or the postmaster gone (its log says why).
One module per tool implements :class:`~drills.physical.source.Source`; :data:`SOURCES` maps a
store kind to it.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from checks.backups import BackupObject
from checks.errors import DrillbookError, RestoreFailed, RestoreTimedOut
from checks.pitr import SEGMENT
from checks.redact import redact
from drills import deadlines, pgtools
from drills.deadlines import Limit
from drills.processes import PostgresServer, hand_to_server_user, postgres_version
from drills.reaper import make_tempdir
from drills.restore import RestoreResult, _PhaseContext
from drills.targets import Journal, PostgresTarget, Role, StoreSpec

from . import catalog_guard
from .controldata import standby_settings
from .source import Chosen, Source, chown_tree

# Store kind → "module:class" of its source (imported on use: a tool's module loads only when needed).
SOURCES: dict[str, str] = {
    "basebackup": "drills.physical.basebackup:BaseBackupSource",
    "barman-cloud": "drills.physical.barman_cloud:BarmanCloudSource",
    "pgbackrest": "drills.physical.pgbackrest:PgBackRestSource",
}
_POLL_S = 0.1
# What the server's log says when recovery cannot go on (A4).
_NOT_REACHED = "recovery ended before configured recovery target was reached"
_INSUFFICIENT = re.compile(r"DETAIL:  ([a-z_]+) = \d+ is a lower setting than on the primary server, "
                           r"where its value was (\d+)")
_COULD_NOT_RESTORE = re.compile(r'could not restore file "([0-9A-F]{24})" from archive'
                                r'|drillbook: WAL segment ([0-9A-F]{24}) is missing')


def is_physical(kind: str) -> bool:
    """Whether a store kind is restored by this driver (vs. a logical dump)."""
    return kind in SOURCES


def source_for(spec: StoreSpec) -> Source:
    """The source for a store, by its kind."""
    try:
        module, _, name = SOURCES[spec.kind].partition(":")
    except KeyError:
        raise RestoreFailed(f"store `{spec.name}` is of kind {spec.kind!r}, not a physical backup store",
                            store=spec.name) from None
    factory = getattr(importlib.import_module(module), name)
    source: Source = factory(spec)
    return source


@dataclass
class PhysicalResult(RestoreResult):
    """A recovered scratch cluster: what was restored, forced and measured."""

    recovery: dict[str, Any] = field(default_factory=dict)
    source_format: str = "pg_basebackup"

    @property
    def rto_s(self) -> float:
        """Restore + recovery + first successful query."""
        return sum(self.timings.get(k, 0.0) for k in ("restore", "recovery", "first_query"))

    def evidence(self) -> dict[str, Any]:
        return {**super().evidence(), "format": self.source_format, "recovery": self.recovery}


def read_label(datadir: Path) -> dict[str, str]:
    """``backup_label`` as a mapping (START WAL LOCATION, START TIME, …); empty when there is none."""
    try:
        text = (datadir / "backup_label").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


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
    """Restore the newest physical backup of a store (or the newest that ended by ``target``) and recover it.

    Use as a context manager: the server is stopped and scratch removed on exit, whatever happened.
    """

    def __init__(self, spec: StoreSpec, *, target: datetime | None = None, limit: Limit | None = None,
                 bindir: Path | None = None, database: str | None = None,
                 source: Source | None = None) -> None:
        self.spec = spec
        self.source = source or source_for(spec)
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
        # Steps read the recovered cluster as this role, never as its superuser (catalog_guard).
        self.reader = catalog_guard.reader_name()

    def __enter__(self) -> PhysicalRestore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def workdir(self) -> Path:
        """This drill's private scratch directory (sources keep their tool's lock/log files here)."""
        return self._workdir

    def _phase(self, name: str, **evidence: Any) -> _PhaseContext:
        return _PhaseContext(self.journal, name, evidence)

    def run(self) -> PhysicalResult:
        """Every phase up to the first query. Raises DrillbookError subclasses."""
        t0 = time.perf_counter()
        deadline = self.limit.start()
        with self._phase("discover", store=self.spec.url, wal=self.source.archive) as notes:
            chosen = self.source.choose(self.target)
            notes.update(key=chosen.key, backup_time=chosen.taken.isoformat(), **chosen.details)
        modified = datetime.fromisoformat(chosen.details["last_modified"]) \
            if "last_modified" in chosen.details else chosen.taken
        result = PhysicalResult(store=self.spec.name, journal=self.journal, backup_time=chosen.taken,
                                backup=BackupObject(key=chosen.key, size=chosen.size, last_modified=modified),
                                source_format=self.source.format)
        self.result = result
        result.timings["discover"] = time.perf_counter() - t0
        if chosen.major is not None:  # refused before restoring anything
            self._check_major(chosen.key, chosen.major)
        datadir = self._workdir / "data"

        t = time.perf_counter()
        with self._phase("restore", key=chosen.key) as notes:
            datadir.mkdir(mode=0o700)
            notes.update(self.source.materialize(chosen, datadir, deadline))
            version = (datadir / "PG_VERSION").read_text(encoding="utf-8", errors="replace").strip() \
                if (datadir / "PG_VERSION").is_file() else "?"
            self._check_major(chosen.key, version)
            chown_tree(datadir)
            datadir.chmod(0o700)
        result.timings["restore"] = time.perf_counter() - t
        if deadline.expired():
            raise RestoreTimedOut(f"restoring {chosen.key} took past the limit ({self.limit.describe()})",
                                  store=self.spec.name)

        with self._phase("quarantine") as notes:
            notes.update(self._quarantine(datadir))
            result.recovery["quarantined"] = dict(notes)
        first = self._start_segment(chosen, datadir)
        stop = chosen.end
        result.recovery.update(start_segment=first, backup_end=stop.isoformat() if stop else None)
        if self.target is not None and stop is not None and stop > self.target:
            raise RestoreFailed(
                f"target {self.target.isoformat()} is before the end of backup {chosen.key} "
                f"({stop.isoformat()}): no backup in `{self.spec.name}` can recover to it",
                hint="pick a target after the oldest backup's end", target=self.target.isoformat())

        with self._phase("copy WAL", archive=self.source.archive) as notes:
            wal_copy = self._workdir / "wal"
            wal_copy.mkdir(mode=0o700)
            copied = self.source.fetch_wal(first, wal_copy)
            chown_tree(wal_copy)
            notes.update(segments=copied.count, bytes=copied.bytes, first=first, last=copied.last,
                         first_missing=copied.first_missing)
        last = copied.last
        result.recovery.update(last_segment=last, first_missing_segment=copied.first_missing)

        t = time.perf_counter()
        with self._phase("recover", target=self.target.isoformat() if self.target else "end of archive",
                         deadline=self.limit.describe()) as notes:
            state = self._recover(datadir, first, last, deadline.remaining())
            notes.update(state)
            result.recovery.update(state)
        result.timings["recovery"] = time.perf_counter() - t

        assert self.server is not None
        t = time.perf_counter()
        with self._phase("first query") as notes, catalog_guard.connect(self.server.dsn(), connect_timeout=10,
                                                                       autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_catalog.pg_class").fetchone()
            notes["relations"] = row[0] if row else 0
            names = [r[0] for r in conn.execute(
                "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate "
                "AND datname <> 'postgres' ORDER BY datname").fetchall()]
        result.timings["first_query"] = time.perf_counter() - t
        with self._phase("defuse catalog") as notes:
            notes.update(catalog_guard.defuse(self.server.dsn, ["postgres", *names], reader=self.reader))
            result.recovery["defused"] = dict(notes)
        database = self.database or (names[0] if len(names) == 1 else "postgres")
        if database != "postgres" and database not in names:
            raise RestoreFailed(f"the recovered cluster has no database {database!r} (it has: "
                                f"{', '.join(names) or 'only postgres'})", database=database)
        result.recovery["database"] = database
        result.recovery["reader"] = self.reader
        result.target = PostgresTarget(name=f"{self.spec.name}-recovered",
                                       dsn=f"postgresql://{self.reader}@127.0.0.1:{self.server.port}/{database}",
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

    def _check_major(self, key: str, version: str) -> None:
        ours = postgres_version(self.bindir).split(".")[0]
        if version != ours:
            raise RestoreFailed(f"{key} is a PostgreSQL {version} backup; the server binaries in "
                                f"{self.bindir} are {ours}", key=key,
                                hint="set DRILLBOOK_PG_BINDIR to that major's bin directory")

    def _start_segment(self, chosen: Chosen, datadir: Path) -> str:
        """The first WAL segment recovery needs: ``backup_label``'s, else what the source said."""
        label = read_label(datadir)
        start = re.search(r"\(file ([0-9A-F]{24})\)", label.get("START WAL LOCATION", ""))
        first = start.group(1) if start else chosen.start_segment
        if first is None or not SEGMENT.fullmatch(first):
            what = "names no start WAL segment" if label else "holds no backup_label"
            raise RestoreFailed(f"{chosen.key}: the restored backup {what}", key=chosen.key,
                                hint="point the store at the tool's own output")
        return first

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
        chown_tree(datadir)
        return notes

    def _settings(self, first: str, last: str) -> dict[str, str]:
        """Every setting A5 forces, and drillbook's own config, hba, ident and restore_command."""
        conf = self._workdir / "conf"
        conf.mkdir(mode=0o700)
        (conf / "postgresql.conf").write_text("# drillbook's own: the backup's config is never read\n",
                                              encoding="utf-8")
        (conf / "pg_hba.conf").write_text(
            "".join(f"local all {role} trust\nhost all {role} 127.0.0.1/32 trust\n"
                    for role in ("postgres", self.reader)), encoding="utf-8")
        (conf / "pg_ident.conf").write_text("", encoding="utf-8")
        script = conf / "restore_wal.sh"
        script.write_text(restore_script(self._workdir / "wal", first, last), encoding="utf-8")
        script.chmod(0o700)
        chown_tree(conf)
        # The script runs through /bin/sh: scratch may be a noexec tmpfs (a container's /tmp).
        settings = {
            "config_file": str(conf / "postgresql.conf"), "hba_file": str(conf / "pg_hba.conf"),
            "ident_file": str(conf / "pg_ident.conf"),
            "archive_mode": "off", "archive_command": "", "archive_library": "",
            "shared_preload_libraries": "", "session_preload_libraries": "", "local_preload_libraries": "",
            "restore_command": f"/bin/sh {script} %f %p", "recovery_end_command": "",
            "archive_cleanup_command": "",
            "primary_conninfo": "", "primary_slot_name": "", "recovery_target_timeline": "current",
            "external_pid_file": "", "logging_collector": "off", "ssl": "off", "log_timezone": "UTC",
            "dynamic_library_path": "$libdir", "jit": "off", "hot_standby": "on",
            # Read-ahead (PG 15's prefetcher decodes up to wal_decode_buffer_size ahead of replay)
            # asks for the next segment before replay reaches the target: a gap AFTER the target
            # then hit the exit-126 rule and failed a recovery that needs nothing past the target.
            "recovery_prefetch": "off",
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
        # A hot standby needs the primary's max_connections & co. (pg_control has them); never
        # the backup's other settings.
        standby = standby_settings(datadir, self.bindir)
        self.server = PostgresServer("recovered", datadir, bindir=self.bindir, sockdir=sockdir,
                                     log_path=self._workdir / "server.log",
                                     settings={**standby, **self._settings(first, last)}, clean_env=True)
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
            with catalog_guard.connect(self.server.dsn(), connect_timeout=2, autocommit=True) as conn:
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
            # A source may say where the segment belongs (an S3 key): what the operator looks for.
            locate = getattr(self.source, "segment_location", None)
            location = locate(segment) if locate else None
            at = f" (expected at {redact(location)})" if location else ""
            return RestoreFailed(f"WAL segment {segment} is missing from the archive "
                                 f"{self.source.archive}{at}: recovery cannot pass it", segment=segment,
                                 log_tail=tail,
                                 hint="the archive has a gap: base backups taken after it still recover")
        if found := _INSUFFICIENT.search(log):
            return RestoreFailed(f"recovery needs {found.group(1)} = {found.group(2)} or more: the primary "
                                 "raised it after this base backup was taken", setting=found.group(1),
                                 log_tail=tail,
                                 hint="a base backup taken after the change recovers; drillbook starts the "
                                      "server with the base backup's values")
        if _NOT_REACHED in log:
            return RestoreFailed(f"target {self.target.isoformat() if self.target else '?'} is beyond the "
                                 f"WAL archive {self.source.archive}: recovery ended before reaching it",
                                 target=self.target.isoformat() if self.target else None, log_tail=tail)
        return RestoreFailed(f"the recovered server stopped: {redact(gone)}", log_tail=tail,
                             hint="the end of the server's log is in the evidence (log_tail)")
