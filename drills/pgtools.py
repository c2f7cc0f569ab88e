"""Locating the PostgreSQL client and server binaries."""

from __future__ import annotations

import os
import re
import shutil
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
