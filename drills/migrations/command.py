"""The team's own migrate command (Alembic, Rails, Django, Ecto, Knex…) run against scratch.

Migrations written as code cannot be parsed: drillbook runs the team's command
instead (``alembic upgrade head``), then judges the database it left, as for a
SQL folder: schema fingerprint, round trip (with a down command), drift and
history.

How the command runs, and why:

- **argv, never a shell**: the text is split with :func:`shlex.split`; a
  ``sh -c '…'`` is the user's explicit choice, written in the config.
- **against one scratch database only** (``target.require_scratch()``), named
  in ``DATABASE_URL`` (a ``postgresql://`` URL, password included: tools that
  do not use libpq — Ecto, node-postgres, ActiveRecord's URL — need it there; it
  is the throwaway scratch role's) and in the ``PG*`` variables (``PGHOST``,
  ``PGPORT``, ``PGDATABASE``, ``PGUSER`` and a private ``PGPASSFILE`` from
  :func:`drills.pgclient.access`, never ``PGPASSWORD``). A SQLAlchemy project
  converts the scheme itself (``postgresql+psycopg://``): only it knows its driver.
- **a minimal environment**: ``PATH`` (the caller's: it is how ``alembic``,
  ``bundle`` or ``mix`` is found), ``HOME``, ``LANG``, the variables the user
  lists (``[migrations] command_env``), nothing else of drillbook's environment,
  which holds production DSNs. A listed ``DATABASE_URL`` or ``PG*`` name is
  refused: it would point the command away from scratch.
- **its own process group and a deadline** (``[migrations] command_timeout``,
  else ``[run] migration_timeout``, :mod:`drills.deadlines`): on expiry the group
  is killed and the scratch database's sessions are terminated server-side;
  after a normal exit the group is killed too (a daemon it forked must not
  outlive the drill).
- **its output is evidence**: stdout and stderr merged in order, capped (head
  and tail kept), masked with :mod:`checks.redact`.

The drill around it (replay, round trip, their verdicts) is :mod:`.command_replay`.

Errors::

    MigrationError
    ├── CommandUnusable   empty or badly quoted command, not found, no such folder,
    │                     a forbidden variable (→ "could not check", exit 2)
    └── MigrationFailed
        └── CommandFailed exited non-zero (code and last lines) or passed its deadline
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg

from checks import redact

from .. import deadlines, pgclient
from ..deadlines import Deadline, Limit
from ..targets import Journal, PostgresTarget
from .model import MigrationError, MigrationFailed

# Kept of a command's output: the head (what it was doing) and the tail (why it stopped).
HEAD_BYTES = 16 * 1024
TAIL_BYTES = 48 * 1024
TAIL_LINES = 5  # lines of output quoted in a failure's message (the whole output is evidence)
_CHUNK = 8192
# What a child gets of drillbook's own environment, besides what the user lists.
_INHERITED = ("PATH", "HOME", "LANG")
# Names the scratch database is handed through: the user may not set them (they would point the
# command at another database, e.g. production's).
_RESERVED = re.compile(r"^(DATABASE_URL|PG[A-Z_]*)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A listed variable whose name says it holds a credential is masked in the output.
_SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH|DSN", re.IGNORECASE)


class CommandUnusable(MigrationError):
    """The command cannot be run at all: nothing was checked."""

    default_hint = ("set `[migrations] command` in drillbook.toml (or --command) to the program and "
                    "arguments that migrate, e.g. \"alembic upgrade head\", with `workdir` its folder")


class CommandFailed(MigrationFailed):
    """The command ran and failed: a non-zero exit, or past its deadline."""

    default_hint = "run the command by hand against an empty database; nothing was left in scratch"


def split_command(text: str, *, what: str = "--command") -> tuple[str, ...]:
    """The argv of a command line as a POSIX shell would split it, without running a shell."""
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:  # no closing quotation
        raise CommandUnusable(f"{what} {text!r}: {exc}", command=text,
                              hint="balance the quotes, or quote the whole command") from None
    if not argv:
        raise CommandUnusable(f"{what} is empty", command=text)
    return argv


def check_env_names(names: Sequence[str], *, what: str = "command_env") -> tuple[str, ...]:
    """Variable names the user passes through: valid names, none that names the database."""
    for name in names:
        if not _ENV_NAME.match(name):
            raise CommandUnusable(f"{what}: {name!r} is not a variable name", variable=name)
        if _RESERVED.match(name):
            raise CommandUnusable(
                f"{what}: {name} is set by drillbook to the scratch database and cannot be passed "
                "through", variable=name,
                hint=f"remove {name}: the command gets DATABASE_URL and PG* for the scratch database")
    return tuple(names)


@dataclass(frozen=True)
class MigrateCommand:
    """The team's command: up (and optionally down) argv, the folder it runs in, what it may see."""

    up: tuple[str, ...]
    workdir: Path
    down: tuple[str, ...] | None = None
    env_names: tuple[str, ...] = ()
    limit: Limit = field(default_factory=lambda: default_limit())
    history_table: str | None = None  # the tool's own table, when not a known one

    @classmethod
    def parse(cls, up: str, *, workdir: Path, down: str | None = None, env_names: Sequence[str] = (),
              limit: Limit | None = None, history_table: str | None = None) -> MigrateCommand:
        """Validate everything before anything runs (STYLE rule 6)."""
        directory = workdir.resolve()
        if not directory.is_dir():
            raise CommandUnusable(f"the command's folder {workdir} does not exist or is not a folder",
                                  workdir=str(workdir),
                                  hint="give the folder the command runs in (alembic.ini's, the app's)")
        return cls(split_command(up), directory,
                   split_command(down, what="--down-command") if down is not None else None,
                   check_env_names(env_names), limit or default_limit(), history_table)

    def shown(self, argv: Sequence[str] | None = None) -> str:
        """The command as a shell would read it (for messages)."""
        return shlex.join(self.up if argv is None else argv)


def default_limit() -> Limit:
    """``[run] migration_timeout``'s built-in default, when neither config nor CLI sets a limit."""
    return Limit.configured(None, key="migration_timeout", default_s=deadlines.DEFAULT_MIGRATION_TIMEOUT_S)


def database_url(dsn: str) -> str:
    """``postgresql://user:password@host:port/db`` for a libpq DSN; a socket directory goes in ``?host=``."""
    info = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(dsn).items() if v is not None}
    user, password = info.pop("user", ""), info.pop("password", "")
    host, port, dbname = info.pop("host", ""), info.pop("port", ""), info.pop("dbname", "")
    auth = (quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@") if user else ""
    query: dict[str, str] = {}
    if host.startswith("/") or "," in host:
        # A socket directory (or several hosts) cannot sit in the authority part: libpq takes ?host=.
        query["host"] = host
        if port:
            query["port"] = port
        netloc = ""
    else:
        netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    query.update(info)  # sslmode, options, …
    return f"postgresql://{auth}{netloc}/{quote(dbname, safe='')}" + (f"?{urlencode(query)}" if query else "")


def command_environment(target: PostgresTarget, client: pgclient.ClientAccess, *,
                        environ: Mapping[str, str], env_names: Sequence[str],
                        deadline: Deadline | None = None) -> dict[str, str]:
    """The whole environment of the command: inherited minimum, listed names, the scratch database."""
    env = {name: environ[name] for name in _INHERITED if name in environ}
    env.setdefault("PATH", pgclient.SAFE_PATH)
    env.setdefault("LANG", "C.UTF-8")
    for name in env_names:
        if name not in environ:
            raise CommandUnusable(f"command_env names {name}, which is not set in drillbook's environment",
                                  variable=name, hint=f"export {name} before running drillbook")
        env[name] = environ[name]
        if _SECRET_NAME.search(name):
            redact.register(environ[name])
            redact.register_dsn(environ[name])
    info = psycopg.conninfo.conninfo_to_dict(target.dsn)
    for variable, key in (("PGHOST", "host"), ("PGPORT", "port"), ("PGDATABASE", "dbname"),
                          ("PGUSER", "user")):
        if info.get(key):
            env[variable] = str(info[key])
    options = "-c client_min_messages=warning"
    if deadline is not None:
        # libpq clients also get a server-side limit per statement; the process group kill is the rule.
        options += f" -c statement_timeout={deadline.statement_timeout_ms()}"
    env.update({k: v for k, v in client.env.items() if k in ("PGPASSFILE", "PGCONNECT_TIMEOUT")})
    env["PGOPTIONS"] = options
    env["DATABASE_URL"] = database_url(target.dsn)
    return env


class _Capture:
    """Reads a pipe to its end in a thread, keeping the first and the last bytes only."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        # read1: whatever is there, so a slow trickle of output is kept as it comes.
        while chunk := self._stream.read1(_CHUNK):
            self.total += len(chunk)
            room = HEAD_BYTES - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            self.tail += chunk
            if len(self.tail) > TAIL_BYTES:
                del self.tail[: len(self.tail) - TAIL_BYTES]

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def text(self) -> str:
        dropped = self.total - len(self.head) - len(self.tail)
        middle = f"\n[… {dropped} bytes of output left out …]\n".encode() if dropped > 0 else b""
        return redact.redact((bytes(self.head) + middle + bytes(self.tail)).decode("utf-8", errors="replace"))


@dataclass(frozen=True)
class CommandRun:
    """One run of the command: which, in which phase, its exit, its time and its (masked) output."""

    phase: str
    command: str
    exit_code: int | None
    duration_s: float
    output: str
    output_bytes: int
    timed_out: bool = False

    def last_lines(self, count: int = TAIL_LINES) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()][-count:]

    def to_evidence(self) -> dict[str, Any]:
        return {"phase": self.phase, "command": redact.redact(self.command), "exit_code": self.exit_code,
                "duration_s": round(self.duration_s, 6), "timed_out": self.timed_out,
                "output_bytes": self.output_bytes, "output": self.output}


def run_command(argv: Sequence[str], target: PostgresTarget, *, workdir: Path, phase: str,
                deadline: Deadline, environ: Mapping[str, str], env_names: Sequence[str] = (),
                journal: Journal | None = None) -> CommandRun:
    """Run ``argv`` once against the scratch database ``target``; raise CommandFailed unless it exits 0."""
    target.require_scratch()
    redact.register_dsn(target.dsn)
    shown = shlex.join(argv)
    started = datetime.now(UTC).isoformat()
    t0 = time.monotonic()
    with pgclient.access(target.dsn) as client:
        env = command_environment(target, client, environ=environ, env_names=env_names, deadline=deadline)
        program = _resolve_program(argv[0], workdir=workdir, path=env["PATH"], shown=shown)
        if deadline.expired():
            raise CommandFailed(deadline.expiry_message(f"`{shown}`", phase), command=shown, phase=phase)
        try:
            proc = subprocess.Popen([program, *argv[1:]], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as exc:
            raise CommandUnusable(f"cannot start `{shown}` in {workdir}: {exc.strerror}", command=shown,
                                  workdir=str(workdir)) from exc
        capture = _Capture(proc.stdout)
        timed_out = False
        try:
            try:
                proc.wait(timeout=deadline.remaining())
            except subprocess.TimeoutExpired:
                timed_out = True
        finally:
            # Whatever happened (exit, deadline, Ctrl-C), nothing the command started outlives it.
            deadlines.kill_process_group(proc)
            proc.wait()
            capture.join(timeout=5.0)
            if proc.stdout is not None:
                proc.stdout.close()
        if timed_out:
            # A killed client leaves its backend running the statement until it next writes.
            with contextlib.suppress(psycopg.Error):
                deadlines.terminate_sessions(target.dsn)
    run = CommandRun(phase, shown, None if timed_out else proc.returncode, time.monotonic() - t0,
                     capture.text(), capture.total, timed_out)
    status = "ok" if run.exit_code == 0 else "failed"
    if journal is not None:
        journal.add(f"command {phase}", status, started, run.duration_s, command=redact.redact(shown),
                    exit_code=run.exit_code, timed_out=timed_out)
    if timed_out:
        raise CommandFailed(deadline.expiry_message(f"`{shown}`", phase) + _quoted_tail(run),
                            command=shown, phase=phase, run=run, limit_s=deadline.limit.seconds,
                            hint="the command waits or hangs: fix it, or raise [migrations] "
                                 "command_timeout (--timeout) in drillbook.toml")
    if run.exit_code != 0:
        raise CommandFailed(f"`{shown}` exited with code {run.exit_code} in phase `{phase}`"
                            + _quoted_tail(run), command=shown, phase=phase, run=run,
                            exit_code=run.exit_code)
    return run


def _quoted_tail(run: CommandRun) -> str:
    lines = run.last_lines()
    return (" — last lines of its output: " + " | ".join(lines)) if lines else " (it printed nothing)"


def _resolve_program(program: str, *, workdir: Path, path: str, shown: str) -> str:
    """The executable, looked up as the child's exec would (PATH, or relative to the folder)."""
    if "/" in program:
        candidate = Path(program) if Path(program).is_absolute() else workdir / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        raise CommandUnusable(f"`{shown}`: {candidate} is not an executable file", command=shown,
                              hint="give the path of the program, relative to the command's folder")
    found = shutil.which(program, path=path)
    if found is None:
        raise CommandUnusable(f"`{shown}`: command not found: {program} (looked on PATH {path})",
                              command=shown,
                              hint=f"install {program}, or run drillbook with its folder on PATH "
                                   "(e.g. the project's virtualenv activated)")
    return found
