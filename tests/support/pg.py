"""Reaching drillbook's own scratch servers as their administrator, for test setup and inspection."""

from __future__ import annotations

import psycopg

from drills.targets import PostgresTarget


def admin_dsn(target: PostgresTarget, *, dbname: str | None = None) -> str:
    """The target's server and database (or ``dbname``) as the cluster's superuser ``postgres``.

    Scratch databases are reached by drills as their own unprivileged role; a test that
    plays the subject's administrator (loading a fixture) or inspects the server connects so.
    """
    info = psycopg.conninfo.conninfo_to_dict(target.dsn)
    info.pop("password", None)
    info["user"] = "postgres"
    if dbname is not None:
        info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})
