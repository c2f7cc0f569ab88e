"""This machine: what the embedded sandbox and a restore need, and where drillbook writes.

Binaries are found where drillbook itself finds them (:mod:`drills.pgtools`); versions are read
with ``--version`` under a timeout. Directories are proven writable by creating a temp file in
them (or in the nearest existing parent, for one drillbook would create) and removing it at once;
the ledger file itself is never opened for writing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checks.errors import DrillbookError, EnvironmentError_
from checks.verdict import Outcome, Verdict
from drills import pgtools

from .base import CHECK_DEADLINE_S, Check, result

_VERSION_TIMEOUT_S = 10
_MARKER_PREFIX = ".drillbook-doctor-"
_LOCAL_VERSION_LOCK = threading.Lock()
# The S3 ledger check's calls: one attempt each, 3 s to connect and 3 s to read (a listing of one
# key, a put and a delete of a few bytes), so that all three fit in the check's deadline.
_S3_CONNECT_S = 3.0
_S3_READ_S = 3.0
_S3_CALL_S = _S3_CONNECT_S + _S3_READ_S
_MARGIN_S = 1.0  # the check starts a little after the deadline's clock does
_BOOTSTRAP_FIX = ("run ./bootstrap as root (it installs Debian's `postgresql`), or install PostgreSQL 15 "
                  "or newer and set DRILLBOOK_PG_BINDIR to its bin directory")


@dataclass(frozen=True)
class ServerVersion:
    """A PostgreSQL server a client tool must be able to read: who, and its version."""

    label: str
    major: int
    text: str


# -- directories -------------------------------------------------------------------------------


def existing_base(path: Path) -> Path:
    """``path`` itself when it exists, else its nearest existing parent (where it would be created)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or "/")


def probe_writable(directory: Path) -> str | None:
    """Create and remove a temp file in ``directory``; None when that worked, else why not."""
    if not directory.is_dir():
        return f"{directory} is not a directory"
    try:
        handle, name = tempfile.mkstemp(prefix=_MARKER_PREFIX, dir=directory)
    except OSError as exc:
        return f"cannot create a file in {directory}: {exc.strerror or exc}"
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(b"drillbook doctor\n")
    except OSError as exc:
        return f"cannot write a file in {directory}: {exc.strerror or exc}"
    finally:
        with contextlib.suppress(OSError):
            Path(name).unlink()
    return None


def writable_dir(name: str, directory: Path, *, what: str, fix: str) -> Verdict:
    """``directory`` exists and takes a file, or can be created (its nearest parent takes one)."""
    base = existing_base(directory)
    problem = probe_writable(base)
    if problem is not None:
        return result(name, Outcome.FAILED, f"{what} {directory}: {problem}", fix=fix, path=str(directory))
    return result(name, Outcome.PASSED, f"{what} {directory} {_takes_files(directory, base)}",
                  path=str(directory))


def _takes_files(directory: Path, base: Path) -> str:
    if base == directory:
        return "is writable"
    return f"does not exist yet; {base} takes files, so drillbook can create it"


def local_ledger(name: str, path: Path) -> Verdict:
    """The ledger's directory takes files and an existing ledger file may be appended to."""
    fix = ("point `[ledger] url` (or `[run] out`, or --out) at a directory this user can write, "
           "or fix the directory's permissions or mount")
    base = existing_base(path.parent)
    problem = probe_writable(base)
    if problem is not None:
        return result(name, Outcome.FAILED, f"ledger {path}: {problem}", fix=fix, path=str(path))
    if not path.exists():
        return result(name, Outcome.PASSED, f"ledger {path} will be created: its directory "
                      f"{_takes_files(path.parent, base)}", path=str(path))
    if not path.is_file():
        return result(name, Outcome.FAILED, f"ledger {path} is not a file", fix=fix, path=str(path))
    if not os.access(path, os.W_OK):
        return result(name, Outcome.FAILED, f"ledger {path} exists but is not writable by this user",
                      fix=fix, path=str(path))
    return result(name, Outcome.PASSED, f"ledger {path} exists and is writable", path=str(path))


def s3_ledger(name: str, url: str, options: dict[str, str], *,
              deadline_s: float = CHECK_DEADLINE_S) -> Verdict:
    """Put and delete a marker under the ``doctor ledger`` scratch prefix beside the ledger's prefix.

    Each S3 call is one attempt of at most ``_S3_CALL_S``; the marker is put only while the put and
    its delete both fit before ``deadline_s`` (from the check's start): a report that ended at the
    deadline with the marker put but not yet deleted would leave it behind.
    """
    import secrets

    from botocore.exceptions import BotoCoreError, ClientError

    from reports.ledger_s3 import S3Location

    from ..audit import s3_client
    from ..doctor_cli import scratch_prefix

    started = time.monotonic()
    location = S3Location.parse(url)
    client = s3_client(options, connect_timeout_s=_S3_CONNECT_S, read_timeout_s=_S3_READ_S, max_attempts=1)
    key = f"{scratch_prefix(location)}marker-{secrets.token_hex(6)}"
    where = f"s3://{location.bucket}/{key}"
    fix = ("check `[ledger]` endpoint_url, bucket and credentials: drillbook needs to list, read and "
           f"create objects under {location} (the marker goes to s3://{location.bucket}/"
           f"{scratch_prefix(location)})")
    try:
        client.list_objects_v2(Bucket=location.bucket, Prefix=location.prefix, MaxKeys=1)
    except (ClientError, BotoCoreError) as exc:
        return result(name, Outcome.FAILED, f"S3 ledger {location}: {_s3_reason(exc)}", fix=fix)
    spent = time.monotonic() - started
    if spent + 2 * _S3_CALL_S > deadline_s - _MARGIN_S:
        return result(name, Outcome.FAILED, f"S3 ledger {location} lists, but only after {spent:.1f} s: "
                      "no marker was tried (its put and delete might not end before the report does)",
                      fix="the endpoint answers slowly: check its load and the network to it, then run "
                          "doctor again")
    try:
        client.put_object(Bucket=location.bucket, Key=key, Body=b"drillbook doctor\n")
    except (ClientError, BotoCoreError) as exc:
        return result(name, Outcome.FAILED, f"S3 ledger {location}: {_s3_reason(exc)}", fix=fix)
    try:
        client.delete_object(Bucket=location.bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        return result(name, Outcome.WARNING, f"S3 ledger {location} takes objects, but the marker {where} "
                      f"could not be deleted: {_s3_reason(exc)}", fix=f"delete {where} by hand")
    return result(name, Outcome.PASSED, f"S3 ledger {location} lists and takes objects (a marker put and "
                  f"deleted at {where})")


def _s3_reason(exc: Exception) -> str:
    response: Any = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code or f"{type(exc).__name__}: {exc}"


# -- binaries ----------------------------------------------------------------------------------


def _version_output(command: Sequence[str]) -> str:
    """What ``command --version`` prints (stdout, else stderr), under a timeout."""
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, check=False,
                          timeout=_VERSION_TIMEOUT_S, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    return (done.stdout or done.stderr).strip()


def server_binaries(name: str) -> Verdict:
    """initdb, pg_ctl and postgres of PostgreSQL >= 15, where drillbook looks for them."""
    try:
        bindir = pgtools.bindir()
    except EnvironmentError_ as exc:
        return result(name, Outcome.FAILED, exc.message, fix=exc.hint or _BOOTSTRAP_FIX)
    missing = [tool for tool in ("initdb", "pg_ctl", "postgres") if not (bindir / tool).exists()]
    if missing:
        return result(name, Outcome.FAILED, f"{bindir} lacks {', '.join(missing)}", fix=_BOOTSTRAP_FIX)
    major, minor = _postgres_version(bindir)
    if major < pgtools.MIN_MAJOR:
        return result(name, Outcome.FAILED, f"PostgreSQL {major}.{minor} in {bindir}: drillbook needs "
                      f"{pgtools.MIN_MAJOR} or newer", fix=_BOOTSTRAP_FIX)
    return result(name, Outcome.PASSED, f"PostgreSQL {major}.{minor} in {bindir}", version=f"{major}.{minor}")


def local_server_version() -> ServerVersion | None:
    """The version of the local server binaries (the sandbox's and a local scratch's), if any."""
    try:
        major, minor = _postgres_version(pgtools.bindir())
    except DrillbookError:
        return None
    return ServerVersion("the local server binaries", major, f"{major}.{minor}")


def _postgres_version(bindir: Path) -> tuple[int, int]:
    """``postgres --version`` of ``bindir``, run once however many checks ask at the same moment.

    pgtools caches the answer, but a cache is no lock: checks starting together would each run it.
    """
    with _LOCAL_VERSION_LOCK:
        return pgtools.psql_version(str(bindir / "postgres"))


def client_tool(name: str, tool: str, *, servers: Sequence[ServerVersion], unreached: Sequence[str] = (),
                restrict: bool = False) -> Verdict:
    """``tool`` (pg_restore, psql) is found, at least as new as every server, psql with ``\\restrict``."""
    try:
        path = pgtools.tool(tool)
        major, minor = pgtools.psql_version(path)  # cached: require_restrict below reads it, not runs it
    except EnvironmentError_ as exc:
        return result(name, Outcome.FAILED, exc.message, fix=exc.hint or _BOOTSTRAP_FIX)
    found = f"{tool} {major}.{minor} ({path})"
    newer = [s for s in servers if s.major > major]
    if newer:
        named = ", ".join(f"{s.label} ({s.text})" for s in newer)
        return result(name, Outcome.FAILED, f"{found} is older than {named}: it cannot read what that "
                      "server's pg_dump writes", fix=f"install the PostgreSQL {max(s.major for s in newer)} "
                      "client (or newer) and set DRILLBOOK_PG_BINDIR to its bin directory")
    if restrict:
        try:
            pgtools.require_restrict(path)
        except EnvironmentError_ as exc:
            return result(name, Outcome.FAILED, exc.message, fix=exc.hint)
    reads = (f"; reads {', '.join(f'{s.label} ({s.text})' for s in servers)}" if servers else "")
    if unreached:
        return result(name, Outcome.WARNING, f"{found}{reads}; not compared with {', '.join(unreached)} "
                      "(no answer)", fix="make those targets reachable, then run doctor again")
    if not servers:
        return result(name, Outcome.WARNING, f"{found}; no PostgreSQL server to compare it with",
                      fix="configure a postgres target, or install the server binaries")
    extra = ", with \\restrict for plain SQL dumps" if restrict else ""
    return result(name, Outcome.PASSED, f"{found}{extra}{reads}")


def local_client_tool(name: str, tool: str, *, restrict: bool = False) -> Verdict:
    """:func:`client_tool` against the local server binaries (read inside the check, under its deadline)."""
    local = local_server_version()
    return client_tool(name, tool, servers=[local] if local is not None else [], restrict=restrict)


def redis_server(name: str) -> Verdict:
    """``redis-server`` on PATH (the sandbox's Redis), with its version."""
    path = shutil.which("redis-server")
    if path is None:
        return result(name, Outcome.FAILED, "redis-server is not on PATH",
                      fix="run ./bootstrap as root (it installs Debian's `redis-server`), or "
                          "`apt-get install redis-server`")
    match = re.search(r"v=([0-9][0-9.]*)", _version_output([path]))
    return result(name, Outcome.PASSED, f"redis-server {match.group(1) if match else '(version unknown)'} "
                  f"({path})")


def prometheus(name: str) -> Verdict:
    """``prometheus`` on PATH: only the packs' SLO scenarios need it, so its absence is a warning."""
    path = shutil.which("prometheus")
    if path is None:
        return result(name, Outcome.WARNING, "prometheus is not on PATH: the packs' SLO scenarios "
                      "(`drillbook run --pack sovra`, `--pack sark`) cannot run",
                      fix="`./bootstrap run` as root installs Debian's `prometheus`; plain "
                          "`drillbook run` does not need it")
    return result(name, Outcome.PASSED, f"prometheus ({path}) for the packs' SLO scenarios")


def server_user(name: str) -> Verdict:
    """As root, the sandbox's PostgreSQL runs as the ``postgres`` OS user: it must exist."""
    from drills.processes import SERVER_USER, running_as_root

    if not running_as_root():
        return result(name, Outcome.PASSED, "not running as root: the local servers run as this user")
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        return result(name, Outcome.FAILED, f"running as root, but there is no `{SERVER_USER}` OS user to "
                      "run PostgreSQL as (initdb and postgres refuse root)",
                      fix="install Debian's `postgresql` package (it creates the user), or "
                          f"`useradd --system {SERVER_USER}`")
    return result(name, Outcome.PASSED, f"running as root: PostgreSQL runs as `{SERVER_USER}` "
                  f"(uid {entry.pw_uid})")


def temp_dir(name: str) -> Verdict:
    """TMPDIR takes files and, as root, the ``postgres`` user can reach data dirs made in it."""
    from drills.processes import require_reachable_by_server_user

    base = Path(tempfile.gettempdir())
    fix = "set TMPDIR to a writable directory (as root: one the `postgres` user can traverse, e.g. /tmp)"
    problem = probe_writable(base)
    if problem is not None:
        return result(name, Outcome.FAILED, f"temp dir {problem}", fix=fix)
    try:
        require_reachable_by_server_user(base / "drillbook-doctor")
    except EnvironmentError_ as exc:
        return result(name, Outcome.FAILED, f"temp dir {base}: {exc.message}", fix=exc.hint or fix)
    return result(name, Outcome.PASSED, f"temp dir {base} is writable and reachable by the servers")


def cache_dir(name: str) -> Verdict:
    """``$XDG_CACHE_HOME/drillbook`` (else ``~/.cache/drillbook``): the sandbox's product cache."""
    from drills.sandbox.history import default_cache_dir

    return writable_dir(name, default_cache_dir(), what="cache dir",
                        fix="set XDG_CACHE_HOME to a writable directory (the sandbox caches its product "
                            "and template data directory there)")


def machine_checks(*, ledger: Path) -> list[Check]:
    """Without a config: what ``drillbook run`` on the embedded sandbox needs."""
    return [
        Check("postgresql server binaries", lambda: server_binaries("postgresql server binaries")),
        Check("redis-server", lambda: redis_server("redis-server")),
        Check("postgres OS user", lambda: server_user("postgres OS user")),
        Check("temp dir", lambda: temp_dir("temp dir")),
        Check("cache dir writable", lambda: cache_dir("cache dir writable")),
        Check("pg_restore version", lambda: local_client_tool("pg_restore version", "pg_restore")),
        Check("psql version", lambda: local_client_tool("psql version", "psql", restrict=True)),
        Check("prometheus", lambda: prometheus("prometheus")),
        Check("ledger writable", lambda: local_ledger("ledger writable", ledger)),
    ]
