"""Locating the PostgreSQL client and server binaries."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from checks.errors import EnvironmentError_

MIN_MAJOR = 15


def bindir() -> Path:
    """The PostgreSQL bindir: ``$DRILLBOOK_PG_BINDIR``, else the newest Debian one >= 15."""
    override = os.environ.get("DRILLBOOK_PG_BINDIR")
    if override:
        path = Path(override)
        if not (path / "pg_ctl").exists():
            raise EnvironmentError_(
                f"DRILLBOOK_PG_BINDIR={override} holds no pg_ctl",
                hint="point it at a PostgreSQL bin directory (e.g. /usr/lib/postgresql/15/bin)",
            )
        return path
    candidates = []
    for entry in Path("/usr/lib/postgresql").glob("*/bin"):
        match = re.fullmatch(r"\d+", entry.parent.name)
        if match and int(entry.parent.name) >= MIN_MAJOR and (entry / "initdb").exists():
            candidates.append((int(entry.parent.name), entry))
    if candidates:
        return max(candidates)[1]
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise EnvironmentError_(
        "no PostgreSQL server binaries (initdb, pg_ctl) found",
        hint="install Debian's `postgresql` package (./bootstrap does it as root) "
        "or set DRILLBOOK_PG_BINDIR",
    )


def tool(name: str) -> str:
    """Full path of a PostgreSQL tool (pg_restore, psql, pg_dump, ...)."""
    path = bindir() / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise EnvironmentError_(f"PostgreSQL tool `{name}` not found in {bindir()} or on PATH")


# psql learned ``\restrict`` (CVE-2025-8714) in these minor releases of each major.
_RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}


@functools.cache
def psql_version(psql: str) -> tuple[int, int]:
    """(major, minor) of a psql binary, e.g. (15, 18)."""
    try:
        # No parent environment: nothing of it is needed to print a version.
        out = subprocess.run([psql, "--version"], capture_output=True, text=True, check=True,
                             timeout=10, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvironmentError_(f"`{psql} --version` failed: {exc}") from exc
    match = re.search(r"\b(\d+)(?:\.(\d+))?", out)
    if not match:
        raise EnvironmentError_(f"`{psql} --version` printed no version: {out.strip()!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def require_restrict(psql: str) -> None:
    """Refuse a psql that cannot lock out meta-commands (``\\restrict``) from the file it reads."""
    major, minor = psql_version(psql)
    since = _RESTRICT_SINCE.get(major)
    if major >= 18 or (since is not None and minor >= since):
        return
    raise EnvironmentError_(
        f"{psql} is PostgreSQL {major}.{minor}: it has no `\\restrict`, so a plain SQL backup "
        "could run shell commands (`\\!`) through it; drillbook refuses to restore plain dumps with it",
        hint="install a PostgreSQL client of 15.14, 16.10, 17.6 or newer (or set DRILLBOOK_PG_BINDIR)",
    )
