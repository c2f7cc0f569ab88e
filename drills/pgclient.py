"""Running PostgreSQL client tools (``psql``, ``pg_restore``) without handing them secrets to leak.

What drillbook feeds these tools (a backup, a migration) was written by
someone else, and the tools run next to production credentials. So a child
gets only what it needs:

- **no parent environment**: not ``${PROD_PG_DSN}``, not AWS keys, not
  ``PGPASSWORD``/``PGSERVICE`` meant for another server — a minimal ``PATH``,
  a UTF-8 locale, a connect timeout and quiet notices, nothing else;
- **no password on the command line** (any local user reads argv in ``ps``):
  the connection string passed as ``-d`` has its password removed, and the
  password reaches libpq through a private ``PGPASSFILE`` (mode 0600, in a
  private temp dir removed afterwards) that holds that one entry.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from checks import redact

from . import reaper

CONNECT_TIMEOUT_S = "10"
# Where the PostgreSQL tools and the coreutils they may call live; never the caller's PATH,
# which a CI job may have pointed at anything.
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class ClientAccess:
    """How to reach one database from a child process: ``-d conninfo`` plus ``env``."""

    conninfo: str
    env: dict[str, str]


def base_env(**extra: str) -> dict[str, str]:
    """The whole environment a PostgreSQL client child gets (plus ``extra``)."""
    return {
        "PATH": SAFE_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PGCONNECT_TIMEOUT": CONNECT_TIMEOUT_S,
        "PGOPTIONS": "-c client_min_messages=warning",
        **extra,
    }


def _passfile_field(value: str) -> str:
    # .pgpass fields escape ':' and '\' with a backslash.
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextmanager
def access(dsn: str) -> Iterator[ClientAccess]:
    """``-d`` conninfo without the password, and an environment whose passfile holds it.

    The passfile exists only inside the ``with`` block.
    """
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    password = params.pop("password", None)
    conninfo = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})
    if not password:
        yield ClientAccess(conninfo=conninfo, env=base_env())
        return
    redact.register(str(password))
    # Recorded, so that a run killed while psql runs has the passfile reaped (drills/reaper.py).
    private, record = reaper.make_tempdir("drillbook-pgpass-")
    try:
        passfile = private / "pgpass"
        # Wildcards for host/port/db: the entry is used only for the one conninfo we pass.
        entry = ":".join(["*", "*", "*", _passfile_field(str(params.get("user") or "*")),
                          _passfile_field(str(password))])
        passfile.touch(mode=0o600)
        passfile.write_text(entry + "\n", encoding="utf-8")
        yield ClientAccess(conninfo=conninfo, env=base_env(PGPASSFILE=str(passfile)))
    finally:
        shutil.rmtree(private, ignore_errors=True)
        record.release()
