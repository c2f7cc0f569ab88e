"""Proof that untrusted content ran nowhere but in its scratch database (tests/integration/*untrusted*).

A payload a test plants would create a marker file, change a cluster's catalog (databases,
roles, tablespaces, settings files) or the subject's data, or leave something running.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psutil
import psycopg

from drills.local import LocalEnvironment


def reachable_marker_dir(path: Path) -> Path:
    """Make ``path`` writable by the server's OS user, so a payload that ran would leave its file."""
    path.chmod(0o777)
    parent = path.parent
    while parent != parent.parent:
        # The server runs as `postgres`: it must reach the directory for a missing marker to mean much.
        parent.chmod(parent.stat().st_mode | 0o011)
        if parent == Path(os.sep + "tmp"):
            break
        parent = parent.parent
    return path


def cluster_fingerprint(dsn: str) -> dict[str, Any]:
    """What a payload outside its database would change: databases, roles, tablespaces, settings."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            "databases": conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall(),
            "roles": conn.execute("SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolcanlogin "
                                  "FROM pg_roles ORDER BY 1").fetchall(),
            "memberships": conn.execute("SELECT roleid::regrole::text, member::regrole::text "
                                        "FROM pg_auth_members ORDER BY 1, 2").fetchall(),
            "tablespaces": conn.execute("SELECT spcname FROM pg_tablespace ORDER BY 1").fetchall(),
            "settings_files": conn.execute(
                "SELECT sourcefile, name, setting FROM pg_file_settings ORDER BY 1, 2").fetchall(),
            "db_settings": conn.execute("SELECT * FROM pg_db_role_setting ORDER BY 1, 2").fetchall(),
            "tables_in_postgres": conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchall(),
        }


def subject_fingerprint(local_env: LocalEnvironment) -> dict[str, Any]:
    """The sandbox subject's cluster catalog and its product tables' row counts and content hashes."""
    subject = local_env.postgres("production")
    fingerprint = cluster_fingerprint(psycopg.conninfo.make_conninfo(subject.dsn, dbname="postgres"))
    with psycopg.connect(subject.dsn, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1").fetchall()]
        fingerprint["content"] = {
            t: conn.execute(f"SELECT count(*), sum(hashtextextended(x::text, 0)) FROM {t} x").fetchone()
            for t in tables
        }
    return fingerprint


def running_clients() -> list[int]:
    """psql / pg_restore processes of this test process still running."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() in ("psql", "pg_restore"):
                found.append(child.pid)
        except psutil.Error:
            continue  # it ended while we looked
    return found
