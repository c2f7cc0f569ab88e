"""Reaping what a killed run left behind: its servers and temp dirs, and nothing else.

A run that ends normally (or on Ctrl-C / SIGTERM) cleans up in ``finally``; ``kill -9`` gives it
no chance, and its PostgreSQL clusters, redis-server, Prometheus and temp dirs would stay forever.
So every temp dir and server drillbook starts is written down first, in a *record*: one small
JSON file in ``$XDG_CACHE_HOME/drillbook/running/`` (written atomically) naming

- its **owner**, the drillbook process (pid + start time),
- the **temp dir** (path, device and inode), when the record has one,
- each **server** started in it (pid, start time, process name, the directory it serves).

A clean close removes the record. :func:`reap_stale` (called when ``drillbook run`` and
``drillbook sandbox up`` start, and by ``drillbook sandbox down --stale``) stops and removes what
the stale records name. Each rule guards against hurting something that is not a leftover:

- a record is stale only when its owner is gone: no live process has its pid *and* start time
  (a run still going, or a pid reused by anything else, keeps it);
- a server is stopped only when the live process with the recorded pid has the recorded start
  time (a reused pid is someone else's), the recorded name, and names the recorded directory in
  its command line or working directory (never another PostgreSQL);
- a temp dir is removed only when it is the recorded directory (same device and inode, not a
  symlink) and its name starts with one of drillbook's prefixes;
- a record made in another pid namespace (a container sharing the cache) is skipped: its pids
  mean nothing here.

Errors: none raised to the caller; a record that cannot be written is logged as a warning (the
drill still runs, only unprotected against ``kill -9``), and what could not be reaped is reported.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

Progress = Callable[[str], None]

# Every temp dir drillbook records; a recorded path with any other name is never removed.
PREFIXES = ("drillbook-local-", "drillbook-scratch-", "drillbook-restore-", "drillbook-pgpass-",
            "drillbook-fleet-")
# 2: processes identified by start ticks + boot id (1 used wall-clock start times).
RECORD_VERSION = 2
# A postmaster's fast shutdown of a sandbox cluster takes well under a second; then SIGKILL.
STOP_GRACE_S = 10.0
_POLL_S = 0.05

_log = logging.getLogger(__name__)


def _quiet(_: str) -> None:
    """The default progress callback: say nothing."""


def _namespace() -> str:
    """This process's pid namespace (``pid:[4026531836]``), or "" where /proc does not tell."""
    try:
        return str(Path("/proc/self/ns/pid").readlink())
    except OSError:
        return ""


def default_registry_dir() -> Path:
    """``$XDG_CACHE_HOME/drillbook/running`` (beside the sandbox cache, so it outlives TMPDIR)."""
    # Imported here: drills.sandbox imports modules that record their temp dirs through this one.
    from .sandbox.history import default_cache_dir

    return default_cache_dir() / "running"


@dataclass(frozen=True)
class ProcessId:
    """A process identified by pid *and* start, so a reused pid is never mistaken for it.

    The start is the kernel's count of clock ticks from boot to the process's creation, with the
    boot's id: unlike a wall-clock start time (psutil's ``create_time``, boot time + ticks, with
    the boot time re-read from the clock each call) it never moves when the clock is stepped. A
    wall-clock identity mismatched a live owner after an NTP step on a CI machine and let another
    run reap its servers mid-test.
    """

    pid: int
    start: int
    boot: str

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        """The identity of the live process ``pid``, or None when there is none."""
        start = _start_ticks(pid)
        return None if start is None else cls(pid, start, _boot_id())

    def live(self) -> psutil.Process | None:
        """The live (non-zombie) process with this pid and start, or None."""
        if self.boot != _boot_id() or _start_ticks(self.pid) != self.start:
            return None
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            return None
        # The pid could have been reused between the two reads: confirm the start once more.
        return process if _start_ticks(self.pid) == self.start else None


def _start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (start, in ticks since boot), or None when there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return _wall_start_fallback(pid)
    # The command name (field 2) is in parentheses and may hold spaces or ")": split after the last.
    fields = raw[raw.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _wall_start_fallback(pid: int) -> int | None:
    """Where /proc is absent (macOS), psutil's start time in centiseconds; None when gone."""
    if Path("/proc/self/stat").exists():
        return None  # /proc works and this pid has no entry: the process is gone
    try:
        started: float = psutil.Process(pid).create_time()
        return round(started * 100)
    except psutil.Error:
        return None


def _boot_id() -> str:
    """This boot's id (a record from before a reboot names processes that no longer exist)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class ServerEntry:
    """One recorded server: who it is and the directory it must name to still be ours."""

    label: str
    process: ProcessId
    name: str
    anchor: str


@dataclass(frozen=True)
class DirEntry:
    """One recorded temp dir; device and inode tell it from a later directory of the same name."""

    path: str
    dev: int
    ino: int


class Record:
    """One record file: an owner, at most one temp dir, and the servers started for it.

    Thread-safe: the local environment starts servers from worker threads.
    """

    def __init__(self, file: Path, owner: ProcessId, tempdir: DirEntry | None, *,
                 namespace: str, servers: list[ServerEntry] | None = None) -> None:
        self.file = file
        self.owner = owner
        self.tempdir = tempdir
        self.namespace = namespace
        self.servers = list(servers or [])
        self._lock = threading.Lock()

    def add_server(self, label: str, pid: int, *, anchor: Path) -> None:
        """Record a server just started (before anything could kill its owner unrecorded)."""
        identity = ProcessId.of(pid)
        if identity is None:
            return  # already gone: nothing to reap
        try:
            name = psutil.Process(pid).name()
        except psutil.Error:
            return
        with self._lock:
            if any(server.process == identity for server in self.servers):
                return  # recorded already (a scratch cluster is recorded as soon as it is launched)
            self.servers.append(ServerEntry(label, identity, name, str(anchor)))
            self.write()

    def write(self) -> None:
        """Write the record atomically (temp file + rename); a failure is a warning, not a stop."""
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            staging = self.file.with_name(f".{self.file.name}.{uuid.uuid4().hex[:8]}")
            staging.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
            staging.replace(self.file)
        except OSError as exc:
            _log.warning("could not record %s in %s (a kill -9 would leave it unreaped): %s",
                         self.tempdir.path if self.tempdir else "servers", self.file, exc)

    def release(self) -> None:
        """Forget the record: its owner cleaned up itself."""
        try:
            self.file.unlink(missing_ok=True)
        except OSError as exc:
            _log.warning("could not remove the run record %s: %s", self.file, exc)

    def to_json(self) -> dict[str, Any]:
        return {"version": RECORD_VERSION, "namespace": self.namespace, "owner": asdict(self.owner),
                "tempdir": asdict(self.tempdir) if self.tempdir else None,
                "servers": [asdict(server) for server in self.servers]}

    @classmethod
    def from_json(cls, file: Path, data: dict[str, Any]) -> Record:
        """Parse a record; raises KeyError/TypeError/ValueError on anything malformed."""
        if data["version"] != RECORD_VERSION:
            raise ValueError(f"record version {data['version']!r}, expected {RECORD_VERSION} "
                             "(written by another drillbook: stop what it names, then delete it)")
        tempdir = DirEntry(**data["tempdir"]) if data["tempdir"] is not None else None
        servers = [ServerEntry(str(s["label"]), ProcessId(**s["process"]), str(s["name"]),
                               str(s["anchor"])) for s in data["servers"]]
        return cls(file, ProcessId(**data["owner"]), tempdir, namespace=str(data["namespace"]),
                   servers=servers)


class Registry:
    """The directory of records."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else default_registry_dir()

    def track(self, tempdir: Path | None) -> Record:
        """A new record owned by this process, for ``tempdir`` (or for servers only)."""
        owner = ProcessId.of(os.getpid())
        if owner is None:  # pragma: no cover - this process always exists
            raise RuntimeError("psutil cannot see this process")
        entry = None
        if tempdir is not None:
            info = tempdir.stat()
            entry = DirEntry(str(tempdir), info.st_dev, info.st_ino)
        record = Record(self.root / f"{owner.pid}-{uuid.uuid4().hex[:12]}.json", owner, entry,
                        namespace=_namespace())
        record.write()
        return record

    def make_tempdir(self, prefix: str, parent: Path | None = None) -> tuple[Path, Record]:
        """``tempfile.mkdtemp(prefix=prefix, dir=parent)``, recorded at once."""
        if not prefix.startswith(PREFIXES):
            raise ValueError(f"temp dir prefix {prefix!r} is not one of drillbook's {PREFIXES}")
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        return path, self.track(path)

    def reap(self, progress: Progress = _quiet) -> list[str]:
        """Stop and remove what stale records name; return (and say) what was done, one line each."""
        done: list[str] = []
        try:
            files = sorted(self.root.glob("*.json"))
        except OSError:
            return done
        here = _namespace()
        for file in files:
            try:
                record = Record.from_json(file, json.loads(file.read_text(encoding="utf-8")))
            except FileNotFoundError:
                continue  # its owner closed (or another run reaped it) meanwhile
            except (OSError, ValueError, KeyError, TypeError) as exc:
                done.append(f"skipped unreadable run record {file}: {exc}")
                progress(done[-1])
                continue
            if record.namespace != here or record.owner.live() is not None:
                continue
            lines, complete = _reap_record(record)
            for line in lines:
                done.append(line)
                progress(line)
            if complete:
                record.release()
        return done


def _reap_record(record: Record) -> tuple[list[str], bool]:
    """Reap one stale record; ``complete`` is False when something should be retried later."""
    lines: list[str] = []
    complete = True
    whose = f"left by drillbook pid {record.owner.pid}"
    for server in record.servers:
        process = _still_ours(server)
        if process is None:
            continue
        try:
            how = _stop(process, server)
        except psutil.Error as exc:
            lines.append(f"could not stop {server.label} (pid {server.process.pid}) {whose}: {exc}")
            complete = False
            continue
        lines.append(f"reaped {server.label} (pid {server.process.pid}, {how}) {whose}")
    if record.tempdir is not None:
        verdict = _removable(record.tempdir)
        if verdict == "remove":
            shutil.rmtree(record.tempdir.path, ignore_errors=True)
            if os.path.lexists(record.tempdir.path):
                lines.append(f"could not remove temp dir {record.tempdir.path} {whose}")
                complete = False
            else:
                lines.append(f"removed temp dir {record.tempdir.path} {whose}")
        elif verdict:
            lines.append(f"left {record.tempdir.path} alone: {verdict}")
    return lines, complete


def _still_ours(server: ServerEntry) -> psutil.Process | None:
    """The live process the entry names, only if it is still that server (see module rules)."""
    process = server.process.live()
    if process is None:
        return None  # gone, or the pid now belongs to a process started later
    try:
        if process.name() != server.name:
            return None
        if server.anchor in " ".join(process.cmdline()):
            return process
        cwd = process.cwd()
    except psutil.Error:
        return None
    anchor = os.path.realpath(server.anchor)
    return process if cwd == anchor or cwd.startswith(anchor + os.sep) else None


def _stop(process: psutil.Process, server: ServerEntry) -> str:
    """Stop a server its own way (a postmaster's fast shutdown is SIGINT), then SIGKILL its group."""
    process.send_signal(signal.SIGINT if server.name == "postgres" else signal.SIGTERM)
    if _gone_within(server.process, STOP_GRACE_S):
        return "stopped"
    # mirakuru started each server as the leader of a process group of its own: kill it whole
    # (a postmaster's backends too), but a group led by anything else is left to the pid alone.
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except ProcessLookupError:
        return "stopped"
    _gone_within(server.process, STOP_GRACE_S)
    return "killed"


def _gone_within(identity: ProcessId, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while identity.live() is not None:
        if time.monotonic() >= end:
            return False
        time.sleep(_POLL_S)
    return True


def _removable(entry: DirEntry) -> str:
    """"remove", "" when already gone, or why the path is not the recorded temp dir."""
    path = Path(entry.path)
    if not path.name.startswith(PREFIXES):
        return f"its name does not start with one of drillbook's prefixes {PREFIXES}"
    try:
        info = path.lstat()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"cannot inspect it: {exc}"
    if not stat.S_ISDIR(info.st_mode):
        return "it is no longer a directory"
    if (info.st_dev, info.st_ino) != (entry.dev, entry.ino):
        return "it is not the directory drillbook created (another one now has its name)"
    return "remove"


def make_tempdir(prefix: str, parent: Path | None = None) -> tuple[Path, Record]:
    """A recorded temp dir (in ``parent``, default the system's) in the default registry.

    Release the record after removing the dir.
    """
    return Registry().make_tempdir(prefix, parent)


def track(tempdir: Path | None) -> Record:
    """A record in the default registry for ``tempdir`` (None: for servers only)."""
    return Registry().track(tempdir)


def reap_stale(progress: Progress = _quiet) -> list[str]:
    """Reap what killed runs left, as recorded in the default registry (see the module rules)."""
    return Registry().reap(progress)
