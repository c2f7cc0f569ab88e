"""Real servers on loopback: PostgreSQL, Redis and an in-process S3 (moto).

Every server is started by ``mirakuru`` (which owns the process group and
kills leftovers), listens on 127.0.0.1 on a port chosen by ``port_for``, and
is ready only when a real request answers (``SELECT 1``, ``PING``, an HTTP
GET) before a deadline. A server that never comes up raises
:class:`~checks.errors.ServerStartError` naming the server, its port and the
last lines of its log, and leaves nothing running.

``initdb`` and ``postgres`` refuse to run as root, so when drillbook runs as
root the PostgreSQL processes run as the ``postgres`` OS user and their data
and socket directories are handed to it (see FIELD-NOTES.md).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import port_for
import psycopg
import redis
from mirakuru import SimpleExecutor
from mirakuru.base import ENV_UUID
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from redis.backoff import NoBackoff
from redis.retry import Retry

from checks.errors import ServerStartError
from checks.files import disk_error

from . import pgtools

DEFAULT_TIMEOUT_S = 30.0
# How often a readiness loop retries; short, because a local server is usually up in < 1 s.
_POLL_INTERVAL_S = 0.02
_LOG_TAIL_LINES = 15
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107  # bytes of a Unix socket path (sun_path) on Linux
SERVER_USER = "postgres"
WAL_SEGMENT_MB = 1

# The S3 sandbox accepts any credentials; these fixed fake ones are not secrets.
S3_ACCESS_KEY_ID = "testing"
S3_SECRET_ACCESS_KEY = "testing"  # noqa: S105 - moto's documented fake credential
S3_REGION = "us-east-1"


def running_as_root() -> bool:
    """True when server processes must be handed to the ``postgres`` OS user."""
    return os.geteuid() == 0


def server_user_kwargs() -> dict[str, Any]:
    """``Popen`` keyword arguments that drop root to the ``postgres`` user, or nothing."""
    if running_as_root():
        return {"user": SERVER_USER, "group": SERVER_USER}
    return {}


def hand_to_server_user(path: Path, *, mode: int = 0o700) -> None:
    """Make ``path`` (a directory the server writes to) owned by the server user."""
    path.chmod(mode)
    if running_as_root():
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def require_reachable_by_server_user(path: Path) -> None:
    """Raise unless the server user can traverse every directory above ``path``.

    As root, a data dir under a 0700 root-owned directory (``/root``, pytest's
    ``/tmp/pytest-of-root``) would make postgres fail with a bare "Permission denied".
    """
    if not running_as_root():
        return
    entry = pwd.getpwnam(SERVER_USER)
    groups = set(os.getgrouplist(SERVER_USER, entry.pw_gid))
    for parent in path.resolve().parents:
        info = parent.stat()
        if info.st_uid == entry.pw_uid:
            allowed = bool(info.st_mode & stat.S_IXUSR)
        elif info.st_gid in groups:
            allowed = bool(info.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(info.st_mode & stat.S_IXOTH)
        if not allowed:
            raise ServerStartError(
                f"the `{SERVER_USER}` OS user cannot reach {path}: {parent} is not traversable for it",
                server="postgres",
                hint=f"put server directories under one the `{SERVER_USER}` user can traverse (e.g. a "
                "fresh tempfile.mkdtemp() with mode 0711), or `chmod o+x` the named directory",
            )


# cp's messages for the errnos that mean the target cannot take the copy (C locale, forced below).
_CP_DISK_FAULTS = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
                   "Read-only file system": errno.EROFS, "Permission denied": errno.EACCES}


def copy_tree(source: Path, target: Path, *, phase: str = "copying a data directory",
              what: str = "TMPDIR") -> None:
    """Copy a directory keeping owners and modes (``cp -a``: a data dir must stay postgres-owned).

    A target that cannot take it (full, read-only, not writable) is a :class:`DiskError` naming
    ``target`` and ``phase`` (``what`` names the setting that chooses the place, for the hint);
    the partial copy is removed.
    """
    # `cp -a` preserves ownership when run as root, which shutil.copytree does not,
    # and it is faster on a PostgreSQL data dir's many small files.
    result = subprocess.run(["cp", "-a", str(source), str(target)], capture_output=True, text=True,
                            check=False, env={**os.environ, "LC_ALL": "C"})
    if result.returncode == 0:
        return
    shutil.rmtree(target, ignore_errors=True)  # a half copy is no data dir: never leave one
    message = result.stderr.strip()
    for text, number in _CP_DISK_FAULTS.items():
        if text in message:
            raise disk_error(OSError(number, os.strerror(number)), path=target, phase=phase,
                             what=what)
    raise OSError(f"cp -a {source} {target} failed: {message}")


def stop_each(stops: Iterable[Callable[[], object] | None]) -> None:
    """Call every stop in turn; one failing must not keep the others running. Raises the first error."""
    errors: list[BaseException] = []
    for stop in stops:
        if stop is None:
            continue
        try:
            stop()
        except Exception as exc:  # noqa: BLE001 - collected and re-raised after the rest stopped
            errors.append(exc)
    if errors:
        raise errors[0]


def free_port() -> int:
    """A free TCP port on loopback (it may be taken by the time it is used; start reports it)."""
    return port_for.select_random()


def _log_tail(path: Path | None, lines: int = _LOG_TAIL_LINES) -> str:
    if path is None or not path.exists():
        return "(no log written)"
    text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    if not text:
        return "(log is empty)"
    return "\n".join(text[-lines:])


def wait_until(
    probe: Callable[[], bool],
    *,
    what: str,
    deadline_s: float,
    gave_up: Callable[[], str | None] = lambda: None,
) -> None:
    """Call ``probe`` until it returns True; raise ServerStartError at the deadline.

    ``gave_up`` returns a reason when waiting longer is pointless (the process
    exited), so a server that dies at once fails at once instead of at the deadline.
    """
    end = time.monotonic() + deadline_s
    while True:
        # Exit first: a probe may hang up to its own timeout on a port someone else holds.
        reason = gave_up()
        if reason is not None:
            raise ServerStartError(f"{what} did not start: {reason}", server=what)
        if probe():
            return
        if time.monotonic() >= end:
            raise ServerStartError(
                f"{what} was not ready within {deadline_s:g} s",
                server=what,
                hint="the machine may be overloaded; the log tail above says what the server did",
            )
        time.sleep(_POLL_INTERVAL_S)


class _CleanEnvExecutor(SimpleExecutor):
    """A SimpleExecutor whose process gets only PATH and LANG (and mirakuru's own marker).

    mirakuru hands every child drillbook's whole environment, where the operator's ``${ENV}``
    secrets live; an untrusted server (a recovered backup) must not see them.
    """

    @property
    def envvars(self) -> dict[str, str]:
        marker = {k: v for k, v in super().envvars.items() if k == ENV_UUID}
        return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **marker}


class _Process:
    """One mirakuru-owned server process with its log file."""

    def __init__(self, label: str, command: list[str], *, log_path: Path, timeout_s: float,
                 stop_signal: int, popen_kwargs: dict[str, Any], clean_env: bool = False) -> None:
        self.clean_env = clean_env
        self.label = label
        self.log_path = log_path
        self._command = command
        self._timeout_s = timeout_s
        self._stop_signal = stop_signal
        self._popen_kwargs = popen_kwargs
        self._executor: SimpleExecutor | None = None
        self._log: IO[str] | None = None

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs (no I/O: the Popen object already knows it)."""
        if self._executor is None or self._executor.process is None:
            return None
        return int(self._executor.process.pid)

    def spawn(self) -> None:
        self._log = self.log_path.open("a", encoding="utf-8")
        executor = _CleanEnvExecutor if self.clean_env else SimpleExecutor
        self._executor = executor(
            self._command,
            timeout=self._timeout_s,
            stop_signal=self._stop_signal,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            popen_kwargs=self._popen_kwargs,
        )
        try:
            self._executor.start()
        except OSError as exc:
            self._close_log()
            self._executor = None
            raise ServerStartError(
                f"{self.label} could not be launched: {exc}",
                server=self.label,
                hint="check that the server binary exists and is executable",
            ) from exc

    def exit_reason(self) -> str | None:
        """Why the process is gone (exit status and log tail), or None while it runs."""
        if self._executor is None or self._executor.process is None:
            return "it was never started"
        code = self._executor.process.poll()
        if code is None:
            return None
        return f"it exited with status {code}; last lines of {self.log_path}:\n{self.log_tail()}"

    def log_tail(self) -> str:
        if self._log is not None:
            self._log.flush()
        return _log_tail(self.log_path)

    def stop(self) -> None:
        """Stop the process group (idempotent); a server that ignores the signal is killed."""
        executor, self._executor = self._executor, None
        if executor is not None and executor.process is not None:
            try:
                executor.stop(expected_returncode=0)
            except Exception:  # noqa: BLE001 - a crashed server still has to be reaped and killed
                with contextlib.suppress(Exception):
                    executor.kill()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def postgres_version(bindir: Path) -> str:
    """``15.18`` for PostgreSQL 15.18 (used to key cached data directories)."""
    try:
        out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ServerStartError(
            f"`postgres --version` failed in {bindir}: {exc}",
            server="postgres",
            hint="install Debian's `postgresql` package or set DRILLBOOK_PG_BINDIR",
        ) from exc
    match = re.search(r"(\d+(?:\.\d+)*)", out)
    return match.group(1) if match else out.strip()


def initdb(datadir: Path, *, bindir: Path, log_path: Path) -> None:
    """Create a fresh cluster in ``datadir`` (trust auth on loopback only, UTF-8, C.UTF-8)."""
    datadir.mkdir(parents=True, exist_ok=True)
    require_reachable_by_server_user(datadir)
    hand_to_server_user(datadir)
    # 1 MB WAL segments (instead of 16 MB) keep copied data dirs small: copying is the warm start.
    command = [str(bindir / "initdb"), "--no-sync", "-U", "postgres", "-A", "trust", "-E", "UTF8",
               "--locale=C.UTF-8", f"--wal-segsize={WAL_SEGMENT_MB}", "-D", str(datadir)]
    try:
        with log_path.open("a", encoding="utf-8") as log:
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False,
                                    **server_user_kwargs())
    except OSError as exc:
        raise ServerStartError(
            f"initdb could not be launched from {bindir}: {exc}",
            server="initdb",
            hint="install Debian's `postgresql` package or set DRILLBOOK_PG_BINDIR",
        ) from exc
    if result.returncode != 0:
        raise ServerStartError(
            f"initdb into {datadir} exited with status {result.returncode}; "
            f"last lines of {log_path}:\n{_log_tail(log_path)}",
            server="initdb",
        )


def template_datadir(cache_dir: Path, *, bindir: Path, workdir: Path) -> Path:
    """A pristine initdb'ed data dir cached under ``cache_dir`` keyed by the PostgreSQL version.

    Copying it (~0.3 s) is faster than initdb (~0.8 s). It is built in
    ``workdir`` (which the server user can reach, unlike ``~/.cache`` as root)
    and moved into the cache atomically, so a half-built template is never used.
    """
    template = cache_dir / f"pg-template-{postgres_version(bindir)}-wal{WAL_SEGMENT_MB}mb"
    if (template / "PG_VERSION").exists():
        return template
    cache_dir.mkdir(parents=True, exist_ok=True)
    build = workdir / f"template-{uuid.uuid4().hex[:8]}"
    initdb(build, bindir=bindir, log_path=workdir / "initdb.log")
    staging = cache_dir / f".{template.name}.{uuid.uuid4().hex[:8]}"
    copy_tree(build, staging, phase="caching the PostgreSQL template data directory",
              what="XDG_CACHE_HOME")
    shutil.rmtree(build, ignore_errors=True)
    try:
        staging.rename(template)
    except OSError:
        # Another run won the race and its template is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)
    return template


class PostgresServer:
    """A PostgreSQL cluster run directly by ``postgres -D`` (not pg_ctl, so mirakuru owns it).

    ``settings`` are extra ``-c key=value`` server settings.
    """

    def __init__(
        self,
        name: str,
        datadir: Path,
        *,
        bindir: Path | None = None,
        port: int | None = None,
        sockdir: Path | None = None,
        log_path: Path | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        settings: Mapping[str, str] | None = None,
        clean_env: bool = False,
    ) -> None:
        self.name = name
        self.settings = dict(settings or {})
        self.clean_env = clean_env  # only PATH and LANG: for an untrusted (recovered) cluster
        self.datadir = datadir
        self.bindir = bindir if bindir is not None else pgtools.bindir()
        self.port = port if port is not None else free_port()
        self.sockdir = sockdir if sockdir is not None else datadir.parent / f"{datadir.name}-sock"
        self.log_path = log_path if log_path is not None else datadir.parent / f"{datadir.name}.log"
        self.timeout_s = timeout_s
        self._process: _Process | None = None

    @property
    def label(self) -> str:
        return f"PostgreSQL ({self.name}) on 127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def init(self, *, template: Path | None = None) -> None:
        """Create the data dir: copy ``template`` when given, else run initdb."""
        if template is not None:
            self.datadir.parent.mkdir(parents=True, exist_ok=True)
            copy_tree(template, self.datadir,
                      phase=f"copying the {self.name} cluster's data directory into TMPDIR")
        else:
            initdb(self.datadir, bindir=self.bindir, log_path=self.log_path)

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq URL of one database of this cluster (trust auth: no password to leak)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self, *, wait: bool = True) -> None:
        """Launch the postmaster; with ``wait``, return once ``SELECT 1`` answers."""
        require_reachable_by_server_user(self.datadir)
        self.sockdir.mkdir(parents=True, exist_ok=True)
        hand_to_server_user(self.sockdir)
        # A copied data dir may still carry a pid file if its source was not shut down cleanly.
        (self.datadir / "postmaster.pid").unlink(missing_ok=True)
        # A Unix socket path is limited to 107 bytes; under a long TMPDIR the postmaster would
        # refuse to start. Every client connects over TCP, so then the socket is simply left out.
        socket_path = f"{self.sockdir}/.s.PGSQL.{self.port}"
        sockdir = str(self.sockdir) if len(os.fsencode(socket_path)) <= MAX_SOCKET_PATH else ""
        command = [
            str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
            "-k", sockdir, "-c", "listen_addresses=127.0.0.1",
            # A sandbox is rebuilt from scratch on a crash: durability buys nothing here.
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]
        for key, value in self.settings.items():
            command += ["-c", f"{key}={value}"]
        self._process = _Process(self.label, command, log_path=self.log_path, timeout_s=self.timeout_s,
                                 stop_signal=signal.SIGINT, popen_kwargs=server_user_kwargs(),
                                 clean_env=self.clean_env)
        self._process.spawn()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Block until a real query answers; on failure stop the server and raise."""
        process = self._process
        if process is None:
            raise ServerStartError(f"{self.label} was never started", server=self.name, port=self.port)

        expected = os.path.realpath(self.datadir)

        def answers() -> bool:
            # The postmaster marks itself "ready" in postmaster.pid; until then a connection
            # attempt could only hang on a port someone else holds.
            if not self._pid_file_says_ready():
                return False
            # Another server on the same port would answer too: ours is the one serving our data dir.
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2, autocommit=True) as conn:
                    row = conn.execute("SELECT current_setting('data_directory')").fetchone()
            except psycopg.Error:
                return False
            return row is not None and os.path.realpath(str(row[0])) == expected

        try:
            wait_until(answers, what=self.label, deadline_s=self.timeout_s, gave_up=process.exit_reason)
        except ServerStartError as exc:
            message = exc.message
            if "last lines of" not in message:  # a timeout: the exit reason did not add the log
                message += f"; last lines of {self.log_path}:\n{process.log_tail()}"
            self.stop()
            raise ServerStartError(message, hint=exc.hint or None, server=self.name,
                                   port=self.port) from None

    def _pid_file_says_ready(self) -> bool:
        try:
            lines = (self.datadir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        except OSError:
            return False
        return bool(lines) and lines[0].strip() == str(self.pid) and lines[-1].strip() == "ready"

    def exit_reason(self) -> str | None:
        """Why the postmaster is gone (status and log tail), or None while it runs."""
        return self._process.exit_reason() if self._process else "it was never started"

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster); idempotent."""
        process, self._process = self._process, None
        if process is not None:
            process.stop()


class RedisServer:
    """``redis-server`` on loopback with persistence off."""

    def __init__(self, workdir: Path, *, port: int | None = None, binary: str = "redis-server",
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.binary = binary
        self.timeout_s = timeout_s
        self.log_path = workdir / "redis.log"
        self._process: _Process | None = None

    @property
    def label(self) -> str:
        return f"redis-server on 127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, *, wait: bool = True) -> None:
        """Launch redis-server; with ``wait``, return once PING answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self.workdir)]
        self._process = _Process(self.label, command, log_path=self.log_path, timeout_s=self.timeout_s,
                                 stop_signal=signal.SIGTERM, popen_kwargs={})
        self._process.spawn()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Block until PING answers; on failure stop the server and raise."""
        process = self._process
        if process is None:
            raise ServerStartError(f"{self.label} was never started", server="redis", port=self.port)

        def answers() -> bool:
            # No client-side retries: the readiness loop is the retry, and it has the deadline.
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1,
                                 socket_timeout=1, retry=Retry(NoBackoff(), 0))
            try:
                # PING proves a server; its process_id proves it is ours, not another on the port.
                return bool(client.ping()) and client.info("server").get("process_id") == self.pid
            except (redis.RedisError, OSError):
                return False
            finally:
                client.close()

        try:
            wait_until(answers, what=self.label, deadline_s=self.timeout_s, gave_up=process.exit_reason)
        except ServerStartError as exc:
            self.stop()
            raise ServerStartError(exc.message, hint=exc.hint or None, server="redis",
                                   port=self.port) from None

    def stop(self) -> None:
        """Stop redis-server (SIGTERM; nothing to save); idempotent."""
        process, self._process = self._process, None
        if process is not None:
            process.stop()


class _MotoServer(ThreadedMotoServer):
    """ThreadedMotoServer that reports a failed bind instead of hanging in ``start()``.

    Upstream sets its ready event only after the socket is bound, so a port
    already in use would leave ``start()`` waiting forever.
    """

    startup_error: BaseException | None = None

    def _server_entry(self) -> None:
        try:
            super()._server_entry()
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread, not swallowed
            self.startup_error = exc
            self._server_ready_event.set()

    def close(self) -> None:
        """Stop serving and release the listening socket (upstream stop() keeps it open)."""
        server = self._server
        if server is not None and self._thread is not None and self._thread.is_alive():
            self.stop()
        if server is not None:
            server.server_close()
            self._server = None


class S3Server:
    """moto's S3 served in-process on loopback (``ThreadedMotoServer``).

    moto keeps its state in process-wide backends: two S3Servers in one
    process see the same buckets.
    """

    def __init__(self, *, port: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.port = port if port is not None else free_port()
        self.timeout_s = timeout_s
        self._server: _MotoServer | None = None

    @property
    def label(self) -> str:
        return f"S3 (moto) on 127.0.0.1:{self.port}"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Serve S3 in a thread; return once an HTTP GET answers."""
        # werkzeug logs every request at INFO; a restore drill makes hundreds.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = _MotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        if server.startup_error is not None:
            error = server.startup_error
            server.close()
            # werkzeug reports a failed bind by printing and calling sys.exit(1).
            reason = ("it could not bind its port (already in use?)" if isinstance(error, SystemExit)
                      else f"{type(error).__name__}: {error}")
            raise ServerStartError(
                f"{self.label} did not start: {reason}",
                server="s3", port=self.port, hint="another process may hold the port",
            )
        self._server = server

        def answers() -> bool:
            try:
                with urllib.request.urlopen(self.endpoint_url + "/", timeout=1) as response:  # noqa: S310
                    return int(response.status) < 500
            except urllib.error.HTTPError as exc:
                return exc.code < 500
            except OSError:
                return False

        try:
            wait_until(answers, what=self.label, deadline_s=self.timeout_s)
        except ServerStartError as exc:
            self.stop()
            raise ServerStartError(exc.message, hint=exc.hint or None, server="s3",
                                   port=self.port) from None

    def backdate(self, bucket: str, key: str, when: datetime) -> None:
        """Set an object's ``LastModified`` (S3 itself cannot: the sandbox's history needs it).

        Reaches into moto's in-process backend (default account, the one the
        fake credentials map to). A moto that no longer offers it raises rather
        than leave every backup looking freshly written.
        """
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        found = s3_backends[DEFAULT_ACCOUNT_ID]["global"].get_object(bucket, key)
        if found is None or not hasattr(found, "last_modified"):
            raise ServerStartError(
                f"cannot backdate s3://{bucket}/{key} in {self.label}: moto has no such object",
                server="s3", port=self.port,
                hint="the installed moto changed its S3 backend; pin the version drillbook was tested with",
            )
        # moto keeps naive UTC datetimes.
        found.last_modified = when.astimezone(UTC).replace(tzinfo=None)

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
